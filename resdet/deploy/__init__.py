"""A trained detector outside training: prediction on image files, ONNX export, torch.compile."""

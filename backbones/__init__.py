"""Residual backbones with declared multi-scale outputs.
Imports nothing beyond torch/torchvision."""

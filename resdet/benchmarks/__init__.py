"""Benchmarks, each a module timed by the one shared harness (`timing`): detector speed and memory
against torchvision (`speed`), FLOPs (`flops`), accuracy side by side (`accuracy`, with
`torchvision_reference`), transfer protocols (`transfer`), classifier speed (`classifier_speed`),
input-pipeline throughput (`data_speed`) and the RoIAlign kernels (`roi_align_speed`). The command
lines over them are in tools/."""

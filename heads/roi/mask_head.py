"""Mask R-CNN's mask branch (He et al. 2017, Fig. 4): RoI features -> per-class mask logits."""

from __future__ import annotations

from torch import Tensor, nn


class MaskHead(nn.Module):
    """(R, C, S, S) RoI features -> (R, num_classes, 2S, 2S) mask logits, one mask per class.

    ``num_conv`` 3x3 convolutions of ``conv_dim`` with ReLU (``mask_fcn1``..; FPN: four of 256 on
    14x14 RoIAlign features; C4: none, the input is res5's 7x7 output), a 2x2 stride-2
    deconvolution with ReLU (``deconv``), and a 1x1 convolution to one logit map per foreground
    class (``predictor``): detectron2's parameter names.
    """

    def __init__(
        self, *, in_channels: int, num_classes: int, num_conv: int = 4, conv_dim: int = 256
    ) -> None:
        super().__init__()
        self.names = [f"mask_fcn{i + 1}" for i in range(num_conv)]
        channels = in_channels
        for name in self.names:
            conv = nn.Conv2d(channels, conv_dim, 3, padding=1)
            setattr(self, name, conv)
            channels = conv_dim
        self.deconv = nn.ConvTranspose2d(channels, conv_dim, 2, stride=2)
        self.predictor = nn.Conv2d(conv_dim, num_classes, 1)
        self.num_classes = num_classes
        for m in [*(getattr(self, n) for n in self.names), self.deconv]:
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(m.bias)
        nn.init.normal_(self.predictor.weight, std=0.001)
        nn.init.zeros_(self.predictor.bias)

    def forward(self, x: Tensor) -> Tensor:
        for name in self.names:
            x = getattr(self, name)(x).relu()
        return self.predictor(self.deconv(x).relu())

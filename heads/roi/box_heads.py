"""Per-region heads: the FPN two-fc head and the paper's C4 head (the backbone's res5 stage)."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class FCHead(nn.Module):
    """Flatten (R, C, S, S) RoI features -> ``num_fc`` fc+ReLU layers of
    ``fc_dim`` (FPN paper's 2fc).

    Layers are named ``fc6``, ``fc7``, ... as in the FPN and torchvision code.
    """

    def __init__(
        self, *, in_channels: int, resolution: int, fc_dim: int = 1024, num_fc: int = 2
    ) -> None:
        super().__init__()
        dim = in_channels * resolution * resolution
        self.names = [f"fc{6 + i}" for i in range(num_fc)]
        for name in self.names:
            fc = nn.Linear(dim, fc_dim)
            nn.init.kaiming_uniform_(fc.weight, a=1)
            nn.init.zeros_(fc.bias)
            setattr(self, name, fc)
            dim = fc_dim
        self.out_channels = dim

    def forward(self, x: Tensor) -> Tensor:
        """(R, C, S, S) -> (R, fc_dim)."""
        x = x.flatten(1)
        for name in self.names:
            x = torch.relu(getattr(self, name)(x))
        return x


class Res5Head(nn.Module):
    """ResNet paper's C4 head: the res5 stage (first block strided) run per RoI, then global average
    pooling. (R, C4, 14, 14) -> (R, C5).

    ``norm`` (optional) normalises res5's output before the pooling: the extra norm of MoCo's
    detection protocol (He et al. 2020, Sec. 4.2), whose fine-tuned BN needs it to rescale res5's
    un-normalised residual sum.
    """

    def __init__(
        self, *, res5: nn.Module, out_channels: int, norm: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.res5 = res5
        self.norm = norm
        self.out_channels = out_channels

    def spatial(self, x: Tensor) -> Tensor:
        """(R, C4, 14, 14) -> res5's (R, C5, 7, 7) output, before the pooling (the C4 mask
        head's input)."""
        x = self.res5(x)
        return self.norm(x) if self.norm is not None else x

    @staticmethod
    def pool(spatial: Tensor) -> Tensor:
        """`spatial`'s (R, C5, 7, 7) -> the box predictor's (R, C5) input (global average)."""
        return spatial.mean(dim=(2, 3))

    def forward(self, x: Tensor) -> Tensor:
        return self.pool(self.spatial(x))


class BoxPredictor(nn.Module):
    """Sibling linear layers: ``cls_score`` (num_classes + 1 logits, background LAST) and
    ``bbox_pred`` (class-specific deltas, 4 per foreground class)."""

    def __init__(self, *, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.cls_score = nn.Linear(in_channels, num_classes + 1)
        self.bbox_pred = nn.Linear(in_channels, 4 * num_classes)
        nn.init.normal_(self.cls_score.weight, std=0.01)
        nn.init.normal_(self.bbox_pred.weight, std=0.001)
        nn.init.zeros_(self.cls_score.bias)
        nn.init.zeros_(self.bbox_pred.bias)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(R, D) -> logits (R, num_classes + 1), deltas (R, 4 * num_classes)."""
        return self.cls_score(x), self.bbox_pred(x)

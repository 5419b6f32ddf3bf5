"""`model:` section: backbone, FPN, anchors, RPN, RoI heads and input sizing."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass
class BackboneConfig:
    depth: int = 50
    norm: Literal["BN", "FrozenBN", "GN", "SyncBN"] = "FrozenBN"
    freeze_at: int = 2
    stride_in_1x1: bool = False
    shortcut: Literal["A", "B", "C"] = "B"
    res5_dilation: int = 1
    weights: str | None = None


@dataclass
class ModelConfig:
    arch: Literal["c4", "fpn"] = "fpn"
    backbone: BackboneConfig = field(default_factory=BackboneConfig)

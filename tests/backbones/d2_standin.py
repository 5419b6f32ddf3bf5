"""A stand-in for the few detectron2 names ``backbones.interop.detectron2`` uses, for machines
without detectron2 (it is not on PyPI).

It mirrors detectron2 at commit 02b5c4e where that matters: ``CfgNode`` and the ``Registry`` are
fvcore's, as detectron2's are; ``Backbone`` is an ``nn.Module`` whose ``size_divisibility`` is 0
unless overridden; ``build_backbone`` looks the name up and checks the result is a ``Backbone``;
``get_cfg`` holds detectron2's defaults for the keys the adapter reads. Tests run the same
assertions against real detectron2 where it is installed.
"""

from __future__ import annotations

import types
from typing import NamedTuple

from fvcore.common.config import CfgNode
from fvcore.common.registry import Registry
from torch import nn


class ShapeSpec(NamedTuple):
    channels: int | None = None
    height: int | None = None
    width: int | None = None
    stride: int | None = None


class Backbone(nn.Module):
    @property
    def size_divisibility(self) -> int:
        return 0


def get_cfg() -> CfgNode:
    """detectron2's ``config/defaults.py`` values for the keys the adapter reads."""
    cfg = CfgNode()
    cfg.INPUT = CfgNode({"FORMAT": "BGR"})
    cfg.MODEL = CfgNode()
    cfg.MODEL.PIXEL_MEAN = [103.530, 116.280, 123.675]
    cfg.MODEL.PIXEL_STD = [1.0, 1.0, 1.0]
    cfg.MODEL.BACKBONE = CfgNode({"NAME": "build_resnet_backbone", "FREEZE_AT": 2})
    cfg.MODEL.FPN = CfgNode(
        {"IN_FEATURES": [], "OUT_CHANNELS": 256, "NORM": "", "FUSE_TYPE": "sum"}
    )
    cfg.MODEL.RESNETS = CfgNode(
        {
            "DEPTH": 50,
            "OUT_FEATURES": ["res4"],
            "NUM_GROUPS": 1,
            "NORM": "FrozenBN",
            "WIDTH_PER_GROUP": 64,
            "STRIDE_IN_1X1": True,
            "RES5_DILATION": 1,
            "RES2_OUT_CHANNELS": 256,
            "STEM_OUT_CHANNELS": 64,
            "DEFORM_ON_PER_STAGE": [False, False, False, False],
        }
    )
    return cfg


def modules() -> dict[str, types.ModuleType]:
    """Fresh ``detectron2``, ``.config``, ``.layers`` and ``.modeling`` modules (a new registry
    each time), to put in ``sys.modules``."""
    registry = Registry("BACKBONE")

    def build(cfg: CfgNode, input_shape: ShapeSpec | None = None) -> Backbone:
        shape = input_shape or ShapeSpec(channels=len(cfg.MODEL.PIXEL_MEAN))
        backbone = registry.get(cfg.MODEL.BACKBONE.NAME)(cfg, shape)
        assert isinstance(backbone, Backbone)
        return backbone

    names = ("detectron2", "detectron2.config", "detectron2.layers", "detectron2.modeling")
    out = {name: types.ModuleType(name) for name in names}
    out["detectron2.config"].CfgNode = CfgNode
    out["detectron2.config"].get_cfg = get_cfg
    out["detectron2.layers"].ShapeSpec = ShapeSpec
    out["detectron2.modeling"].Backbone = Backbone
    out["detectron2.modeling"].BACKBONE_REGISTRY = registry
    out["detectron2.modeling"].build_backbone = build
    return out

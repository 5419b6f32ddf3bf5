"""The one FLOP counter (fvcore) of a Faster R-CNN, ours or torchvision's, left unmodified.

fvcore counts one fused multiply-add as one FLOP (its "GFLOPs" are GMACs), as torchvision's
published detection figures do (``fasterrcnn_resnet50_fpn``: 134.38 GFLOPs at 800x800).

How the parts whose work depends on NMS are counted: a detector's cost has two parts.

1. Per image: resizing and normalisation, the backbone (with FPN) and the RPN head, traced by
   fvcore on one random (3, H, W) image. This does not depend on the weights.
2. Per region: the box head and the class/box predictor, which run once per proposal that
   survives the RPN's NMS. How many survive depends on the weights (a random model's NMS keeps
   few or many), so this part is counted for the full test-time budget, ``post_nms_top_n`` (test)
   proposals per image, which is what trained weights fill on a typical image: fvcore traces the
   head on one pooled region, (1, C, S, S), and the count is multiplied by the budget (every op
   of the box heads is per region).

Not counted (fvcore has no handle for them, and they are a small fraction): anchor generation,
box decoding, top-k, NMS, RoIAlign/RoIPool sampling and the final per-class post-processing.
The model is put in eval mode for the count and back in its previous mode afterwards; its
modules, weights and settings are not touched.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass

import torch
from torch import Tensor, nn

__all__ = ["FlopCount", "count_flops"]


@dataclass(frozen=True)
class FlopCount:
    """GFLOPs (fvcore multiply-adds / 1e9) of one image: ``per_image`` (preprocessing, backbone,
    RPN head) + ``per_region`` x ``regions`` (box head and predictor, ``regions`` proposals)."""

    per_image: float
    per_region: float
    regions: int

    @property
    def total(self) -> float:
        return self.per_image + self.per_region * self.regions


class _ImageStage(nn.Module):
    """(1, 3, H, W) RGB in 0..1 -> the RPN head's outputs, through the detector's own modules."""

    def __init__(self, detector: nn.Module) -> None:
        super().__init__()
        self.detector = detector

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        d = self.detector
        images = list(x.unbind(0))
        if hasattr(d, "preprocessor"):  # ours
            batch, _, _ = d.preprocessor(images, None, d.pixel_format)
            features = d.backbone(batch)
            logits, deltas = d.rpn.head([features[f] for f in d.rpn_features])
        else:  # torchvision's GeneralizedRCNN
            image_list, _ = d.transform(images)
            features = d.backbone(image_list.tensors)
            logits, deltas = d.rpn.head(list(features.values()))
        return (*logits, *deltas)


class _RegionStage(nn.Module):
    """Pooled regions (R, C, S, S) -> class scores and box deltas (the box head and predictor)."""

    def __init__(self, box_head: nn.Module, predictor: nn.Module) -> None:
        super().__init__()
        self.box_head = box_head
        self.predictor = predictor

    def forward(self, pooled: Tensor) -> tuple[Tensor, ...]:
        return tuple(self.predictor(self.box_head(pooled)))


def _region_input(model: nn.Module) -> tuple[tuple[int, int, int], int]:
    """-> ((C, S, S) of one pooled region, test-time proposals per image)."""
    if hasattr(model, "preprocessor"):  # ours
        channels = model.backbone.output_specs[model.roi_features[0]].channels
        size = model.roi_heads.pooler.output_size
        return (channels, size, size), int(model.rpn.post_nms_top_n[1])
    size = model.roi_heads.box_roi_pool.output_size
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    return (model.backbone.out_channels, h, w), int(model.rpn._post_nms_top_n["testing"])


def _fvcore_gflops(module: nn.Module, x: Tensor) -> float:
    from fvcore.nn import FlopCountAnalysis

    logging.getLogger("fvcore").setLevel(logging.ERROR)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        counter = FlopCountAnalysis(module, (x,))
        counter.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        return counter.total() / 1e9


def count_flops(
    model: nn.Module, image_size: tuple[int, int], device: str | torch.device = "cpu"
) -> FlopCount:
    """fvcore GFLOPs of ``model`` (our ``FasterRCNN`` or torchvision's ``FasterRCNN``) on one
    random (3, H, W) image of ``image_size`` = (H, W); see the module docstring for what counts."""
    was_training = model.training
    model.eval()
    try:
        per_image = _fvcore_gflops(_ImageStage(model), torch.rand(1, 3, *image_size, device=device))
        shape, regions = _region_input(model)
        stage = _RegionStage(model.roi_heads.box_head, model.roi_heads.box_predictor)
        per_region = _fvcore_gflops(stage, torch.rand(1, *shape, device=device))
    finally:
        model.train(was_training)
    return FlopCount(per_image=per_image, per_region=per_region, regions=regions)

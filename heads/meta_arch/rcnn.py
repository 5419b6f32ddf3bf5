"""The R-CNN detectors: preprocessing -> backbone -> RPN -> RoI heads -> results per input image.

`FasterRCNN` detects boxes; `MaskRCNN` is the same detector with a mask head in its RoI heads.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from backbones.spec import PixelFormat
from heads.meta_arch.preprocess import ImagePreprocessor, scale_boxes, validate_inputs
from heads.ops.fg_bg_sampling import counts_per_image
from heads.proposal.rpn import RPN
from heads.roi.masks import paste_masks
from heads.roi.roi_heads import RoIHeads


class FasterRCNN(nn.Module):
    """Faster R-CNN over any backbone that declares ``output_specs`` and ``pixel_format``.

    Call it like torchvision's detectors: ``model(images, targets)`` with ``images`` a list of
    float RGB tensors (3, H, W) in 0..1 and, in training, ``targets`` a list of
    ``{"boxes": (N, 4) xyxy float pixels, "labels": (N,) int64 in 0..num_classes-1}``.
    Training returns ``{"loss_rpn_cls", "loss_rpn_box", "loss_cls", "loss_box"}``; evaluation a
    list of ``{"boxes": (D, 4) xyxy float, "scores": (D,), "labels": (D,) int64}`` per image,
    boxes in that input image's pixels, sorted by decreasing score.
    Pixels are normalised with ``backbone.pixel_format`` (set when weights are loaded).

    ``rpn_features`` name the backbone outputs the RPN runs on (all FPN levels, or ``res4``),
    ``roi_features`` those the RoI pooler reads (``p2..p5`` or ``res4``). The base of `MaskRCNN`:
    RoI heads with a mask head make it a Mask R-CNN (`has_masks`), ``MaskRCNN`` names it.
    """

    #: whether the RoI heads must have a mask head (`MaskRCNN`)
    requires_masks = False

    def __init__(
        self,
        *,
        backbone: nn.Module,
        rpn: RPN,
        roi_heads: RoIHeads,
        preprocessor: ImagePreprocessor,
        rpn_features: Sequence[str],
        roi_features: Sequence[str],
    ) -> None:
        super().__init__()
        if self.requires_masks and roi_heads.mask_head is None:
            raise ValueError(
                f"{type(self).__name__} needs RoI heads with a mask head "
                "(RoIHeads(mask_head=...)); use FasterRCNN for a box-only detector"
            )
        for name in list(rpn_features) + list(roi_features):
            if name not in backbone.output_specs:
                raise ValueError(
                    f"feature {name!r} is not a backbone output "
                    f"({', '.join(backbone.output_specs)})"
                )
        self.backbone = backbone
        self.rpn = rpn
        self.roi_heads = roi_heads
        self.preprocessor = preprocessor
        self.rpn_features = list(rpn_features)
        self.roi_features = list(roi_features)

    @property
    def num_classes(self) -> int:
        return self.roi_heads.num_classes

    @property
    def has_masks(self) -> bool:
        """Whether this is a Mask R-CNN (a mask head after the box head)."""
        return self.roi_heads.mask_head is not None

    @property
    def pixel_format(self) -> PixelFormat:
        return self.backbone.pixel_format

    def forward(
        self, images: list[Tensor], targets: list[dict[str, Tensor]] | None = None
    ) -> dict[str, Tensor] | list[dict[str, Tensor]]:
        if self.training and targets is None:
            raise ValueError("targets are required in training mode")
        validate_inputs(images, targets if self.training else None, self.num_classes)
        if self.training and self.has_masks and any("masks" not in t for t in targets):
            raise ValueError(
                "a Mask R-CNN trains on instance masks: every target needs 'masks' (N, H, W)"
            )
        batch, sizes, gt = self.preprocessor(
            images, targets if self.training else None, self.pixel_format
        )
        features = self.backbone(batch)
        proposals, rpn_losses = self.rpn(
            [features[f] for f in self.rpn_features], sizes, tuple(batch.shape[-2:]), gt
        )
        detections, roi_losses = self.roi_heads(
            [features[f] for f in self.roi_features], proposals, sizes, gt
        )
        if self.training:
            return {**rpn_losses, **roi_losses}
        assert detections is not None
        counts = counts_per_image(detections.image_index, len(images)).tolist()
        masks = detections.masks.split(counts) if detections.masks is not None else None
        results = []
        for i, (img, size, boxes, scores, labels) in enumerate(
            zip(
                images,
                sizes,
                detections.boxes.split(counts),
                detections.scores.split(counts),
                detections.labels.split(counts),
            )
        ):
            boxes = scale_boxes(boxes, size, img.shape[-2:])
            result = {"boxes": boxes, "scores": scores, "labels": labels}
            if masks is not None:
                result["masks"] = paste_masks(masks[i], boxes, *img.shape[-2:])[:, None]
            results.append(result)
        return results


class MaskRCNN(FasterRCNN):
    """`FasterRCNN` whose RoI heads have a mask head; the same call, with masks added.

    Training targets also hold ``"masks": (N, H, W)`` uint8 in the image's frame, and the losses
    ``"loss_mask"``; each evaluation result also holds ``"masks": (D, 1, H, W)`` float
    probabilities in the input image's frame (torchvision's layout; threshold at 0.5 for binary
    masks). Raises ``ValueError`` for RoI heads without a mask head.
    """

    #: the RoI heads must have a mask head
    requires_masks = True

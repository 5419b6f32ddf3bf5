"""Fast R-CNN stage: sample proposals, pool, classify and refine; post-process detections."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor, nn

from heads.ops.box_coder import BoxCoder
from heads.ops.box_ops import clip_boxes, min_side_at_least, pairwise_iou
from heads.ops.fg_bg_sampling import match_and_sample
from heads.ops.losses import box_regression_loss, cross_entropy
from heads.ops.matcher import Matcher
from heads.ops.nms import NMS, nms_per_image
from heads.ops.structures import Detections, GroundTruth, Proposals
from heads.roi.box_heads import BoxPredictor
from heads.roi.mask_head import MaskHead
from heads.roi.masks import mask_loss, mask_targets
from heads.roi.poolers import RoIPooler

#: ``pool(features, boxes, image_index)`` -> (R, C, S, S), as `RoIPooler.forward`
Pool = Callable[[list[Tensor], Tensor, Tensor], Tensor]


class RoIHeads(nn.Module):
    """Pooler -> box head -> predictor, trained on sampled proposals, post-processed at test time.

    Training: ground-truth boxes join the proposals, each proposal is matched (IoU >= ``fg_iou``
    foreground, < ``bg_iou`` background), ``batch_size_per_image`` are sampled with at most
    ``positive_fraction`` foreground; ``loss_cls`` is the mean cross entropy, ``loss_box`` the
    summed box loss of foreground samples divided by the number of samples.
    Inference: per class, boxes decoded and clipped, scores > ``score_thresh`` and sides >=
    ``min_box_size`` kept, NMS per class at ``nms_thresh``, the best ``detections_per_image`` kept.
    ``smooth_l1_beta`` has no default: ``model.roi_heads.smooth_l1_beta`` is the one source.

    With ``mask_head`` (Mask R-CNN): the foreground samples' features go through it (FPN: pooled
    again by ``mask_pooler``; C4, ``mask_pooler`` None: res5's output of the box head, shared) and
    ``loss_mask`` is the mean binary cross entropy of their own-class masks against targets made
    from the ground-truth masks (``heads.roi.masks.mask_targets``). Inference: the final detections
    are pooled again and get their own-class mask probabilities (``Detections.masks``).
    """

    def __init__(
        self,
        *,
        pooler: RoIPooler,
        box_head: nn.Module,
        predictor: BoxPredictor,
        box_coder: BoxCoder,
        matcher: Matcher,
        batch_size_per_image: int,
        positive_fraction: float,
        score_thresh: float,
        nms_thresh: float,
        detections_per_image: int,
        min_box_size: float = 0.0,
        box_loss: Literal["smooth_l1", "l1"] = "smooth_l1",
        smooth_l1_beta: float,
        mask_head: MaskHead | None = None,
        mask_pooler: RoIPooler | None = None,
    ) -> None:
        super().__init__()
        if mask_head is not None and mask_pooler is None and not hasattr(box_head, "spatial"):
            raise ValueError("a mask head without its own pooler needs the C4 box head (res5)")
        self.mask_head = mask_head
        self.mask_pooler = mask_pooler
        self.pooler = pooler
        self.box_head = box_head
        self.box_predictor = predictor
        self.box_coder = box_coder
        self.matcher = matcher
        self.batch_size_per_image = batch_size_per_image
        self.positive_fraction = positive_fraction
        self.score_thresh = score_thresh
        self.nms_thresh = nms_thresh
        self.detections_per_image = detections_per_image
        self.min_box_size = min_box_size
        self.box_loss = box_loss
        self.smooth_l1_beta = smooth_l1_beta

    @property
    def num_classes(self) -> int:
        return self.box_predictor.num_classes

    def forward(
        self,
        features: list[Tensor],
        proposals: Proposals,
        image_sizes: Tensor,
        targets: GroundTruth | None = None,
    ) -> tuple[Detections | None, dict[str, Tensor]]:
        """Features per pooled level; image_sizes (B, 2) float (h, w). Training: (None, losses)."""
        if self.training:
            if targets is None:
                raise ValueError("the RoI heads need targets in training mode")
            return None, self._losses(features, proposals, targets, image_sizes.shape[0])
        detections = self.detect(features, proposals, image_sizes)
        if self.mask_head is not None:
            logits = self.mask_head(
                self._mask_features(features, detections.boxes, detections.image_index)
            )
            own = logits[torch.arange(len(logits), device=logits.device), detections.labels]
            detections.masks = own.sigmoid()
        return detections, {}

    @property
    def _shares_res5(self) -> bool:
        """C4 Mask R-CNN: the mask head reads the box head's res5 output."""
        return self.mask_head is not None and self.mask_pooler is None

    def _mask_features(self, features: list[Tensor], boxes: Tensor, image_index: Tensor) -> Tensor:
        """(R, C, S, S) mask-head input for boxes in network-input pixels."""
        if self._shares_res5:
            return self.box_head.spatial(self.pooler(features, boxes, image_index))
        return self.mask_pooler(features, boxes, image_index)

    def _losses(
        self, features: list[Tensor], proposals: Proposals, gt: GroundTruth, num_images: int
    ) -> dict[str, Tensor]:
        gt_image, gt_slot = gt.valid.nonzero(as_tuple=True)
        boxes = torch.cat((proposals.boxes.detach(), gt.boxes[gt_image, gt_slot]))
        image_index = torch.cat((proposals.image_index, gt_image))
        # (R, 1, 4) vs (R, G, 4) -> (R, G): every box against the ground truth of its own image
        iou = pairwise_iou(boxes[:, None, :], gt.boxes[image_index])[:, 0, :]
        iou = iou.masked_fill(~gt.valid[image_index], -1.0)
        matched, fg, bg = match_and_sample(
            self.matcher, iou, image_index, num_images,
            self.batch_size_per_image, self.positive_fraction,
        )  # fmt: skip
        sampled = (fg | bg).nonzero(as_tuple=True)[0]
        boxes, image_index = boxes[sampled], image_index[sampled]
        matched, fg = matched[sampled], fg[sampled]
        classes = torch.where(fg, gt.labels[image_index, matched], self.num_classes)
        pooled = self.pooler(features, boxes, image_index)
        res5 = self.box_head.spatial(pooled) if self._shares_res5 else None
        logits, deltas = self.box_predictor(
            self.box_head.pool(res5) if res5 is not None else self.box_head(pooled)
        )
        loss_cls = cross_entropy(logits, classes)
        fg_index = fg.nonzero(as_tuple=True)[0]
        # (R, C*4) -> (R, C, 4), then the deltas of each foreground sample's own class
        fg_deltas = deltas.view(len(deltas), -1, 4)[fg_index, classes[fg_index]]
        target = self.box_coder.encode(
            boxes[fg_index], gt.boxes[image_index[fg_index], matched[fg_index]]
        )
        loss_box = box_regression_loss(
            fg_deltas, target, kind=self.box_loss, beta=self.smooth_l1_beta
        ) / max(len(sampled), 1)
        losses = {"loss_cls": loss_cls, "loss_box": loss_box}
        if self.mask_head is not None:
            losses["loss_mask"] = self._mask_loss(
                features,
                gt,
                boxes[fg_index],
                image_index[fg_index],
                matched[fg_index],
                classes[fg_index],
                None if res5 is None else res5[fg_index],
            )
        return losses

    def _mask_loss(
        self,
        features: list[Tensor],
        gt: GroundTruth,
        boxes: Tensor,
        image_index: Tensor,
        slot: Tensor,
        classes: Tensor,
        res5: Tensor | None,
    ) -> Tensor:
        """Foreground samples (boxes (F, 4) input pixels, their image, matched ground-truth slot
        and class; res5 (F, C5, 7, 7) when shared) -> L_mask."""
        if gt.masks is None or gt.to_mask_frame is None:
            raise ValueError("a model with a mask head needs ground-truth masks in training")
        logits = self.mask_head(
            res5 if res5 is not None else self.mask_pooler(features, boxes, image_index)
        )
        targets = mask_targets(
            gt.masks,
            gt.mask_index(image_index, slot),
            boxes * gt.to_mask_frame[image_index],
            logits.shape[-1],
        )
        return mask_loss(logits, classes, targets)

    def detect(
        self,
        features: list[Tensor],
        proposals: Proposals,
        image_sizes: Tensor,
        *,
        pool: Pool | None = None,
        nms: NMS = nms_per_image,
    ) -> Detections:
        """Inference's box stage (the class docstring's steps): pool the proposals, classify and
        refine them, post-process -> detections in network-input pixels (no masks).

        ``pool(features, boxes, image_index)`` replaces ``self.pooler`` and ``nms`` (signature of
        `heads.ops.nms.nms_per_image`) the batched NMS: the ONNX exporter passes versions with
        exportable ops; the defaults are the eager ones.
        """
        pooled = (pool or self.pooler)(features, proposals.boxes, proposals.image_index)
        logits, deltas = self.box_predictor(self.box_head(pooled))
        num_classes = self.num_classes
        scores = torch.softmax(logits, dim=-1)[:, :num_classes]
        sizes = image_sizes[proposals.image_index]
        # (R, C*4) deltas from (R, 4) proposals -> (R, C, 4) boxes
        boxes = clip_boxes(
            self.box_coder.decode(deltas, proposals.boxes), sizes[:, 0:1], sizes[:, 1:2]
        )
        keep = (scores > self.score_thresh) & min_side_at_least(boxes, self.min_box_size)
        roi, label = keep.nonzero(as_tuple=True)
        boxes, scores, image_index = (
            boxes[roi, label],
            scores[roi, label],
            proposals.image_index[roi],
        )
        kept = nms(
            boxes,
            scores,
            label,
            num_classes,
            image_index,
            image_sizes.shape[0],
            self.nms_thresh,
            self.detections_per_image,
        )
        return Detections(
            boxes=boxes[kept],
            scores=scores[kept],
            labels=label[kept],
            image_index=image_index[kept],
        )

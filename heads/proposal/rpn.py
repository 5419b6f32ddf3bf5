"""Region proposal network: a conv head shared by the levels, anchor matching, losses, proposals."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import torch
from torch import Tensor, nn

from heads.ops.box_coder import BoxCoder
from heads.ops.box_ops import clip_boxes, min_side_at_least, pairwise_iou
from heads.ops.fg_bg_sampling import match_and_sample
from heads.ops.losses import binary_cross_entropy, box_regression_loss
from heads.ops.matcher import Matcher
from heads.ops.nms import NMS, nms_per_image
from heads.ops.structures import GroundTruth, Proposals
from heads.proposal.anchors import AnchorGenerator

#: ``top_n(logits, n)``: how many of a level's (B, A) objectness logits `RPN.propose` keeps
TopN = Callable[[Tensor, int], int | Tensor]


def at_most(logits: Tensor, n: int) -> int:
    """``min(n, A)`` for a level's (B, A) logits."""
    return min(n, logits.shape[1])


class RPNHead(nn.Module):
    """3x3 conv + ReLU shared by all levels, then 1x1 convs: A objectness logits and 4A deltas."""

    def __init__(self, *, in_channels: int, num_anchors: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, in_channels, 3, padding=1)
        self.cls_logits = nn.Conv2d(in_channels, num_anchors, 1)
        self.bbox_pred = nn.Conv2d(in_channels, 4 * num_anchors, 1)
        for layer in (self.conv, self.cls_logits, self.bbox_pred):
            nn.init.normal_(layer.weight, std=0.01)
            nn.init.zeros_(layer.bias)

    def forward(self, features: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        """Per level (N, C, H, W) -> objectness (N, H*W*A) and deltas (N, H*W*A, 4)."""
        logits, deltas = [], []
        for x in features:
            t = torch.relu(self.conv(x))
            n, _, h, w = x.shape
            # (N, A, H, W) -> (N, H*W*A)
            logits.append(self.cls_logits(t).permute(0, 2, 3, 1).reshape(n, -1))
            # (N, A*4, H, W) -> (N, A, 4, H, W) -> (N, H*W*A, 4)
            deltas.append(
                self.bbox_pred(t).view(n, -1, 4, h, w).permute(0, 3, 4, 1, 2).reshape(n, -1, 4)
            )
        return logits, deltas


class RPN(nn.Module):
    """Anchors + head -> proposals for every image; in training also
    ``loss_rpn_cls``/``loss_rpn_box``.

    Proposals: per image and level the ``pre_nms_top_n`` best anchors, decoded, clipped to the
    image, boxes with a side below ``min_box_size`` or a score below ``score_thresh`` dropped, NMS
    per level at ``nms_thresh``, then the ``post_nms_top_n`` best of each image. Counts are
    ``(train, test)`` pairs. Losses are normalised by the number of sampled anchors;
    ``smooth_l1_beta`` has no default (the config's ``model.rpn.smooth_l1_beta`` is the one source;
    0 makes smooth L1 an L1 loss, detectron2's choice).
    """

    def __init__(
        self,
        *,
        head: RPNHead,
        anchor_generator: AnchorGenerator,
        box_coder: BoxCoder,
        matcher: Matcher,
        batch_size_per_image: int,
        positive_fraction: float,
        pre_nms_top_n: tuple[int, int],
        post_nms_top_n: tuple[int, int],
        nms_thresh: float,
        min_box_size: float,
        score_thresh: float = 0.0,
        box_loss: Literal["smooth_l1", "l1"] = "smooth_l1",
        smooth_l1_beta: float,
    ) -> None:
        super().__init__()
        self.head = head
        self.anchor_generator = anchor_generator
        self.box_coder = box_coder
        self.matcher = matcher
        self.batch_size_per_image = batch_size_per_image
        self.positive_fraction = positive_fraction
        self.pre_nms_top_n = pre_nms_top_n
        self.post_nms_top_n = post_nms_top_n
        self.nms_thresh = nms_thresh
        self.min_box_size = min_box_size
        self.score_thresh = score_thresh
        self.box_loss = box_loss
        self.smooth_l1_beta = smooth_l1_beta

    def forward(
        self,
        features: list[Tensor],
        image_sizes: Tensor,
        padded_size: tuple[int, int],
        targets: GroundTruth | None = None,
    ) -> tuple[Proposals, dict[str, Tensor]]:
        """Features per level (B, C, H_l, W_l); image_sizes (B, 2) float (h, w) of the unpadded
        network inputs; padded_size (H, W) of the batch tensor."""
        logits, deltas, anchors = self.predict(features, padded_size)
        proposals = self.propose(logits, deltas, anchors, image_sizes)
        losses: dict[str, Tensor] = {}
        if self.training:
            if targets is None:
                raise ValueError("the RPN needs targets in training mode")
            losses = self._losses(
                torch.cat(logits, 1), torch.cat(deltas, 1), torch.cat(anchors), targets
            )
        return proposals, losses

    def predict(
        self, features: list[Tensor], padded_size: Sequence[int]
    ) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
        """Per level: objectness logits (B, A_l), deltas (B, A_l, 4) and anchors (A_l, 4) for
        features (B, C, H_l, W_l) of a batch padded to ``padded_size`` (H, W)."""
        logits, deltas = self.head(features)
        anchors = self.anchor_generator([f.shape[-2:] for f in features], padded_size)
        return logits, deltas, anchors

    @torch.no_grad()
    def propose(
        self,
        logits: list[Tensor],
        deltas: list[Tensor],
        anchors: list[Tensor],
        image_sizes: Tensor,
        *,
        top_n: TopN = at_most,
        nms: NMS = nms_per_image,
    ) -> Proposals:
        """`predict`'s outputs and image_sizes (B, 2) float (h, w) -> proposals in network-input
        pixels (the class docstring's steps).

        ``top_n(logits, n)`` is how many of a level's (B, A_l) logits to keep at most ``n`` of, and
        ``nms`` has `heads.ops.nms.nms_per_image`'s signature: the ONNX exporter passes traced-size
        and branch-free versions; the defaults are the eager ones.
        """
        num_images = logits[0].shape[0]
        pre_n = self.pre_nms_top_n[0 if self.training else 1]
        post_n = self.post_nms_top_n[0 if self.training else 1]
        top_scores, top_boxes, top_levels = [], [], []
        for level, (lg, dl, an) in enumerate(zip(logits, deltas, anchors)):
            score, idx = lg.topk(top_n(lg, pre_n), dim=1)  # (B, k)
            # (B, k, 4) deltas of the chosen anchors -> (B, k, 4) boxes
            boxes = self.box_coder.decode(dl.gather(1, idx[..., None].expand(-1, -1, 4)), an[idx])[
                ..., 0, :
            ]
            top_scores.append(score)
            top_boxes.append(boxes)
            top_levels.append(torch.full_like(idx, level))
        scores = torch.sigmoid(torch.cat(top_scores, 1))
        boxes = clip_boxes(torch.cat(top_boxes, 1), image_sizes[:, 0:1], image_sizes[:, 1:2])
        levels = torch.cat(top_levels, 1)
        keep = min_side_at_least(boxes, self.min_box_size) & (scores >= self.score_thresh)
        image_index, slot = keep.nonzero(as_tuple=True)
        boxes, scores, levels = (
            boxes[image_index, slot],
            scores[image_index, slot],
            levels[image_index, slot],
        )
        kept = nms(
            boxes, scores, levels, len(logits), image_index, num_images, self.nms_thresh, post_n
        )
        return Proposals(boxes=boxes[kept], scores=scores[kept], image_index=image_index[kept])

    def _losses(
        self, logits: Tensor, deltas: Tensor, anchors: Tensor, gt: GroundTruth
    ) -> dict[str, Tensor]:
        """logits (B, A), deltas (B, A, 4), anchors (A, 4)."""
        num_images, num_anchors = logits.shape
        # (1, A, 4) vs (B, G, 4) -> (B, A, G) -> (B*A, G)
        iou = pairwise_iou(anchors[None], gt.boxes)
        iou = iou.masked_fill(~gt.valid[:, None, :], -1.0).reshape(num_images * num_anchors, -1)
        image_index = torch.arange(num_images, device=logits.device).repeat_interleave(num_anchors)
        matched, fg, bg = match_and_sample(
            self.matcher, iou, image_index, num_images,
            self.batch_size_per_image, self.positive_fraction,
        )  # fmt: skip
        sampled = fg | bg
        normaliser = sampled.sum().clamp(min=1)
        logits = logits.reshape(-1)
        loss_cls = binary_cross_entropy(logits[sampled], fg[sampled].to(logits.dtype)) / normaliser
        fg_index = fg.nonzero(as_tuple=True)[0]
        gt_slot = image_index[fg_index] * gt.boxes.shape[1] + matched[fg_index]
        target = self.box_coder.encode(
            anchors[fg_index % num_anchors], gt.boxes.reshape(-1, 4)[gt_slot]
        )
        loss_box = (
            box_regression_loss(
                deltas.reshape(-1, 4)[fg_index],
                target,
                kind=self.box_loss,
                beta=self.smooth_l1_beta,
            )
            / normaliser
        )
        return {"loss_rpn_cls": loss_cls, "loss_rpn_box": loss_box}

"""torchvision's Faster R-CNN FPN built from torchvision's own parts to one of our configs: the
trusted implementation that `tools/accuracy_bench.py CONFIG --compare torchvision` trains
beside ours.

    model = torchvision_detector(cfg, num_classes)   # same call and output convention as ours
    for line in unequal_settings(cfg): print(line)   # what torchvision has no knob for

Every setting torchvision exposes is taken from the config: ResNet depth and norm, frozen stages,
backbone weights (the same file, loaded through our loader), FPN width, anchor sizes and ratios,
resize, pixel normalisation, RPN and RoI-head matching thresholds, sampling, proposal counts,
NMS, box-coder weights, score threshold and detections per image. What it does not expose is
listed by `unequal_settings`. The heads keep torchvision's own initialisation.

`TorchvisionDetector` wraps the model so the engine and the evaluators see our convention: labels
`0..C-1` in targets and outputs (torchvision's `1..C`, 0 being background), `num_classes` counting
foreground classes only, and the losses under our four names.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from backbones.resnet import ResNet
from resdet.build import pixel_format_of
from resdet.config import Config
from resdet.io.checkpoints import load_backbone_weights

#: torchvision's loss names -> ours
_LOSS_NAMES = {
    "loss_objectness": "loss_rpn_cls",
    "loss_rpn_box_reg": "loss_rpn_box",
    "loss_classifier": "loss_cls",
    "loss_box_reg": "loss_box",
}
#: what torchvision's `fasterrcnn_resnet50_fpn` fixes in code (torchvision/models/detection/)
_TV_FIXED = {
    "rpn.box_loss": ("smooth_l1", 1.0 / 9.0),
    "roi_heads.box_loss": ("smooth_l1", 1.0 / 9.0),
    "roi_heads.aligned": False,
    "anchors.offset": 0.0,
    "anchors.round_to_int": True,
    "anchors.stride_from_image_size": True,
    "rpn.min_box_size": 1e-3,
    "roi_heads.min_box_size": 1e-2,
}


class TorchvisionDetector(nn.Module):
    """A torchvision `FasterRCNN` behind our detector convention (see the module docstring).

    `forward(images, targets=None)`: `images` list of (3, H, W) float RGB in 0..1; `targets` list of
    `{"boxes": (N, 4) xyxy pixels, "labels": (N,) in 0..C-1}`. Training returns
    `{loss_rpn_cls, loss_rpn_box, loss_cls, loss_box}`; eval a list of `{"boxes", "scores",
    "labels"}` in each input image's pixels, labels in `0..C-1`.
    """

    def __init__(
        self,
        model: nn.Module,
        num_classes: int,
        *,
        train_size: tuple[tuple[int, ...], int],
        test_size: tuple[tuple[int, ...], int],
    ) -> None:
        super().__init__()
        self.model, self.num_classes = model, num_classes
        # (short sides, long-side cap) per mode: torchvision's transform has one pair for both
        self.sizes = {True: train_size, False: test_size}

    def forward(
        self, images: list[torch.Tensor], targets: list[dict[str, torch.Tensor]] | None = None
    ) -> dict[str, torch.Tensor] | list[dict[str, torch.Tensor]]:
        self.model.transform.min_size, self.model.transform.max_size = self.sizes[self.training]
        if self.training:
            if targets is None:
                raise ValueError("training needs targets")
            shifted = [{"boxes": t["boxes"], "labels": t["labels"] + 1} for t in targets]
            losses = self.model(images, shifted)
            return {_LOSS_NAMES[k]: v for k, v in losses.items()}
        outputs = self.model(images)
        return [{**out, "labels": out["labels"] - 1} for out in outputs]


def _check_supported(cfg: Config) -> None:
    m = cfg.model
    problems = []
    if m.arch != "fpn":
        problems.append(f"model.arch={m.arch!r} (torchvision builds FPN detectors)")
    if m.backbone.norm not in ("BN", "FrozenBN"):
        problems.append(f"model.backbone.norm={m.backbone.norm!r} (BN or FrozenBN)")
    if m.backbone.shortcut != "B" or m.backbone.res5_dilation != 1:
        problems.append("model.backbone.shortcut/res5_dilation (torchvision: B, no dilation)")
    if m.backbone.depth >= 50 and m.backbone.stride_in_1x1:
        problems.append("model.backbone.stride_in_1x1=true (torchvision strides in the 3x3)")
    if m.fpn.in_features != ["res2", "res3", "res4", "res5"] or m.fpn.top_block != "maxpool":
        problems.append("model.fpn (torchvision: res2..res5 plus a max-pooled p6)")
    if m.roi_heads.pooler != "align" or m.roi_heads.num_fc != 2:
        problems.append("model.roi_heads.pooler/num_fc (torchvision: RoIAlign, two fc layers)")
    if isinstance(m.pixel_format, str) and m.pixel_format != "torchvision":
        problems.append(f"model.pixel_format={m.pixel_format!r} (torchvision normalises RGB 0..1)")
    if problems:
        raise ValueError(
            f"{cfg.source}: torchvision's FasterRCNN cannot be built to this config: "
            + "; ".join(problems)
        )


def _resnet_body(cfg: Config, load_weights: bool) -> nn.Module:
    """torchvision's ResNet of `model.backbone.depth`, frozen as `freeze_at` says, holding the
    weights `model.backbone.weights` names (read by our loader, so every source we accept works)."""
    from torchvision.models import resnet
    from torchvision.ops import FrozenBatchNorm2d

    b = cfg.model.backbone
    norm = nn.BatchNorm2d if b.norm == "BN" else FrozenBatchNorm2d
    body = getattr(resnet, f"resnet{b.depth}")(norm_layer=norm)
    if b.weights and load_weights:
        ours = ResNet(
            b.depth,
            norm=b.norm,
            stride_in_1x1=b.stride_in_1x1,
            pixel_format=pixel_format_of(cfg.model),
            frozen_bn_eps=b.frozen_bn_eps,
            fold_frozen_bn=False,
        )
        load_backbone_weights(ours, b.weights)
        missing, unexpected = body.load_state_dict(ours.state_dict(), strict=False)
        if unexpected or any(not k.startswith("fc.") for k in missing):
            raise ValueError(
                f"{b.weights}: does not map onto torchvision's resnet{b.depth} (missing "
                f"{missing[:3]}, unexpected {unexpected[:3]})"
            )
    if b.norm == "FrozenBN":
        for m in body.modules():
            if isinstance(m, FrozenBatchNorm2d):
                m.eps = b.frozen_bn_eps
    # freeze_at k: the stem (conv1, bn1) and layer1..layer(k-1); detectron2's res2 = layer1
    frozen = ["conv1", "bn1", *(f"layer{k}" for k in range(1, b.freeze_at))] if b.freeze_at else []
    for name in frozen:
        for p in getattr(body, name).parameters():
            p.requires_grad_(False)
    return body


def torchvision_detector(
    cfg: Config, num_classes: int, *, load_weights: bool = True
) -> TorchvisionDetector:
    """torchvision's `FasterRCNN` with a ResNet-FPN body, set from `cfg` where it has the knob."""
    from torchvision.models.detection import FasterRCNN
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.backbone_utils import BackboneWithFPN
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
    from torchvision.ops import MultiScaleRoIAlign
    from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

    _check_supported(cfg)
    m = cfg.model
    body = _resnet_body(cfg, load_weights)
    expansion = body.layer1[0].expansion  # 1 for basic blocks, 4 for bottlenecks
    backbone = BackboneWithFPN(
        body,
        return_layers={"layer1": "0", "layer2": "1", "layer3": "2", "layer4": "3"},
        in_channels_list=[c * expansion for c in (64, 128, 256, 512)],
        out_channels=m.fpn.out_channels,
        extra_blocks=LastLevelMaxPool(),
    )
    r, p, a, i = m.roi_heads, m.rpn, m.anchors, m.input
    levels = len(a.sizes)
    pixels = pixel_format_of(m)
    model = FasterRCNN(
        backbone,
        num_classes=None,
        min_size=tuple(i.min_size_train),
        max_size=i.max_size_train,
        image_mean=list(pixels.mean),
        image_std=list(pixels.std),
        size_divisible=i.size_divisibility,
        rpn_anchor_generator=AnchorGenerator(
            sizes=tuple(tuple(s) for s in a.sizes), aspect_ratios=(tuple(a.aspect_ratios),) * levels
        ),
        rpn_pre_nms_top_n_train=p.pre_nms_top_n_train,
        rpn_pre_nms_top_n_test=p.pre_nms_top_n_test,
        rpn_post_nms_top_n_train=p.post_nms_top_n_train,
        rpn_post_nms_top_n_test=p.post_nms_top_n_test,
        rpn_nms_thresh=p.nms_thresh,
        rpn_fg_iou_thresh=p.fg_iou,
        rpn_bg_iou_thresh=p.bg_iou,
        rpn_batch_size_per_image=p.batch_size_per_image,
        rpn_positive_fraction=p.positive_fraction,
        box_roi_pool=MultiScaleRoIAlign(
            ["0", "1", "2", "3"], output_size=r.pooler_resolution, sampling_ratio=r.sampling_ratio
        ),
        box_head=TwoMLPHead(m.fpn.out_channels * r.pooler_resolution**2, r.fc_dim),
        box_predictor=FastRCNNPredictor(r.fc_dim, num_classes + 1),
        box_score_thresh=r.score_thresh,
        box_nms_thresh=r.nms_thresh,
        box_detections_per_img=r.detections_per_image,
        box_fg_iou_thresh=r.fg_iou,
        box_bg_iou_thresh=r.bg_iou,
        box_batch_size_per_image=r.batch_size_per_image,
        box_positive_fraction=r.positive_fraction,
        bbox_reg_weights=tuple(r.box_coder_weights),
    )
    if tuple(p.box_coder_weights) != (1.0, 1.0, 1.0, 1.0):
        from torchvision.models.detection._utils import BoxCoder

        model.rpn.box_coder = BoxCoder(tuple(p.box_coder_weights))
    return TorchvisionDetector(
        model,
        num_classes,
        train_size=(tuple(i.min_size_train), i.max_size_train),
        test_size=((i.min_size_test,), i.max_size_test),
    )


def unequal_settings(cfg: Config) -> list[str]:
    """One line per setting of `cfg` that torchvision's FasterRCNN cannot take (it fixes them in
    code): `"<key>: ours <value>, torchvision <value>"`. Head initialisation is always listed."""
    m = cfg.model
    ours: dict[str, Any] = {
        "rpn.box_loss": (m.rpn.box_loss, m.rpn.smooth_l1_beta),
        "roi_heads.box_loss": (m.roi_heads.box_loss, m.roi_heads.smooth_l1_beta),
        "roi_heads.aligned": m.roi_heads.aligned,
        "anchors.offset": m.anchors.offset,
        "anchors.round_to_int": m.anchors.round_to_int,
        "anchors.stride_from_image_size": m.anchors.stride_from_image_size,
        "rpn.min_box_size": m.rpn.min_box_size,
        "roi_heads.min_box_size": m.roi_heads.min_box_size,
    }
    lines = [
        f"model.{k}: ours {_show(v)}, torchvision {_show(_TV_FIXED[k])}"
        for k, v in ours.items()
        if v != _TV_FIXED[k]
    ]
    if len(m.input.min_size_train) > 1:
        lines.append(
            "model.input.min_size_train: the same sizes, drawn by torchvision with Python's "
            "`random` and by ours with torch's generator (same distribution, other draws)"
        )
    lines.append(
        "head initialisation: each library's own (RPN, FPN, box head and predictor layers)"
    )
    return lines


def _show(v: Any) -> str:
    if isinstance(v, tuple) and len(v) == 2 and isinstance(v[0], str):
        return f"{v[0]} (beta {v[1]:.4g})" if v[0] == "smooth_l1" else v[0]
    return str(v)

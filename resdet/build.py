"""`build_model(cfg)`: the wiring of `cfg.model` into a Faster or Mask R-CNN, one step per part.

backbone (a complete ResNet, weights loaded) -> the architecture's parts (`ARCHITECTURES`, keyed
by ``model.arch``: the feature maps the RPN and the RoI pooler read, the per-region box head, the
mask head's input) -> RPN -> RoI heads -> preprocessing. Channel and anchor counts come from the
backbone's `output_specs`, never from the config. Checkpoints of whole detectors are
`resdet.io.checkpoints`' job (`load_checkpoint` is re-exported here).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from backbones.fpn import FPN
from backbones.norm import make_norm
from backbones.resnet import ResNet
from backbones.spec import CAFFE_PIXELS, TORCHVISION_PIXELS, FeatureSpec, PixelFormat
from heads.meta_arch.preprocess import ImagePreprocessor
from heads.meta_arch.rcnn import FasterRCNN, MaskRCNN
from heads.ops.box_coder import BoxCoder
from heads.ops.matcher import Matcher
from heads.proposal.anchors import AnchorGenerator
from heads.proposal.rpn import RPN, RPNHead
from heads.roi.box_heads import BoxPredictor, FCHead, Res5Head
from heads.roi.mask_head import MaskHead
from heads.roi.poolers import RoIPooler
from heads.roi.roi_heads import RoIHeads
from resdet.config import Config
from resdet.config.model import ModelConfig, PixelFormatConfig
from resdet.io.checkpoints import load_backbone_weights, load_checkpoint

__all__ = ["ARCHITECTURES", "Architecture", "build_model", "load_checkpoint", "pixel_format_of"]

_NAMED_PIXELS = {"torchvision": TORCHVISION_PIXELS, "caffe": CAFFE_PIXELS}


def pixel_format_of(m: ModelConfig) -> PixelFormat:
    """The `PixelFormat` named or spelled out by `model.pixel_format`."""
    p = m.pixel_format
    if isinstance(p, PixelFormatConfig):
        return PixelFormat(
            channel_order=p.channel_order, scale=p.scale, mean=tuple(p.mean), std=tuple(p.std)
        )
    return _NAMED_PIXELS[p]


def build_model(
    cfg: Config, num_classes: int | None = None, *, load_weights: bool = True
) -> FasterRCNN:
    """Build the detector that `cfg.model` describes: a `MaskRCNN` when
    ``model.mask_head.enabled``, else a (box-only) `FasterRCNN`.

    ``num_classes`` (foreground classes, from the dataset) wins over ``model.num_classes``.
    ``model.backbone.weights`` is loaded when set and ``load_weights`` (tests build without the
    file); the format the weights record must equal ``model.pixel_format``.
    """
    m = cfg.model
    num_classes = num_classes if num_classes is not None else m.num_classes
    if num_classes is None or num_classes <= 0:
        raise ValueError(
            f"{cfg.source}: the number of classes is unknown: pass num_classes (from "
            f"the dataset) or set model.num_classes (got {num_classes})"
        )
    arch = ARCHITECTURES.get(m.arch)
    if arch is None:
        raise ValueError(
            f"{cfg.source}: model.arch {m.arch!r} is not an architecture resdet builds "
            f"({', '.join(ARCHITECTURES)})"
        )
    resnet = _backbone(cfg, arch, load_weights)
    parts = arch.parts(cfg, resnet)
    i = m.input
    detector = MaskRCNN if m.mask_head.enabled else FasterRCNN
    return detector(
        backbone=parts.backbone,
        rpn=_rpn(cfg, parts),
        roi_heads=_roi_heads(cfg, arch, parts, num_classes),
        preprocessor=ImagePreprocessor(
            min_size_train=i.min_size_train,
            max_size_train=i.max_size_train,
            min_size_test=i.min_size_test,
            max_size_test=i.max_size_test,
            size_divisibility=i.size_divisibility,
            channels_last=i.channels_last,
        ),
        rpn_features=parts.rpn_features,
        roi_features=parts.roi_features,
    )


@dataclass
class _Parts:
    """What the architecture (C4 or FPN) decides: the feature extractor, the maps the RPN and the
    RoI pooler read, and the box head that runs on each pooled region."""

    backbone: nn.Module
    rpn_features: list[str]
    roi_features: list[str]
    box_head: nn.Module

    def specs(self, names: list[str]) -> list[FeatureSpec]:
        return [self.backbone.output_specs[f] for f in names]


def _backbone(cfg: Config, arch: Architecture, load_weights: bool) -> ResNet:
    """The ResNet, complete: the outputs ``arch`` reads, pixel format, frozen-norm eps and folding
    set by its constructor, and ``model.backbone.weights`` loaded (their recorded pixel format
    must be the config's)."""
    m, b = cfg.model, cfg.model.backbone
    fmt = pixel_format_of(m)
    resnet = ResNet(
        b.depth,
        out_features=arch.resnet_outputs(cfg),
        norm=b.norm,
        freeze_at=b.freeze_at,
        stride_in_1x1=b.stride_in_1x1,
        shortcut=b.shortcut,
        res5_dilation=b.res5_dilation,
        pixel_format=fmt,
        frozen_bn_eps=b.frozen_bn_eps,
        fold_frozen_bn=b.fold_frozen_bn,
    )
    if b.weights and load_weights:
        report = load_backbone_weights(resnet, b.weights)
        if report.pixel_format != fmt:
            raise ValueError(
                f"{cfg.source}: model.backbone.weights {b.weights!r} expect pixels "
                f"{report.pixel_format}, but model.pixel_format is {fmt}"
            )
    return resnet


def _c4_parts(cfg: Config, resnet: ResNet) -> _Parts:
    """The paper's C4 detector: RPN and RoI pooling on res4; res5 (taken out of the backbone,
    frozen norms and folding as built) is the per-region head, its first block halves 14 -> 7;
    with `model.roi_heads.res5_extra_norm`, a norm of the backbone's kind follows it."""
    res5_channels = resnet.output_specs["res5"].channels
    extra = cfg.model.roi_heads.res5_extra_norm
    head = Res5Head(
        res5=resnet.take_stage("res5"),
        out_channels=res5_channels,
        norm=make_norm(cfg.model.backbone.norm, res5_channels) if extra else None,
    )
    return _Parts(backbone=resnet, rpn_features=["res4"], roi_features=["res4"], box_head=head)


def _fpn_parts(cfg: Config, resnet: ResNet) -> _Parts:
    """FPN: the RPN on every pyramid level, RoI pooling on the levels built from the ResNet's
    stages (``level_names``), and the two-fc box head."""
    f, r = cfg.model.fpn, cfg.model.roi_heads
    fpn = FPN(
        resnet, in_features=tuple(f.in_features), out_channels=f.out_channels, top_block=f.top_block
    )
    roi_features = list(fpn.level_names)
    head = FCHead(
        in_channels=fpn.output_specs[roi_features[0]].channels,
        resolution=r.pooler_resolution,
        fc_dim=r.fc_dim,
        num_fc=r.num_fc,
    )
    return _Parts(
        backbone=fpn, rpn_features=list(fpn.output_specs), roi_features=roi_features, box_head=head
    )


def _rpn(cfg: Config, parts: _Parts) -> RPN:
    """Anchors on every RPN feature map and one head shared by all of them."""
    a, p = cfg.model.anchors, cfg.model.rpn
    names = parts.rpn_features
    if len(a.sizes) != len(names):
        raise ValueError(
            f"{cfg.source}: model.anchors.sizes has {len(a.sizes)} levels but the RPN "
            f"runs on {len(names)} feature maps ({', '.join(names)})"
        )
    specs = parts.specs(names)
    anchors = AnchorGenerator(
        sizes=a.sizes,
        aspect_ratios=a.aspect_ratios,
        strides=[s.stride for s in specs],
        offset=a.offset,
        round_to_int=a.round_to_int,
        stride_from_image_size=a.stride_from_image_size,
    )
    if len(set(anchors.num_anchors)) != 1:
        raise ValueError(
            f"{cfg.source}: model.anchors must give every level the same number of "
            f"anchors (the RPN head is shared), got {anchors.num_anchors}"
        )
    channels = {s.channels for s in specs}
    if len(channels) != 1:
        raise ValueError(f"{cfg.source}: RPN features {names} have different channel counts")
    return RPN(
        head=RPNHead(in_channels=channels.pop(), num_anchors=anchors.num_anchors[0]),
        anchor_generator=anchors,
        box_coder=BoxCoder(p.box_coder_weights),
        matcher=Matcher(fg_iou=p.fg_iou, bg_iou=p.bg_iou, allow_low_quality=True),
        batch_size_per_image=p.batch_size_per_image,
        positive_fraction=p.positive_fraction,
        pre_nms_top_n=(p.pre_nms_top_n_train, p.pre_nms_top_n_test),
        post_nms_top_n=(p.post_nms_top_n_train, p.post_nms_top_n_test),
        nms_thresh=p.nms_thresh,
        min_box_size=p.min_box_size,
        box_loss=p.box_loss,
        smooth_l1_beta=p.smooth_l1_beta,
    )


def _roi_heads(cfg: Config, arch: Architecture, parts: _Parts, num_classes: int) -> RoIHeads:
    """Pooler over the RoI feature maps, the architecture's box head, the class/box predictor."""
    r = cfg.model.roi_heads
    pooler = RoIPooler(
        strides=[s.stride for s in parts.specs(parts.roi_features)],
        output_size=r.pooler_resolution,
        kind=r.pooler,
        sampling_ratio=r.sampling_ratio,
        aligned=r.aligned,
    )
    head = parts.box_head
    mask_head, mask_pooler = _mask_parts(cfg, arch, parts, num_classes)
    return RoIHeads(
        pooler=pooler,
        box_head=head,
        predictor=BoxPredictor(in_channels=head.out_channels, num_classes=num_classes),
        box_coder=BoxCoder(r.box_coder_weights),
        matcher=Matcher(fg_iou=r.fg_iou, bg_iou=r.bg_iou, allow_low_quality=False),
        batch_size_per_image=r.batch_size_per_image,
        positive_fraction=r.positive_fraction,
        score_thresh=r.score_thresh,
        nms_thresh=r.nms_thresh,
        detections_per_image=r.detections_per_image,
        min_box_size=r.min_box_size,
        box_loss=r.box_loss,
        smooth_l1_beta=r.smooth_l1_beta,
        mask_head=mask_head,
        mask_pooler=mask_pooler,
    )


def _mask_parts(
    cfg: Config, arch: Architecture, parts: _Parts, num_classes: int
) -> tuple[MaskHead | None, RoIPooler | None]:
    """`model.mask_head`, when enabled: the architecture's mask head and its pooler (or none)."""
    if not cfg.model.mask_head.enabled:
        return None, None
    return arch.mask_parts(cfg, parts, num_classes)


def _c4_mask_parts(cfg: Config, parts: _Parts, num_classes: int) -> tuple[MaskHead, None]:
    """C4: the box head's res5 output, straight into the deconvolution (no pooler of its own)."""
    channels = parts.box_head.out_channels
    return MaskHead(in_channels=channels, num_classes=num_classes, num_conv=0), None


def _fpn_mask_parts(cfg: Config, parts: _Parts, num_classes: int) -> tuple[MaskHead, RoIPooler]:
    """FPN: its own RoIAlign on the RoI levels and `num_conv` convolutions."""
    k = cfg.model.mask_head
    specs = parts.specs(parts.roi_features)
    pooler = RoIPooler(
        strides=[s.stride for s in specs],
        output_size=k.pooler_resolution,
        kind="align",
        sampling_ratio=k.sampling_ratio,
        aligned=k.aligned,
    )
    head = MaskHead(
        in_channels=specs[0].channels,
        num_classes=num_classes,
        num_conv=k.num_conv,
        conv_dim=k.conv_dim,
    )
    return head, pooler


@dataclass(frozen=True)
class Architecture:
    """What one ``model.arch`` decides, for `build_model`: the ResNet outputs it reads (from the
    config), the parts built on that ResNet (feature extractor, RPN and RoI feature maps, box
    head), and the mask head with its pooler (None: the mask head reads the box head's output)."""

    resnet_outputs: Callable[[Config], tuple[str, ...]]
    parts: Callable[[Config, ResNet], _Parts]
    mask_parts: Callable[[Config, _Parts, int], tuple[MaskHead, RoIPooler | None]]


#: ``model.arch`` -> its builders; a new architecture is one entry here (and its choice in
#: `resdet.config.model.ModelConfig.arch`, which the loader checks)
ARCHITECTURES: dict[str, Architecture] = {
    "c4": Architecture(
        resnet_outputs=lambda cfg: ("res4", "res5"), parts=_c4_parts, mask_parts=_c4_mask_parts
    ),
    "fpn": Architecture(
        resnet_outputs=lambda cfg: tuple(cfg.model.fpn.in_features),
        parts=_fpn_parts,
        mask_parts=_fpn_mask_parts,
    ),
}

"""The one place that reads `cfg.model`: wires backbones and heads into a detector, loads checkpoints."""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn
from torchvision.ops import FrozenBatchNorm2d

from backbones.fpn import FPN
from backbones.norm import fold_frozen_norms
from backbones.resnet import ResNet
from backbones.spec import CAFFE_PIXELS, TORCHVISION_PIXELS, PixelFormat
from backbones.weights import detectron2_state, load_pretrained, load_torch_file, read_pkl, sub_state
from heads.anchors import AnchorGenerator
from heads.box_coder import BoxCoder
from heads.box_heads import BoxPredictor, FCHead, Res5Head
from heads.faster_rcnn import FasterRCNN
from heads.matcher import Matcher
from heads.poolers import RoIPooler
from heads.preprocess import ImagePreprocessor
from heads.roi_heads import RoIHeads
from heads.rpn import RPN, RPNHead
from resdet.config import Config
from resdet.config.model import ModelConfig, PixelFormatConfig

__all__ = ["build_model", "load_checkpoint", "pixel_format_of"]

_NAMED_PIXELS = {"torchvision": TORCHVISION_PIXELS, "caffe": CAFFE_PIXELS}


def pixel_format_of(m: ModelConfig) -> PixelFormat:
    """The `PixelFormat` named or spelled out by `model.pixel_format`."""
    p = m.pixel_format
    if isinstance(p, PixelFormatConfig):
        return PixelFormat(channel_order=p.channel_order, scale=p.scale, mean=tuple(p.mean), std=tuple(p.std))
    return _NAMED_PIXELS[p]


def build_model(cfg: Config, num_classes: int | None = None, *, load_weights: bool = True) -> FasterRCNN:
    """Build the Faster R-CNN that `cfg.model` describes.

    ``num_classes`` (foreground classes, from the dataset) wins over ``model.num_classes``.
    ``model.backbone.weights`` is loaded when set and ``load_weights`` (tests build without the
    file); the format the weights record must equal ``model.pixel_format``.
    """
    m = cfg.model
    num_classes = num_classes if num_classes is not None else m.num_classes
    if num_classes is None or num_classes <= 0:
        raise ValueError(f"{cfg.source}: the number of classes is unknown: pass num_classes (from the "
                         f"dataset) or set model.num_classes (got {num_classes})")
    fmt = pixel_format_of(m)
    b = m.backbone
    c4 = m.arch == "c4"
    resnet = ResNet(b.depth, out_features=("res4", "res5") if c4 else tuple(m.fpn.in_features),
                    norm=b.norm, freeze_at=b.freeze_at, stride_in_1x1=b.stride_in_1x1,
                    shortcut=b.shortcut, res5_dilation=b.res5_dilation)
    resnet.pixel_format = fmt
    for module in resnet.modules():
        if isinstance(module, FrozenBatchNorm2d):
            module.eps = b.frozen_bn_eps
    if b.weights and load_weights:
        report = load_pretrained(resnet, b.weights)
        if report.pixel_format != fmt:
            raise ValueError(f"{cfg.source}: model.backbone.weights {b.weights!r} expect pixels "
                             f"{report.pixel_format}, but model.pixel_format is {fmt}")

    if c4:
        res5_channels = resnet.output_specs["res5"].channels
        # the deepest stage becomes the per-region head; its first block halves 14x14 -> 7x7
        head: nn.Module = Res5Head(res5=resnet.take_stage("res5"), out_channels=res5_channels)
        backbone: nn.Module = resnet
        rpn_features = roi_features = ["res4"]
    else:
        backbone = FPN(resnet, in_features=tuple(m.fpn.in_features), out_channels=m.fpn.out_channels,
                       top_block=m.fpn.top_block)
        rpn_features = list(backbone.output_specs)
        roi_features = [f"p{f[3:]}" for f in m.fpn.in_features]
    specs = backbone.output_specs
    r = m.roi_heads
    pooler = RoIPooler(strides=[specs[f].stride for f in roi_features], output_size=r.pooler_resolution,
                       kind=r.pooler, sampling_ratio=r.sampling_ratio, aligned=r.aligned)
    if not c4:
        head = FCHead(in_channels=specs[roi_features[0]].channels, resolution=r.pooler_resolution,
                      fc_dim=r.fc_dim, num_fc=r.num_fc)

    a = m.anchors
    if len(a.sizes) != len(rpn_features):
        raise ValueError(f"{cfg.source}: model.anchors.sizes has {len(a.sizes)} levels but the RPN "
                         f"runs on {len(rpn_features)} feature maps ({', '.join(rpn_features)})")
    anchors = AnchorGenerator(sizes=a.sizes, aspect_ratios=a.aspect_ratios,
                              strides=[specs[f].stride for f in rpn_features], offset=a.offset,
                              round_to_int=a.round_to_int, stride_from_image_size=a.stride_from_image_size)
    if len(set(anchors.num_anchors)) != 1:
        raise ValueError(f"{cfg.source}: model.anchors must give every level the same number of "
                         f"anchors (the RPN head is shared), got {anchors.num_anchors}")
    channels = {specs[f].channels for f in rpn_features}
    if len(channels) != 1:
        raise ValueError(f"{cfg.source}: RPN features {rpn_features} have different channel counts")
    p = m.rpn
    rpn = RPN(head=RPNHead(in_channels=channels.pop(), num_anchors=anchors.num_anchors[0]),
              anchor_generator=anchors, box_coder=BoxCoder(p.box_coder_weights),
              matcher=Matcher(fg_iou=p.fg_iou, bg_iou=p.bg_iou, allow_low_quality=True),
              batch_size_per_image=p.batch_size_per_image, positive_fraction=p.positive_fraction,
              pre_nms_top_n=(p.pre_nms_top_n_train, p.pre_nms_top_n_test),
              post_nms_top_n=(p.post_nms_top_n_train, p.post_nms_top_n_test),
              nms_thresh=p.nms_thresh, min_box_size=p.min_box_size, box_loss=p.box_loss,
              smooth_l1_beta=p.smooth_l1_beta)
    roi_heads = RoIHeads(pooler=pooler, box_head=head,
                         predictor=BoxPredictor(in_channels=head.out_channels, num_classes=num_classes),
                         box_coder=BoxCoder(r.box_coder_weights),
                         matcher=Matcher(fg_iou=r.fg_iou, bg_iou=r.bg_iou, allow_low_quality=False),
                         batch_size_per_image=r.batch_size_per_image,
                         positive_fraction=r.positive_fraction, score_thresh=r.score_thresh,
                         nms_thresh=r.nms_thresh, detections_per_image=r.detections_per_image,
                         min_box_size=r.min_box_size, box_loss=r.box_loss, smooth_l1_beta=r.smooth_l1_beta)
    i = m.input
    pre = ImagePreprocessor(min_size_train=i.min_size_train, max_size_train=i.max_size_train,
                            min_size_test=i.min_size_test, max_size_test=i.max_size_test,
                            size_divisibility=i.size_divisibility, channels_last=i.channels_last)
    model = FasterRCNN(backbone=backbone, rpn=rpn, roi_heads=roi_heads, preprocessor=pre,
                       rpn_features=rpn_features, roi_features=roi_features)
    fold_frozen_norms(model, b.fold_frozen_bn)  # the C4 res5 head lives in roi_heads
    return model


# ----------------------------------------------------------------------------- checkpoints

def load_checkpoint(model: FasterRCNN, path: str | os.PathLike) -> str:
    """Load detector weights into ``model``; returns the recognised format.

    Accepted: our checkpoints (``{"format": "resdet", "kind": "detector", "model": ...,
    "pixel_format": ...}``), torchvision detector state dicts (``fasterrcnn_resnet50_fpn`` names;
    its label 0 is background, so class k becomes our label k - 1), and detectron2 detector
    checkpoints (``.pth`` with ``"model"``, or ``.pkl`` read with a numpy-only unpickler). The
    pixel format the checkpoint records must equal ``model.pixel_format``. Every key must match.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found")
    recorded: PixelFormat | None
    if path.suffix == ".pkl":
        state, _, recorded = read_pkl(path)
        state = {k: torch.as_tensor(v) for k, v in state.items()}
        kind = "detectron2"
    else:
        try:
            obj = load_torch_file(path)
        except ValueError:  # unsafe pickle, refused with its reason
            raise
        except Exception as e:  # a corrupt or truncated file
            raise ValueError(f"refusing to load {path}: not a plain tensor checkpoint ({e})") from None
        kind, state, recorded = _identify(obj, path)
    if recorded is not None and recorded != model.pixel_format:
        raise ValueError(f"{path}: the checkpoint expects pixels {recorded}, but the model is built "
                         f"for {model.pixel_format} (model.pixel_format in the config)")
    if kind == "torchvision":
        state = _from_torchvision(state, model, path)
    elif kind == "detectron2":
        state = _from_detectron2(state, model, path)
    _load_strict(model, state, path)
    return kind


def _identify(obj: Any, path: Path) -> tuple[str, dict[str, torch.Tensor], PixelFormat | None]:
    if not isinstance(obj, Mapping):
        raise ValueError(f"{path}: expected a dict checkpoint, got {type(obj).__name__}")
    if obj.get("format") == "resdet":
        if obj.get("kind") != "detector":
            raise ValueError(f"{path}: a resdet {obj.get('kind')!r} checkpoint is not a detector; "
                             f"load it with backbones.weights.load_pretrained")
        return "resdet", dict(obj["model"]), PixelFormat.from_dict(obj["pixel_format"])
    state = obj["model"] if isinstance(obj.get("model"), Mapping) else obj
    state = {k.removeprefix("module."): v for k, v in state.items() if isinstance(v, torch.Tensor)}
    if any(k.startswith("proposal_generator.") for k in state):
        return "detectron2", state, None
    if any(k.startswith("rpn.head.") for k in state) and any(k.startswith("backbone.body.") for k in state):
        return "torchvision", state, TORCHVISION_PIXELS
    raise ValueError(f"{path}: not a resdet, torchvision or detectron2 detector checkpoint "
                     f"(keys start {sorted(state)[:3]})")


def _load_strict(model: nn.Module, state: Mapping[str, torch.Tensor], path: Path) -> None:
    own = model.state_dict()
    # batch-norm bookkeeping: absent from frozen norms, meaningless for loading
    state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked") or k in own}
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
              for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        raise ValueError(f"{path}: checkpoint does not fit the model; missing {missing[:10]}, "
                         f"unexpected {unexpected[:10]}, shape mismatches {shapes[:10]}")
    model.load_state_dict(state)


def _foreground_first(state: dict[str, torch.Tensor], prefix: str) -> None:
    """torchvision predictor (background first, per-class deltas incl. background) -> ours
    (background last, deltas for foreground classes only)."""
    w = state.pop(f"{prefix}cls_score.weight")
    bias = state.pop(f"{prefix}cls_score.bias")
    state[f"{prefix}cls_score.weight"] = torch.cat((w[1:], w[:1]))
    state[f"{prefix}cls_score.bias"] = torch.cat((bias[1:], bias[:1]))
    state[f"{prefix}bbox_pred.weight"] = state[f"{prefix}bbox_pred.weight"][4:]
    state[f"{prefix}bbox_pred.bias"] = state[f"{prefix}bbox_pred.bias"][4:]


_TV_RENAMES = (
    (r"^backbone\.body\.", "backbone.bottom_up."),
    (r"^backbone\.fpn\.inner_blocks\.(\d+)\.(?:0\.)?", r"backbone.lateral_convs.\1.0."),
    (r"^backbone\.fpn\.layer_blocks\.(\d+)\.(?:0\.)?", r"backbone.output_convs.\1.0."),
    (r"^rpn\.head\.conv\.(?:0\.0\.)?", "rpn.head.conv."),
)


def _from_torchvision(state: dict[str, torch.Tensor], model: FasterRCNN, path: Path) -> dict[str, torch.Tensor]:
    if not isinstance(model.backbone, FPN):
        raise ValueError(f"{path}: torchvision detector weights need an FPN model (model.arch: fpn)")
    out = {}
    for key, value in state.items():
        for pattern, repl in _TV_RENAMES:
            key = re.sub(pattern, repl, key)
        out[key] = value
    _foreground_first(out, "roi_heads.box_predictor.")
    return out


def _from_detectron2(state: dict[str, torch.Tensor], model: FasterRCNN, path: Path) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    if isinstance(model.backbone, FPN):
        body = detectron2_state({k: v for k, v in state.items() if k.startswith("backbone.bottom_up.")},
                                 model.backbone.bottom_up, str(path))
        out.update({f"backbone.bottom_up.{k}": v for k, v in body.items()})
        levels = {f[3:]: i for i, f in enumerate(model.backbone.in_features)}
        for key, value in state.items():
            m = re.match(r"^backbone\.fpn_(lateral|output)(\d)\.(.*)$", key)
            if m:
                kind = "lateral_convs" if m.group(1) == "lateral" else "output_convs"
                out[f"backbone.{kind}.{levels[m.group(2)]}.0.{m.group(3)}"] = value
    else:
        body = detectron2_state(sub_state(state, "backbone."), model.backbone, str(path))
        out.update({f"backbone.{k}": v for k, v in body.items()})
        head = {k[len("roi_heads."):]: v for k, v in state.items() if k.startswith("roi_heads.res5.")}
        res5 = detectron2_state(head, model.roi_heads.box_head.res5, str(path))
        out.update({f"roi_heads.box_head.res5.{k[len('layer4.'):]}": v for k, v in res5.items()})
    renames = {"proposal_generator.rpn_head.conv.": "rpn.head.conv.",
               "proposal_generator.rpn_head.objectness_logits.": "rpn.head.cls_logits.",
               "proposal_generator.rpn_head.anchor_deltas.": "rpn.head.bbox_pred.",
               "roi_heads.box_head.fc1.": "roi_heads.box_head.fc6.",
               "roi_heads.box_head.fc2.": "roi_heads.box_head.fc7.",
               "roi_heads.box_predictor.": "roi_heads.box_predictor."}
    for key, value in state.items():
        for old, new in renames.items():
            if key.startswith(old):
                out[new + key[len(old):]] = value
    _ratio_major_anchors(out, model)
    return out


def _ratio_major_anchors(state: dict[str, torch.Tensor], model: FasterRCNN) -> None:
    """detectron2 orders a location's anchors size-major, ours (torchvision's) ratio-major: permute
    the RPN outputs when a level has several sizes."""
    gen = model.rpn.anchor_generator
    a = gen.num_anchors[0]
    num_ratios = gen.num_ratios[0]
    num_sizes = a // num_ratios
    if num_sizes == 1:
        return
    # ours: index r * S + s ; detectron2: index s * R + r
    perm = torch.arange(a).view(num_sizes, num_ratios).t().reshape(-1)
    for name in ("weight", "bias"):
        key = f"rpn.head.cls_logits.{name}"
        state[key] = state[key][perm]
        key = f"rpn.head.bbox_pred.{name}"
        v = state[key]
        state[key] = v.view(a, 4, *v.shape[1:])[perm].reshape(v.shape)

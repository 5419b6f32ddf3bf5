"""resdet backbones inside detectron2: a picklable ``Backbone`` wrapper and registered builders.

Importing this module imports detectron2 (nothing else in ``backbones`` does). After
:func:`register_detectron2` a detectron2 config selects

- ``MODEL.BACKBONE.NAME: "build_resdet_fpn_backbone"``: ResNet + FPN (p2..p6, as detectron2's
  ``build_resnet_fpn_backbone``), from ``MODEL.RESNETS.*``, ``MODEL.BACKBONE.FREEZE_AT`` and
  ``MODEL.FPN.*``;
- ``MODEL.BACKBONE.NAME: "build_resdet_backbone"``: the ResNet alone (C4: ``OUT_FEATURES:
  ["res4"]``; detectron2's ``Res5ROIHeads`` builds res5 itself).
- ``MODEL.BACKBONE.NAME: "build_resdet_retinanet_backbone"``: ResNet + FPN over res3..res5 with
  P6/P7 from res5 (p3..p7), as detectron2's ``build_retinanet_resnet_fpn_backbone``.

``MODEL.RESDET.WEIGHTS`` (added by :func:`add_resdet_config`; any source
``backbones.weights.load_pretrained`` reads, e.g. ``torchvision:resnet50`` or ``R-50.pkl``) loads
backbone weights at build time; the builder then refuses a config whose ``INPUT.FORMAT`` /
``MODEL.PIXEL_MEAN`` / ``MODEL.PIXEL_STD`` disagree with what those weights expect.
"""

from __future__ import annotations

from typing import Any

from detectron2.config import CfgNode
from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY, Backbone
from torch import Tensor, nn

from backbones.fpn import FPN
from backbones.interop.detectron2_config import check_pixel_settings, fpn_kwargs, resnet_kwargs
from backbones.resnet import ResNet


class ResdetBackbone(Backbone):
    """A resdet backbone (``output_specs``, dict of feature maps) as a detectron2 ``Backbone``.

    ``size_divisibility`` follows detectron2: an FPN pads inputs to its largest *input* stride
    (32 over res2..res5; the max-pooled p6 needs no more), a bare ResNet asks for none (0).
    Defined at module level, so a wrapped model pickles.
    """

    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body
        self._out_features = list(body.output_specs)
        self._out_feature_channels = {k: s.channels for k, s in body.output_specs.items()}
        self._out_feature_strides = {k: s.stride for k, s in body.output_specs.items()}

    @property
    def size_divisibility(self) -> int:
        if isinstance(self.body, FPN):
            return max(2 ** int(name[1:]) for name in self.body.level_names)
        return 0

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """(N, 3, H, W) normalised as ``body.pixel_format`` says -> {name: (N, C, H/s, W/s)}."""
        return self.body(x)

    def output_shape(self) -> dict[str, ShapeSpec]:
        return {
            k: ShapeSpec(channels=s.channels, stride=s.stride)
            for k, s in self.body.output_specs.items()
        }


def add_resdet_config(cfg: CfgNode) -> None:
    """Add ``MODEL.RESDET.WEIGHTS`` (default ``""``: no backbone weights at build time)."""
    cfg.MODEL.RESDET = CfgNode()
    cfg.MODEL.RESDET.WEIGHTS = ""


def _resnet(cfg: CfgNode, input_shape: ShapeSpec) -> ResNet:
    net = ResNet(**resnet_kwargs(cfg, input_shape.channels))
    weights = cfg.MODEL.get("RESDET", CfgNode()).get("WEIGHTS", "")
    if weights:
        from backbones.weights import load_pretrained

        report = load_pretrained(net, weights)
        check_pixel_settings(cfg, report.pixel_format, weights)
    return net


def build_resdet_backbone(cfg: CfgNode, input_shape: ShapeSpec) -> ResdetBackbone:
    """The ResNet of ``MODEL.RESNETS.*`` as a detectron2 backbone."""
    return ResdetBackbone(_resnet(cfg, input_shape))


def build_resdet_fpn_backbone(cfg: CfgNode, input_shape: ShapeSpec) -> ResdetBackbone:
    """ResNet + FPN as detectron2's ``build_resnet_fpn_backbone`` configures them."""
    return ResdetBackbone(FPN(_resnet(cfg, input_shape), **fpn_kwargs(cfg)))


def build_resdet_retinanet_backbone(cfg: CfgNode, input_shape: ShapeSpec) -> ResdetBackbone:
    """ResNet + FPN with P6/P7 made from res5, as detectron2's
    ``build_retinanet_resnet_fpn_backbone`` configures them (``MODEL.FPN.IN_FEATURES`` res3..res5
    -> p3..p7)."""
    kwargs = {**fpn_kwargs(cfg), "top_block": "p6p7", "top_block_input": "c5"}
    return ResdetBackbone(FPN(_resnet(cfg, input_shape), **kwargs))


#: our (torchvision's) names inside a bottleneck block -> detectron2's, for res5
_RES5_NAMES = {
    "conv1.": "conv1.",
    "bn1.": "conv1.norm.",
    "conv2.": "conv2.",
    "bn2.": "conv2.norm.",
    "conv3.": "conv3.",
    "bn3.": "conv3.norm.",
    "downsample.0.": "shortcut.",
    "downsample.1.": "shortcut.norm.",
}


def load_res5_weights(model: nn.Module, source: str) -> int:
    """Load res5 of ``source`` (any weights ``load_pretrained`` reads: torchvision, timm, MSRA
    ``.pkl``, ours) into the ``res5`` that detectron2's ``Res5ROIHeads`` builds for C4 models
    (``model.roi_heads.res5``): ``build_resdet_backbone`` builds the ResNet up to res4 only, so
    ``MODEL.RESDET.WEIGHTS`` cannot reach it. Call it after ``build_model(cfg)`` with the same
    source. Returns the number of tensors copied; every res5 tensor is set, or ``ValueError``."""
    from backbones.weights import load_pretrained

    res5 = model.roi_heads.res5
    depth = {6: 50, 23: 101, 36: 152}.get(len(model.backbone.body.layer3))  # res4 blocks
    if depth is None:
        raise ValueError("load_res5_weights: the backbone is not a ResNet-50/101/152 up to res4")
    donor = ResNet(depth, norm="BN", out_features=("res5",))
    load_pretrained(donor, source)
    state = {}
    for key, value in donor.layer4.state_dict().items():
        block, rest = key.split(".", 1)
        for ours, theirs in _RES5_NAMES.items():
            if rest.startswith(ours):
                state[f"{block}.{theirs}{rest[len(ours) :]}"] = value
    target = res5.state_dict()
    missing = sorted(set(target) - set(state))
    if missing:
        raise ValueError(f"load_res5_weights: {source} has no tensor for res5.{missing[0]}")
    res5.load_state_dict({k: state[k] for k in target})
    return len(target)


def as_detectron2_backbone(body: nn.Module) -> ResdetBackbone:
    """Wrap ``body`` (any backbone with ``output_specs``) as a detectron2 ``Backbone``."""
    return ResdetBackbone(body)


def register_detectron2() -> dict[str, Any]:
    """Register ``build_resdet_backbone``, ``build_resdet_fpn_backbone`` and
    ``build_resdet_retinanet_backbone`` in detectron2's ``BACKBONE_REGISTRY``; returns them by
    name. Calling it again is a no-op, except after this module was imported anew
    (``importlib.reload``, a notebook re-run): the registry then gets this import's builders, whose
    wrapper class is the one ``pickle`` finds under this module's name."""
    builders = {
        f.__name__: f
        for f in (build_resdet_backbone, build_resdet_fpn_backbone, build_resdet_retinanet_backbone)
    }
    for name, fn in builders.items():
        if name not in BACKBONE_REGISTRY:
            BACKBONE_REGISTRY.register(fn)
        elif BACKBONE_REGISTRY.get(name) is not fn:
            # detectron2's Registry refuses a second registration of a name
            BACKBONE_REGISTRY._obj_map[name] = fn
    return builders

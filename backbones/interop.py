"""Use a resdet backbone, unchanged, inside torchvision, detectron2, mmdetection or timm-style code.

Nothing here runs at import time: detectron2 and mmdetection are imported only by the functions
that need them, so ``import backbones.resnet`` never touches either library.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Sequence

from torch import Tensor, nn

from backbones.resnet import ResNet
from backbones.spec import FeatureSpec


class TorchvisionBackbone(nn.Module):
    """A torchvision detection backbone: ``out_channels`` and ``OrderedDict`` outputs.

    Works as the ``backbone`` of ``torchvision.models.detection.FasterRCNN``/``MaskRCNN`` when
    every output of ``body`` has the same channel count (an :class:`backbones.fpn.FPN`, or a
    ResNet with one output feature). Output keys are ``"0", "1", ...`` (highest resolution
    first), the names torchvision's default RoI pooler reads, or the backbone's own names with
    ``keys="names"``. Pass :meth:`transform_kwargs` to the detector so torchvision's transform
    normalises images the way the weights expect; for BGR formats this module flips the
    channels after that normalisation.
    """

    def __init__(self, body: nn.Module, keys: str = "index") -> None:
        super().__init__()
        if keys not in ("index", "names"):
            raise ValueError(f"unknown keys {keys!r}; allowed: index, names")
        specs: dict[str, FeatureSpec] = body.output_specs
        channels = {s.channels for s in specs.values()}
        if len(channels) != 1:
            found = ", ".join(f"{k}: {s.channels}" for k, s in specs.items())
            raise ValueError(
                f"torchvision detectors need one channel count for every feature "
                f"map, got {{{found}}}; wrap the backbone in an FPN or keep one "
                f"output feature"
            )
        self.body = body
        self.out_channels: int = channels.pop()
        self._keys = keys

    def transform_kwargs(self) -> dict[str, list[float]]:
        """``image_mean``/``image_std`` (RGB order, for images in 0..1) for torchvision's
        ``GeneralizedRCNNTransform`` that reproduce ``body.pixel_format``."""
        fmt = self.body.pixel_format
        order = slice(None, None, -1) if fmt.channel_order == "BGR" else slice(None)
        return {
            "image_mean": [m / fmt.scale for m in fmt.mean[order]],
            "image_std": [s / fmt.scale for s in fmt.std[order]],
        }

    def forward(self, x: Tensor) -> "OrderedDict[str, Tensor]":
        """(N, 3, H, W) normalised RGB -> OrderedDict{key: (N, out_channels, H/s, W/s)}."""
        if self.body.pixel_format.channel_order == "BGR":
            x = x.flip(1)
        out = self.body(x)
        if self._keys == "names":
            return OrderedDict(out)
        return OrderedDict((str(i), v) for i, v in enumerate(out.values()))


class FeatureInfo:
    """timm-style feature metadata over a backbone's ``output_specs``.

    Checks its own invariant on construction: the reduction (stride) never decreases.
    """

    def __init__(self, specs: dict[str, FeatureSpec]) -> None:
        self._names = list(specs)
        self._specs = list(specs.values())
        for a, b in zip(self._specs, self._specs[1:]):
            if b.stride < a.stride:
                raise ValueError(
                    f"feature reductions must not decrease, got "
                    f"{[s.stride for s in self._specs]} for {self._names}"
                )

    def __len__(self) -> int:
        return len(self._specs)

    def _pick(self, values: list[Any], idx: int | Sequence[int] | None) -> Any:
        if idx is None:
            return list(values)
        if isinstance(idx, int):
            return values[idx]
        return [values[i] for i in idx]

    def channels(self, idx: int | Sequence[int] | None = None) -> int | list[int]:
        """Channel count of feature ``idx`` (all features when None)."""
        return self._pick([s.channels for s in self._specs], idx)

    def reduction(self, idx: int | Sequence[int] | None = None) -> int | list[int]:
        """Stride of feature ``idx`` relative to the input (all features when None)."""
        return self._pick([s.stride for s in self._specs], idx)

    def module_name(self, idx: int | Sequence[int] | None = None) -> str | list[str]:
        """Feature name (``res2``, ``p3``, ...) of ``idx`` (all features when None)."""
        return self._pick(self._names, idx)

    def get_dicts(self) -> list[dict[str, Any]]:
        """``[{"module": name, "num_chs": channels, "reduction": stride}, ...]`` as in timm."""
        return [
            {"module": n, "num_chs": s.channels, "reduction": s.stride}
            for n, s in zip(self._names, self._specs)
        ]


def feature_info(backbone: nn.Module) -> FeatureInfo:
    """timm-style :class:`FeatureInfo` for any backbone with ``output_specs``."""
    return FeatureInfo(backbone.output_specs)


def as_detectron2_backbone(body: nn.Module) -> nn.Module:
    """Wrap ``body`` as a ``detectron2.modeling.Backbone`` (``output_shape()`` -> ``ShapeSpec``):
    :class:`backbones.d2_adapter.ResdetBackbone`. Raises ImportError without detectron2."""
    from backbones.d2_adapter import ResdetBackbone

    return ResdetBackbone(body)


def register_detectron2() -> None:
    """Register ``build_resdet_backbone`` and ``build_resdet_fpn_backbone`` in detectron2's
    ``BACKBONE_REGISTRY`` (see :mod:`backbones.d2_adapter`); calling it again is a no-op.
    Raises ImportError without detectron2."""
    from backbones.d2_adapter import register

    register()


class MMDetResNet(ResNet):
    """:class:`backbones.resnet.ResNet` as an mmdetection backbone: the forward returns the
    ``out_features`` maps as a tuple, highest resolution first, as mmdet necks expect."""

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:  # type: ignore[override]
        """(N, 3, H, W) -> ((N, C_k, H/s_k, W/s_k) for each out feature)."""
        return tuple(v for k, v in super().forward(x).items() if k in self.output_specs)

    def init_weights(self) -> None:
        """Weights are set at construction (or by ``backbones.weights.load_pretrained``)."""


def register_mmdet_backbone(name: str = "ResdetResNet") -> type:
    """Register :class:`MMDetResNet` under ``name`` in mmdetection's ``MODELS`` registry.

    Call it once before building an mmdet config that uses ``dict(type=name, depth=50, ...)``;
    the keywords are those of :class:`backbones.resnet.ResNet`. Returns the registered class.
    Raises ImportError when mmdet is not installed, or when its registry cannot load because
    mmcv lacks its compiled ops (``mmcv-lite``).
    """
    from mmdet.registry import MODELS

    try:
        existing = MODELS.get(name)
    except ModuleNotFoundError as e:
        if "mmcv._ext" not in str(e):
            raise
        raise ImportError(
            "mmdetection imports, but its model registry needs mmcv's compiled ops (mmcv._ext), "
            "which mmcv-lite does not have: install the full mmcv"
        ) from e
    if existing is not None:
        return existing
    MODELS.register_module(name=name, module=MMDetResNet)
    return MMDetResNet

"""A resdet ResNet as an mmdetection backbone; mmdet is imported only by the registering call."""

from __future__ import annotations

from torch import Tensor

from backbones.resnet import ResNet


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

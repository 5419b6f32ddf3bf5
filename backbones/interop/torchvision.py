"""A resdet backbone as the ``backbone`` of torchvision's ``FasterRCNN`` / ``MaskRCNN``."""

from __future__ import annotations

from collections import OrderedDict

from torch import Tensor, nn

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

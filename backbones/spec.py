"""Metadata every backbone declares: the feature maps it returns and the pixel format it expects."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FeatureSpec:
    """One output feature map: `channels` deep, `stride` input pixels per feature cell."""

    channels: int
    stride: int

    def __post_init__(self) -> None:
        if self.channels <= 0 or self.stride <= 0:
            raise ValueError(f"FeatureSpec needs positive channels and stride, got {self}")


@dataclass(frozen=True)
class PixelFormat:
    """How an RGB image in 0..1 becomes the network input the weights were trained on.

    ``x = (rgb_or_bgr(img) * scale - mean) / std`` per channel, with ``mean``/``std`` given in the
    order of ``channel_order``.
    """

    channel_order: str = "RGB"
    scale: float = 1.0
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)

    def __post_init__(self) -> None:
        if self.channel_order not in ("RGB", "BGR"):
            raise ValueError(f"channel_order must be 'RGB' or 'BGR', got {self.channel_order!r}")
        if len(self.mean) != 3 or len(self.std) != 3:
            raise ValueError(f"mean and std need 3 values each, got {self.mean} and {self.std}")

    def to_dict(self) -> dict:
        return {
            "channel_order": self.channel_order,
            "scale": self.scale,
            "mean": list(self.mean),
            "std": list(self.std),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "PixelFormat":
        return cls(
            channel_order=d["channel_order"],
            scale=float(d["scale"]),
            mean=tuple(float(v) for v in d["mean"]),
            std=tuple(float(v) for v in d["std"]),
        )


#: torchvision and timm ImageNet weights: RGB in 0..1, normalised by ImageNet mean/std.
TORCHVISION_PIXELS = PixelFormat()
#: MSRA/caffe and detectron2 .pkl weights: BGR in 0..255 minus the pixel mean, unit std.
CAFFE_PIXELS = PixelFormat(
    channel_order="BGR", scale=255.0, mean=(103.530, 116.280, 123.675), std=(1.0, 1.0, 1.0)
)

"""Classification augmentation as in He et al. 2015, on uint8 `[3, H, W]` RGB tensors.

ImageNet (Sec. 3.4): short side resized to a random length in [256, 480], a random 224x224 crop and
a horizontal flip; test: short side 256, the centre 224 crop, or the 10 crops (corners, centre,
flipped).
CIFAR-10 (Sec. 4.2): 4 zero pixels padded on each side, a random 32x32 crop and a horizontal flip;
test: the original image; `pad_crop_flip` does the same to a whole batch at once, on the batch's
device.
Pixel normalisation is a separate module applied to whole batches on the training device
(`PixelNormalize`), so images stay uint8 until then.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.transforms import v2

from backbones.spec import PixelFormat


def imagenet_train_transform(
    crop: int = 224, short_side: tuple[int, int] = (256, 480)
) -> v2.Compose:
    """Scale augmentation: short side uniform in `short_side` (inclusive), random `crop`^2, flip."""
    lo, hi = short_side
    if not crop <= lo <= hi:
        raise ValueError(f"short_side range {short_side} must satisfy crop ({crop}) <= min <= max")
    return v2.Compose(
        [
            v2.RandomShortestSize(min_size=list(range(lo, hi + 1)), antialias=True),
            v2.RandomCrop(crop),
            v2.RandomHorizontalFlip(),
        ]
    )


def imagenet_test_transform(
    crop: int = 224, short_side: int = 256, ten_crop: bool = False
) -> v2.Compose:
    """Short side `short_side`, then the centre `crop`^2 -> `[3, crop, crop]`, or 10 crops ->
    `[10, 3, crop, crop]`."""
    if ten_crop:
        return v2.Compose([v2.Resize(short_side, antialias=True), v2.TenCrop(crop), _Stack()])
    return v2.Compose([v2.Resize(short_side, antialias=True), v2.CenterCrop(crop)])


def cifar_train_transform(size: int = 32, pad: int = 4) -> v2.Compose:
    """Pad `pad` zero pixels on each side, random `size`^2 crop, horizontal flip."""
    return v2.Compose([v2.RandomCrop(size, padding=pad, fill=0), v2.RandomHorizontalFlip()])


def cifar_test_transform(size: int = 32) -> v2.Compose:
    """The image itself, centre-cropped to `size` if it is larger (CIFAR images
    already are 32x32)."""
    return v2.Compose([v2.CenterCrop(size)])


def pad_crop_flip(images: torch.Tensor, pad: int, generator: torch.Generator) -> torch.Tensor:
    """CIFAR augmentation of a batch: `[N, C, H, W]` -> `[N, C, H, W]`, same dtype and device.

    Each image is padded with `pad` zero pixels on every side, cropped back to `H x W` at an offset
    drawn uniformly from `0..2*pad` in each direction, and mirrored left-right with probability 1/2,
    all drawn from `generator` (on the batch's device).
    """
    n, c, h, w = images.shape
    dev = images.device
    padded = torch.nn.functional.pad(images, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n, 1), generator=generator, device=dev)
    dx = torch.randint(0, 2 * pad + 1, (n, 1), generator=generator, device=dev)
    flip = torch.rand((n, 1), generator=generator, device=dev) < 0.5
    rows = dy + torch.arange(h, device=dev)  # (N, H) rows of the padded image
    cols = dx + torch.arange(w, device=dev)  # (N, W)
    cols = torch.where(flip, cols.flip(1), cols)
    # (N, H, 1) * padded width + (N, 1, W) -> (N, H*W) offsets into each padded channel
    flat = (rows[:, :, None] * (w + 2 * pad) + cols[:, None, :]).view(n, 1, h * w)
    out = padded.view(n, c, -1).gather(2, flat.expand(n, c, h * w))
    return out.view(n, c, h, w)


class _Stack(nn.Module):
    """Tuple of `[3, H, W]` crops (from `TenCrop`) -> one `[n, 3, H, W]` tensor."""

    def forward(self, crops: tuple[torch.Tensor, ...]) -> torch.Tensor:
        return torch.stack(list(crops))


class PixelNormalize(nn.Module):
    """uint8 (0..255) or float (0..1) RGB `[..., 3, H, W]` -> float network input in `pixel_format`.

    `x = (reorder(rgb01) * scale - mean) / std` per channel, `reorder` giving BGR
    when the format asks.
    """

    def __init__(self, pixel_format: PixelFormat) -> None:
        super().__init__()
        self.pixel_format = pixel_format
        self.bgr = pixel_format.channel_order == "BGR"
        self.register_buffer(
            "mean", torch.tensor(pixel_format.mean).view(3, 1, 1), persistent=False
        )
        self.register_buffer("std", torch.tensor(pixel_format.std).view(3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-3] != 3:
            raise ValueError(
                f"PixelNormalize expects [..., 3, H, W] images, got shape {tuple(x.shape)}"
            )
        x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
        if self.bgr:
            x = x.flip(-3)
        return (x * self.pixel_format.scale - self.mean) / self.std

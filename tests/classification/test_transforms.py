"""Classification augmentation: shapes and the properties the paper's recipes state."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from backbones.spec import CAFFE_PIXELS, TORCHVISION_PIXELS, PixelFormat
from resdet.classification.transforms import (
    PixelNormalize,
    cifar_test_transform,
    cifar_train_transform,
    imagenet_test_transform,
    imagenet_train_transform,
)


def unique_image(h: int, w: int) -> torch.Tensor:
    """uint8 image whose (R, G) pair identifies the pixel position, B constant."""
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    return torch.stack([ys + 1, xs + 1, torch.full_like(ys, 7)]).to(torch.uint8)


@pytest.mark.parametrize("hw", [(300, 400), (500, 260), (224, 224)])
def test_imagenet_train_output(hw):
    torch.manual_seed(0)
    out = imagenet_train_transform()(torch.zeros(3, *hw, dtype=torch.uint8))
    assert out.shape == (3, 224, 224) and out.dtype == torch.uint8


def test_imagenet_scale_range():
    torch.manual_seed(0)
    resize = imagenet_train_transform().transforms[0]
    shorts = []
    for _ in range(60):
        h, w = resize(torch.zeros(3, 300, 400, dtype=torch.uint8)).shape[-2:]
        assert abs(w / h - 4 / 3) < 0.01  # aspect ratio kept
        shorts.append(h)
    assert 256 <= min(shorts) < 290 and 440 < max(shorts) <= 480


def test_random_crop_and_flip_are_windows_of_the_image():
    torch.manual_seed(0)
    # short side pinned to 64 on a 64x80 image: the crop must be a 48x48 window, flipped or not
    t = imagenet_train_transform(crop=48, short_side=(64, 64))
    img = unique_image(64, 80)
    flips, offsets = 0, set()
    for _ in range(40):
        out = t(img)
        if out[1, 0, 0] > out[1, 0, -1]:
            out, flips = out.flip(-1), flips + 1
        y0, x0 = int(out[0, 0, 0]) - 1, int(out[1, 0, 0]) - 1
        assert torch.equal(out, img[:, y0 : y0 + 48, x0 : x0 + 48])
        offsets.add((y0, x0))
    assert 5 < flips < 35 and len(offsets) > 10


def test_imagenet_ten_crop_matches_manual_crops():
    img = unique_image(64, 96)
    crops = imagenet_test_transform(crop=32, short_side=64, ten_crop=True)(img)
    assert crops.shape == (10, 3, 32, 32)

    def five(im):
        return [
            im[:, :32, :32],
            im[:, :32, -32:],
            im[:, -32:, :32],
            im[:, -32:, -32:],
            im[:, 16:48, 32:64],
        ]

    # the five crops of the image, then the same five of its mirror image
    expected = five(img) + five(img.flip(-1))
    for got, want in zip(crops, expected):
        assert torch.equal(got, want)
    centre = imagenet_test_transform(crop=32, short_side=64)(img)
    assert torch.equal(centre, expected[4])


def test_cifar_pad_crop_flip():
    torch.manual_seed(0)
    img = unique_image(32, 32)
    padded = F.pad(img, (4, 4, 4, 4))  # zeros, as the paper pads
    t = cifar_train_transform()
    shifts = set()
    for _ in range(60):
        out = t(img)
        assert out.shape == (3, 32, 32)
        found = [
            (dy, dx, flip)
            for dy in range(9)
            for dx in range(9)
            for flip in (False, True)
            if torch.equal(
                out, (lambda w: w.flip(-1) if flip else w)(padded[:, dy : dy + 32, dx : dx + 32])
            )
        ]
        assert found, "output is not a (flipped) 32x32 window of the 4-pixel zero-padded image"
        shifts.add(found[0])
    assert len(shifts) > 20
    assert torch.equal(cifar_test_transform()(img), img)


def test_pixel_normalize_caffe_by_hand():
    x = torch.tensor([255, 0, 128], dtype=torch.uint8).view(3, 1, 1)
    out = PixelNormalize(CAFFE_PIXELS)(x).flatten().tolist()
    # BGR order, 0..255, mean subtracted, unit std
    assert out == pytest.approx([128 - 103.530, 0 - 116.280, 255 - 123.675], abs=1e-4)


def test_pixel_normalize_torchvision_matches_reference():
    from torchvision.transforms.v2 import functional as TF

    x = torch.randint(0, 256, (2, 3, 5, 7), dtype=torch.uint8)
    ours = PixelNormalize(TORCHVISION_PIXELS)(x)
    ref = TF.normalize(
        x.float() / 255, mean=list(TORCHVISION_PIXELS.mean), std=list(TORCHVISION_PIXELS.std)
    )
    torch.testing.assert_close(ours, ref)
    # float input in 0..1 gives the same as uint8
    torch.testing.assert_close(PixelNormalize(TORCHVISION_PIXELS)(x.float() / 255), ref)
    with pytest.raises(ValueError, match="3, H, W"):
        PixelNormalize(PixelFormat())(torch.zeros(1, 4, 2, 2))

"""Flip / collate against torchvision's own box transforms; the data side never resizes."""

import numpy as np
import torch
from torchvision import tv_tensors
from torchvision.transforms.v2 import functional as F

from resdet.config.data import DataConfig
from resdet.data.build import build_transforms
from resdet.data.collate import collate_detection
from resdet.data.transforms import RandomHorizontalFlip

BOXES = np.array([[0, 0, 10, 5], [3.5, 7.25, 29, 19], [20, 1, 30, 20]], dtype=np.float32)


def image(h=20, w=30):
    """A (3, H, W) uint8 view of an (H, W, 3) array, as the dataset hands it over."""
    return torch.from_numpy(
        np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)
    ).permute(2, 0, 1)


def test_flip_matches_torchvision_and_is_an_involution():
    img = image()
    flip = RandomHorizontalFlip(1.0)
    out, t = flip(img, {"boxes": BOXES.copy(), "labels": np.arange(3)})
    ref = F.horizontal_flip(
        tv_tensors.BoundingBoxes(torch.from_numpy(BOXES), format="XYXY", canvas_size=(20, 30))
    )
    np.testing.assert_allclose(t["boxes"], ref.numpy())
    assert torch.equal(
        out, torch.from_numpy(img.permute(1, 2, 0).numpy()[:, ::-1].copy()).permute(2, 0, 1)
    )
    back, t2 = flip(out, t)
    assert torch.equal(back, img)
    np.testing.assert_allclose(t2["boxes"], BOXES)
    assert RandomHorizontalFlip(0.0)(img, {"boxes": BOXES})[0] is img


def test_flip_probability():
    flip = RandomHorizontalFlip(0.5)
    torch.manual_seed(0)
    flipped = sum(flip(image(), {"boxes": BOXES})[1]["boxes"][0, 0] != 0 for _ in range(400))
    assert 150 < flipped < 250


def test_pipeline_keeps_the_decoded_size():
    """The detector resizes (model.input); train (flip only) and test transforms keep
    H, W and box scale."""
    img = image()
    for split in ("train", "test"):
        out, t = build_transforms(DataConfig(flip_prob=1.0), split)(img, {"boxes": BOXES.copy()})
        assert out.shape == img.shape
        flipped = F.horizontal_flip(
            tv_tensors.BoundingBoxes(torch.from_numpy(BOXES), format="XYXY", canvas_size=(20, 30))
        ).numpy()
        np.testing.assert_allclose(t["boxes"], flipped if split == "train" else BOXES)


def test_collate_keeps_sizes_and_metadata():
    batch = [(torch.zeros(3, 4, 5), {"image_id": "a"}), (torch.zeros(3, 6, 2), {"image_id": 7})]
    images, targets = collate_detection(batch)
    assert [i.shape for i in images] == [(3, 4, 5), (3, 6, 2)]
    assert targets == [{"image_id": "a"}, {"image_id": 7}]

"""Resize / flip / collate against torchvision's own box transforms."""
import numpy as np
import pytest
import torch
from torchvision import tv_tensors
from torchvision.transforms.v2 import functional as F

from resdet.data.collate import collate_detection
from resdet.data.transforms import (Compose, RandomHorizontalFlip, ResizeShortestEdge, resized_shape,
                                    to_original_size)

BOXES = np.array([[0, 0, 10, 5], [3.5, 7.25, 29, 19], [20, 1, 30, 20]], dtype=np.float32)


def image(h=20, w=30):
    """A (3, H, W) uint8 view of an (H, W, 3) array, as the dataset hands it over."""
    return torch.from_numpy(np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)).permute(2, 0, 1)


@pytest.mark.parametrize("h,w,short,max_size,expected", [
    (20, 30, 40, 1000, (40, 60)),    # shorter side reaches 40
    (20, 30, 40, 45, (30, 45)),      # the longer side would pass 45: capped
    (480, 640, 800, 1333, (800, 1067)),
    (640, 480, 800, 1333, (1067, 800)),
    (100, 1000, 800, 1333, (133, 1333)),
])
def test_resized_shape(h, w, short, max_size, expected):
    assert resized_shape(h, w, short, max_size) == expected


def test_resize_matches_torchvision_boxes():
    img, t = ResizeShortestEdge([40], 1000)(image(), {"boxes": BOXES.copy()})
    assert img.shape == (3, 40, 60) and img.dtype == torch.uint8
    # a flat image stays flat: resampling only interpolates
    flat, _ = ResizeShortestEdge([33], 1000)(torch.full((3, 20, 30), 77, dtype=torch.uint8), {"boxes": BOXES.copy()})
    assert flat.shape == (3, 33, 50) and (flat == 77).all()
    ref = F.resize(tv_tensors.BoundingBoxes(torch.from_numpy(BOXES), format="XYXY", canvas_size=(20, 30)), [40, 60])
    np.testing.assert_allclose(t["boxes"], ref.numpy(), rtol=1e-6)


def test_resize_picks_every_listed_size():
    t = ResizeShortestEdge([16, 24, 32], 1000)
    torch.manual_seed(0)
    sizes = {t(image(), {"boxes": BOXES.copy()})[0].shape[1] for _ in range(40)}
    assert sizes == {16, 24, 32}


def test_flip_matches_torchvision_and_is_an_involution():
    img = image()
    flip = RandomHorizontalFlip(1.0)
    out, t = flip(img, {"boxes": BOXES.copy(), "labels": np.arange(3)})
    ref = F.horizontal_flip(tv_tensors.BoundingBoxes(torch.from_numpy(BOXES), format="XYXY", canvas_size=(20, 30)))
    np.testing.assert_allclose(t["boxes"], ref.numpy())
    assert torch.equal(out, torch.from_numpy(img.permute(1, 2, 0).numpy()[:, ::-1].copy()).permute(2, 0, 1))
    back, t2 = flip(out, t)
    assert torch.equal(back, img)
    np.testing.assert_allclose(t2["boxes"], BOXES)
    assert RandomHorizontalFlip(0.0)(img, {"boxes": BOXES})[0] is img


def test_flip_probability():
    flip = RandomHorizontalFlip(0.5)
    torch.manual_seed(0)
    flipped = sum(flip(image(), {"boxes": BOXES})[1]["boxes"][0, 0] != 0 for _ in range(400))
    assert 150 < flipped < 250


def test_back_to_original_size_inverts_resize():
    img, t = Compose([ResizeShortestEdge([45], 60)])(image(), {"boxes": BOXES.copy()})
    back = to_original_size(torch.from_numpy(t["boxes"]), img.shape[-2:], (20, 30))
    torch.testing.assert_close(back, torch.from_numpy(BOXES), rtol=1e-5, atol=1e-4)
    clipped = to_original_size(torch.tensor([[-5.0, -1.0, 100.0, 100.0]]), (40, 60), (20, 30))
    assert clipped.tolist() == [[0.0, 0.0, 30.0, 20.0]]


def test_collate_keeps_sizes_and_metadata():
    batch = [(torch.zeros(3, 4, 5), {"image_id": "a"}), (torch.zeros(3, 6, 2), {"image_id": 7})]
    images, targets = collate_detection(batch)
    assert [i.shape for i in images] == [(3, 4, 5), (3, 6, 2)]
    assert targets == [{"image_id": "a"}, {"image_id": 7}]

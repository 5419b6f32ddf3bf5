"""A seeded torchvision maskrcnn_resnet50_fpn, saved and loaded into the model built from
configs/torchvision_maskrcnn_r50_fpn_coco.yaml, gives the same detections and the same masks."""

from pathlib import Path

import pytest
import torch
from torchvision.models.detection import MaskRCNN
from torchvision_models import seeded_torchvision

from resdet import build_model, load_checkpoint, load_config

CONFIG = Path(__file__).parents[2] / "configs" / "torchvision_maskrcnn_r50_fpn_coco.yaml"
MIN_SIZE, MAX_SIZE = 224, 352  # smaller than 800/1333 for CPU time, the same in both models


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    tv = seeded_torchvision(MaskRCNN, MIN_SIZE, MAX_SIZE)
    # mask logits spread well away from 0 so that the 0.5 threshold is not decided by rounding
    torch.nn.init.normal_(tv.roi_heads.mask_predictor.mask_fcn_logits.weight, std=1.0)
    path = tmp_path_factory.mktemp("tv") / "maskrcnn_resnet50_fpn.pth"
    torch.save(tv.state_dict(), path)
    sizes = [f"model.input.min_size_test={MIN_SIZE}", f"model.input.max_size_test={MAX_SIZE}"]
    exact = ["model.backbone.fold_frozen_bn=false", "model.input.channels_last=false"]
    ours = build_model(load_config(CONFIG, sizes + exact)).eval()
    assert load_checkpoint(ours, path) == "torchvision"
    return tv, ours


def _iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(D, H, W) bool x (D, H, W) bool -> (D,) mask IoU (1 where both are empty)."""
    inter = (a & b).flatten(1).sum(1).float()
    union = (a | b).flatten(1).sum(1).float()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))


@torch.no_grad()
@pytest.mark.parametrize("shape", [(200, 275), (250, 166)])
def test_same_detections_and_masks(models, shape):
    tv, ours = models
    g = torch.Generator().manual_seed(shape[0])
    images = [torch.rand(3, *shape, generator=g)]
    (expected,), (got,) = tv(images), ours(images)
    assert len(got["boxes"]) == len(expected["boxes"]) > 10
    torch.testing.assert_close(got["boxes"], expected["boxes"], atol=1e-3, rtol=0)
    torch.testing.assert_close(got["scores"], expected["scores"], atol=1e-4, rtol=0)
    assert torch.equal(got["labels"], expected["labels"] - 1)
    assert got["masks"].shape == expected["masks"].shape == (len(got["boxes"]), 1, *shape)
    torch.testing.assert_close(got["masks"], expected["masks"], atol=1e-4, rtol=0)
    # Binary masks at 0.5. Random weights give sub-pixel boxes whose pasted masks hold exact
    # interpolation midpoints (0.5 within 4e-6 in both): ties, left out of the comparison.
    ref = expected["masks"][:, 0]
    decided = (ref - 0.5).abs() > 1e-5
    binary_got, binary_expected = (got["masks"][:, 0] > 0.5) & decided, (ref > 0.5) & decided
    assert binary_expected.flatten(1).any(1).float().mean() > 0.5  # most masks are non-empty
    assert bool((_iou(binary_got, binary_expected) >= 0.99).all())

"""Compute and size of the torchvision recipe against torchvision's published figures."""

from pathlib import Path

import pytest

from resdet import build_model, load_config
from tools.model_stats import count

CONFIG = Path(__file__).parents[2] / "configs" / "torchvision_frcnn_r50_fpn_coco.yaml"


def test_torchvision_recipe_matches_published_size_and_flops():
    model = build_model(load_config(CONFIG))
    # torchvision's FasterRCNN_ResNet50_FPN_Weights.COCO_V1 meta: 41,755,286 parameters, 134.38
    # GFLOPS (fvcore-style multiply-adds on an 800x800 input with the full 1000 test proposals)
    # minus its unused background box regressor (1024 x 4 weights + 4 biases), which we do not build
    assert sum(p.numel() for p in model.parameters()) == 41_755_286 - 4100
    gflops, proposals = count(model, 800, 800)
    assert proposals == 1000
    assert gflops == pytest.approx(134.38, rel=2e-3)

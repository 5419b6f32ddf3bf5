"""resdet.benchmarks.torchvision_reference builds torchvision's FasterRCNN to one of our configs:
with the settings torchvision fixes in code put into our config too, and the same weights, both
detectors give the same detections (both training through our engine: test_accuracy.py)."""

from pathlib import Path

import pytest
import torch

from resdet import build_model, load_config
from resdet.benchmarks.torchvision_reference import torchvision_detector, unequal_settings
from resdet.io.checkpoints import load_detector_state
from tests.tools.tiny_runs import input_size

ROOT = Path(__file__).parents[2]
BCCD = ROOT / "configs" / "frcnn_r18_fpn_bccd.yaml"
#: what torchvision fixes in code, set in our config; and its arithmetic (unfolded norms, NCHW)
TORCHVISION_FIXED = [
    "model.rpn.smooth_l1_beta=0.1111111111111111",
    "model.roi_heads.smooth_l1_beta=0.1111111111111111",
    "model.roi_heads.aligned=false",
    "model.anchors.round_to_int=true",
    "model.anchors.stride_from_image_size=true",
    "model.rpn.min_box_size=0.001",
    "model.roi_heads.min_box_size=0.01",
    "model.backbone.fold_frozen_bn=false",
    "model.input.channels_last=false",
    "model.backbone.weights=null",
]


def test_same_weights_same_detections():
    cfg = load_config(BCCD, [*TORCHVISION_FIXED, *input_size(160)])
    # the config now differs from torchvision's only in what no config can set
    assert unequal_settings(cfg) == [
        "head initialisation: each library's own (RPN, FPN, box head and predictor layers)"
    ]
    torch.manual_seed(0)
    tv = torchvision_detector(cfg, num_classes=3).eval()
    # spread the class scores so that many detections pass the 0.05 threshold, with few ties
    torch.nn.init.normal_(tv.model.roi_heads.box_predictor.cls_score.weight, std=0.05)
    for name, buf in tv.named_buffers():  # FrozenBN statistics that are not the identity
        if name.endswith("running_var"):
            buf.uniform_(0.5, 2.0)
    ours = build_model(cfg, num_classes=3).eval()
    load_detector_state(ours, tv.model.state_dict(), "torchvision_detector")
    images = [torch.rand(3, 120, 160, generator=torch.Generator().manual_seed(k)) for k in (1, 2)]
    with torch.no_grad():
        expected, got = tv(images), ours(images)
    for e, g in zip(expected, got):
        assert len(e["boxes"]) > 20
        assert e["labels"].min() >= 0 and e["labels"].max() <= 2  # 1..3 shifted to ours
        torch.testing.assert_close(g["boxes"], e["boxes"], atol=1e-3, rtol=1e-4)
        torch.testing.assert_close(g["scores"], e["scores"], atol=1e-5, rtol=1e-4)
        assert torch.equal(g["labels"], e["labels"])


def test_unequal_settings_of_the_recipe():
    lines = unequal_settings(load_config(BCCD))
    assert "model.roi_heads.aligned: ours True, torchvision False" in lines
    assert any(line.startswith("model.rpn.box_loss: ours smooth_l1 (beta 0)") for line in lines)


def test_unsupported_config_is_refused():
    cfg = load_config(BCCD, ["model.arch=c4"])
    with pytest.raises(ValueError, match="model.arch='c4'"):
        torchvision_detector(cfg, num_classes=3)

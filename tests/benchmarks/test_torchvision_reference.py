"""resdet.benchmarks.torchvision_reference builds torchvision's FasterRCNN to one of our configs:
with the settings torchvision fixes in code put into our config too, and the same weights, both
detectors give the same detections; and both train through our engine
(resdet.benchmarks.accuracy)."""

from pathlib import Path

import pytest
import torch

from resdet import build_model, load_config
from resdet.benchmarks.accuracy import accuracy_table, compare_accuracy, verdict
from resdet.benchmarks.torchvision_reference import torchvision_detector, unequal_settings
from resdet.io.checkpoints import load_detector_state
from resdet.runs.trained import TrainedRun
from tests.tools.tiny_runs import NARROW_HEADS, SHORT_SCHEDULE, input_size, shapes

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


def test_both_train_through_the_engine(tmp_path, capsys):
    overrides = [
        *NARROW_HEADS,
        *SHORT_SCHEDULE,
        *input_size(64),
        "model.backbone.weights=null",
        "model.backbone.norm=BN",
        "model.backbone.freeze_at=0",
        "solver.max_iter=3",
        "solver.checkpoint_period=3",
        "solver.log_period=1",
        shapes("train", 6, 0),
        shapes("val", 4, 0),
        "data.root=null",
        "test.best_metric=AP50",
    ]
    runs = compare_accuracy(str(BCCD), overrides, seeds=[0], root=tmp_path, progress=False)
    assert [r.label for r in runs] == ["ours", "torchvision"]
    for r in runs:
        assert 0.0 <= r.metrics["AP50"] <= 1.0 and r.seconds > 0
        assert (tmp_path / f"{r.label}_seed0" / "model_final.pth").is_file()
    # a finished run is read back, not trained again
    again = compare_accuracy(str(BCCD), overrides, seeds=[0], root=tmp_path, progress=False)
    assert again == runs
    assert capsys.readouterr().out.count("already trained") == 2


def _run(impl: str, seed: int, ap50: float, minutes: float) -> TrainedRun:
    return TrainedRun(impl, seed, {"mAP50": ap50, "AP50/cell": ap50}, 60 * minutes, "")


def test_verdict_against_the_reference_spread():
    runs = [_run("ours", 0, 0.80, 10), _run("torchvision", 0, 0.83, 12)]
    runs += [_run("ours", 1, 0.78, 10), _run("torchvision", 1, 0.79, 12)]
    v = verdict(runs, "mAP50")
    # ours 0.79 vs torchvision 0.81 with spread 0.04: within it
    assert v["ours_mean"] == pytest.approx(0.79) and v["torchvision_spread"] == pytest.approx(0.04)
    assert v["ours_no_worse"] and v["time_ratio"] == pytest.approx(10 / 12)
    runs[2] = _run("ours", 1, 0.70, 10)  # mean 0.75 < 0.81 - 0.04
    assert not verdict(runs, "mAP50")["ours_no_worse"]
    table = accuracy_table(runs).splitlines()
    assert table[0].split() == [
        "ours", "s0", "torchvision", "s0", "ours", "s1", "torchvision", "s1",
        "ours", "mean", "ours", "spread", "torchvision", "mean", "torchvision", "spread",
        "ours-tv",
    ]  # fmt: skip
    assert table[1].split() == ["mAP50", "80.0", "83.0", "70.0", "79.0", "75.0", "10.0", "81.0",
                                "4.0", "-6.0"]  # fmt: skip

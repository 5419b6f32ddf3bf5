"""tools/eval_det.py --weights: a checkpoint is run over the test set, its metrics and
detections written; the detections file scores the same through --detections (pycocotools
on the file alone)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from tiny_runs import NARROW_HEADS, input_size, save_detector, shapes

from resdet.build import build_model
from resdet.config import load_config
from resdet.evaluation.coco_evaluator import STAT_KEYS
from resdet.io.run_dir import flat_metrics
from resdet.runs.detection import load_datasets
from tools import eval_det

ROOT = Path(__file__).resolve().parents[2]
TINY = [
    shapes("val", 3, seed=4),
    "data.num_workers=0",
    *input_size(64),
    *NARROW_HEADS,
    "model.roi_heads.score_thresh=0.0",
    "model.backbone.weights=null",
]


pytestmark = pytest.mark.usefixtures("plain_convolutions")


@pytest.fixture
def checkpoint(tmp_path, private_cache):
    """An untrained detector saved as training saves it (its scores are
    near-uniform, so it detects)."""
    cfg = load_config(ROOT / "configs" / "demo_shapes.yaml", TINY)
    torch.manual_seed(0)
    model = build_model(cfg, num_classes=5)
    path = tmp_path / "model.pth"
    return save_detector(model, path)


def test_weights_writes_metrics_and_detections_that_rescore_identically(checkpoint, tmp_path):
    config = str(ROOT / "configs" / "demo_shapes.yaml")
    dets = tmp_path / "dets.json"
    metrics = eval_det.main(
        [
            config,
            "--weights",
            str(checkpoint),
            "--save-detections",
            str(dets),
            "--output-dir",
            str(tmp_path / "a"),
            *TINY,
        ]
    )
    written = json.loads(
        (tmp_path / "a" / "metrics.json").read_text()
    )  # the one layout of resdet.io.run_dir
    assert written["checkpoint"] == str(checkpoint) and set(STAT_KEYS) <= set(written["metrics"])
    assert written["metrics"] == json.loads(json.dumps(flat_metrics(metrics)))

    records = json.loads(dets.read_text())
    assert records and {tuple(sorted(r)) for r in records} == {
        ("bbox", "category_id", "image_id", "score")
    }
    assert {r["image_id"] for r in records} <= {1, 2, 3} and {
        r["category_id"] for r in records
    } <= {1, 2, 3, 4, 5}
    # boxes are in the original image's pixels (the detector resized it to a 64-px
    # short side and back)
    test_set = load_datasets(load_config(config, TINY), train=False).test
    sizes = {r.image_id: (r.width, r.height) for r in test_set.records}
    assert any(
        min(size) < 64 for size in sizes.values()
    )  # the test would not see a missed rescaling otherwise
    for r in records:
        x, y, w, h = r["bbox"]
        width, height = sizes[r["image_id"]]
        assert x >= 0 and y >= 0 and x + w <= width + 1e-3 and y + h <= height + 1e-3

    rescored = eval_det.main(
        [config, "--detections", str(dets), "--output-dir", str(tmp_path / "b"), *TINY]
    )
    for k in STAT_KEYS:
        assert rescored[k] == pytest.approx(metrics[k], abs=1e-9), k
    assert json.loads((tmp_path / "b" / "metrics.json").read_text())["detections"] == str(dets)


def test_weights_that_do_not_fit_the_config_are_refused(checkpoint, tmp_path):
    with pytest.raises(ValueError, match="does not fit the model"):
        eval_det.main(
            [
                str(ROOT / "configs" / "demo_shapes.yaml"),
                "--weights",
                str(checkpoint),
                "--output-dir",
                str(tmp_path / "a"),
                *TINY,
                "model.roi_heads.fc_dim=48",
            ]
        )


def test_weights_and_detections_are_exclusive(capsys):
    with pytest.raises(SystemExit):
        eval_det.parse_args(["c.yaml", "--weights", "a.pth", "--detections", "d.json"])
    assert "not allowed with" in capsys.readouterr().err

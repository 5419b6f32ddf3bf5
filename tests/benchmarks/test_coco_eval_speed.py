"""resdet.benchmarks.coco_eval_speed and tools/bench_coco_eval.py: the generated set is shaped like
COCO 2017 val, and the tool times every candidate, whose stats equal pycocotools'."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

from resdet.benchmarks.coco_eval_speed import (
    COCO_CATEGORY_IDS,
    synthetic_coco,
    synthetic_detections,
)

needs_faster = pytest.mark.skipif(
    importlib.util.find_spec("faster_coco_eval") is None, reason="faster-coco-eval not installed"
)


def test_the_generated_set_is_shaped_like_coco_val():
    gt = synthetic_coco(400, seed=5)
    assert len(COCO_CATEGORY_IDS) == 80 and max(COCO_CATEGORY_IDS) == 90
    assert {c["id"] for c in gt["categories"]} == set(COCO_CATEGORY_IDS)
    anns = gt["annotations"]
    assert 6.5 < len(anns) / 400 < 8.2  # COCO 2017 val: 36,781 / 5,000 = 7.36
    area = np.array([a["area"] for a in anns])
    shares = [
        np.mean(area < 32**2),
        np.mean((area >= 32**2) & (area < 96**2)),
        np.mean(area >= 96**2),
    ]
    assert all(abs(s - t) < 0.1 for s, t in zip(shares, (0.41, 0.34, 0.25))), shares
    assert 0 < sum(a["iscrowd"] for a in anns) < 0.03 * len(anns)
    sizes = {im["id"]: (im["width"], im["height"]) for im in gt["images"]}
    for a in anns:
        x, y, w, h = a["bbox"]
        assert x >= 0 and y >= 0 and x + w <= sizes[a["image_id"]][0] + 1e-6
        assert y + h <= sizes[a["image_id"]][1] + 1e-6 and a["area"] < w * h
    dets = synthetic_detections(gt, 100, seed=5)
    assert len(dets) == 400 * 100 and dets.boxes.dtype == dets.scores.dtype == np.float32
    assert synthetic_coco(400, seed=5) == gt  # seeded
    again = synthetic_detections(gt, 100, seed=5)
    assert np.array_equal(again.boxes, dets.boxes) and np.array_equal(again.scores, dets.scores)


@needs_faster
def test_bench_coco_eval_at_50_images(tmp_path, capsys):
    from tools.bench_coco_eval import main

    runs = main(["--images", "50", "--dets-per-image", "100", "--json", str(tmp_path / "b.json")])
    assert list(runs) == ["ours/pycocotools", "ours/faster", "faster-coco-eval"]
    assert runs["ours/faster"].stats == runs["ours/pycocotools"].stats  # exactly
    assert all(r.wall_s > 0 and r.peak_rss_mb > 0 and len(r.stats) == 12 for r in runs.values())
    assert 0 < runs["ours/pycocotools"].stats[0] < 1
    out = capsys.readouterr().out
    assert "ours (faster) / faster-coco-eval:" in out and "load average" in out
    written = json.loads((tmp_path / "b.json").read_text())
    assert written["args"]["images"] == 50 and set(written["runs"]) == set(runs)

"""VOC evaluation: devkit rules on hand-computed cases, the vectorised matcher against a sequential
transcription of the devkit loop, and voc_mini end to end through tools/eval_det.py."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from resdet.data.records import DatasetSource, ImageRecord
from resdet.data.voc import VOC_CLASSES
from resdet.evaluation import VOCEvaluator
from resdet.evaluation.voc_evaluator import devkit_iou, match_class, voc_ap

ROOT = Path(__file__).resolve().parents[2]


def test_iou_counts_pixels_inclusively():
    a = np.array([[1.0, 1, 10, 10]])  # 10 x 10 pixels
    b = np.array([[6.0, 1, 15, 10], [11.0, 1, 20, 10], [1.0, 1, 10, 10]])
    # overlap columns 6..10 = 5 pixels wide: 50 / (100 + 100 - 50); touching boxes do not overlap
    np.testing.assert_allclose(devkit_iou(a, b), [[50 / 150, 0.0, 1.0]])


def test_ap_rules_hand_computed():
    rec = np.array([0.5, 0.5, 1.0])
    prec = np.array([1.0, 0.5, 2 / 3])
    assert voc_ap(rec, prec, eleven_point=True) == pytest.approx((6 * 1.0 + 5 * 2 / 3) / 11)
    assert voc_ap(rec, prec, eleven_point=False) == pytest.approx(0.5 * 1.0 + 0.5 * 2 / 3)


def test_eleven_points_are_matlabs_colon_values():
    # 0:0.1:1 in MATLAB: first half k * 0.1 (so t(4) = 0.30000000000000004 > 3/10), second half
    # 1 - (10 - k) * 0.1 (so t(7) = 0.6 == 6/10); numpy's arange(0, 1.1, 0.1) differs
    # in the second half.
    one_at = lambda r: voc_ap(np.array([r]), np.array([1.0]), eleven_point=True)  # noqa: E731
    assert one_at(3 / 10) == pytest.approx(3 / 11)
    assert one_at(6 / 10) == pytest.approx(7 / 11)
    assert one_at(7 / 10) == pytest.approx(8 / 11)


def record(image_id, boxes, labels, difficult):
    return ImageRecord(
        file_name=f"/nowhere/{image_id}.jpg",
        image_id=image_id,
        height=200,
        width=200,
        boxes=np.array(boxes, np.float32).reshape(-1, 4),
        labels=np.array(labels, np.int64),
        difficult=np.array(difficult, bool),
    )


def det(image_id, cls, xyxy, score):
    x1, y1, x2, y2 = xyxy
    return {
        "image_id": image_id,
        "category_id": cls + 1,
        "bbox": [x1, y1, x2 - x1, y2 - y1],
        "score": score,
    }


def test_difficult_hit_duplicate_and_miss():
    # loaded frame: (0, 0, 100, 100) is devkit (1, 1, 100, 100), 100 x 100 pixels
    records = [
        record("i1", [[0, 0, 100, 100], [120, 120, 180, 180]], [0, 0], [False, True]),
        record("i2", [[0, 0, 100, 100], [10, 10, 50, 50]], [0, 2], [False, False]),
    ]
    ev = VOCEvaluator(records, ["a", "b", "c"], "hand")
    ev.load_results(
        [
            det("i1", 0, (0, 0, 100, 100), 0.9),  # TP
            det("i1", 0, (0, 0, 100, 100), 0.8),  # duplicate of the same box: FP
            det("i1", 0, (120, 120, 180, 180), 0.7),  # on the difficult box: neither
            det("i2", 0, (150, 150, 190, 190), 0.6),  # miss: FP
            det("i2", 0, (0, 0, 100, 72), 0.5),  # IoU 72 * 100 / 100 ** 2 = 0.72: TP up to t = 0.70
            det("i1", 1, (0, 0, 10, 10), 0.4),  # class b has no ground truth
        ]
    )
    m = ev.evaluate()
    # class a, score order: TP FP (ignored) FP TP; npos = 2 -> recall .5 .5 .5 .5 1,
    # precision 1 .5 .5 1/3 .5
    a = m["per_class"]["a"]
    assert a["AP50_voc07"] == pytest.approx((6 * 1.0 + 5 * 0.5) / 11)
    assert a["AP50"] == pytest.approx(0.5 * 1.0 + 0.5 * 0.5)
    # t = .50 .. .70 as above (0.75); t = .75 .. .95 the last one is an FP too:
    # recall stops at .5 (0.5)
    assert a["AP"] == pytest.approx((5 * 0.75 + 5 * 0.5) / 10)
    assert m["per_class"]["b"] == {"AP50_voc07": None, "AP50": None, "AP": None}
    assert m["per_class"]["c"] == {
        "AP50_voc07": 0.0,
        "AP50": 0.0,
        "AP": 0.0,
    }  # ground truth, no detection
    assert m["mAP50"] == pytest.approx((0.75 + 0.0) / 2)  # b is left out of the means
    assert m["mAP50_voc07"] == pytest.approx(((6 + 2.5) / 11) / 2) and m["mAP"] == pytest.approx(
        0.625 / 2
    )
    # IoU 0.75: class a as above (0.5), class c 0
    assert m["mAP75"] == pytest.approx((0.5 + 0.0) / 2)
    assert "mean" in ev.format_table(m)


def test_overlap_threshold_is_inclusive():
    ev = VOCEvaluator([record("i", [[0, 0, 100, 100]], [0], [False])], ["a"], "edge")
    ev.load_results([det("i", 0, (0, 0, 100, 50), 0.9)])  # exactly 5000 / 10000 = 0.5
    assert ev.evaluate()["per_class"]["a"]["AP50"] == 1.0


def devkit_sequential(dets, gts, thr):
    """VOCevaldet.m's loop, transcribed literally (for checking the vectorised matcher)."""
    order = sorted(range(len(dets)), key=lambda i: -dets[i][1])  # stable, like MATLAB's sort
    detected = {k: np.zeros(len(v[0]), bool) for k, v in gts.items()}
    tp, fp = np.zeros(len(dets)), np.zeros(len(dets))
    for d, i in enumerate(order):
        image_id, _, bb = dets[i]
        boxes, diff = gts.get(image_id, (np.zeros((0, 4)), np.zeros(0, bool)))
        ovmax, jmax = -np.inf, -1
        for j, bbgt in enumerate(boxes):
            iw = min(bb[2], bbgt[2]) - max(bb[0], bbgt[0]) + 1
            ih = min(bb[3], bbgt[3]) - max(bb[1], bbgt[1]) + 1
            if iw > 0 and ih > 0:
                ua = (
                    (bb[2] - bb[0] + 1) * (bb[3] - bb[1] + 1)
                    + (bbgt[2] - bbgt[0] + 1) * (bbgt[3] - bbgt[1] + 1)
                    - iw * ih
                )
                if iw * ih / ua > ovmax:
                    ovmax, jmax = iw * ih / ua, j
        if ovmax >= thr:
            if not diff[jmax]:
                if not detected[image_id][jmax]:
                    tp[d], detected[image_id][jmax] = 1, True
                else:
                    fp[d] = 1
        else:
            fp[d] = 1
    return tp, fp


def test_vectorised_matching_equals_the_sequential_devkit_loop():
    rng = np.random.default_rng(0)
    gts, dets = {}, []
    for n in range(30):
        k = int(rng.integers(0, 5))
        xy = rng.uniform(1, 150, (k, 2))
        boxes = np.round(np.concatenate([xy, xy + rng.uniform(5, 60, (k, 2))], 1))
        gts[f"im{n}"] = (boxes, rng.random(k) < 0.2)
        for b in boxes:  # jittered copies (hits, duplicates, near misses) plus random boxes
            for _ in range(int(rng.integers(0, 3))):
                dets.append(
                    (
                        f"im{n}",
                        float(rng.choice([0.5, rng.random()])),
                        np.round(b + rng.normal(0, 6, 4)),
                    )
                )
    dets += [
        (f"im{int(rng.integers(0, 35))}", float(rng.random()), np.array([5.0, 5, 40, 40]))
        for _ in range(20)
    ]
    thresholds = np.array([0.5, 0.7, 0.9])
    tp, fp, npos = match_class(dets, gts, thresholds)
    assert npos == sum(int((~d).sum()) for _, d in gts.values())
    for t, thr in enumerate(thresholds):
        ref_tp, ref_fp = devkit_sequential(dets, gts, thr)
        np.testing.assert_array_equal(tp[t], ref_tp)
        np.testing.assert_array_equal(fp[t], ref_fp)


def test_voc_mini_perfect_detections_through_eval_det(shared_data, tmp_path):
    root = shared_data("voc_mini/VOCdevkit")
    cfg = tmp_path / "voc.yaml"
    cfg.write_text(
        "data:\n  test:\n"
        f"    - {{format: voc, root: {root / 'VOC2007'}, split: test}}\n"
        f"    - {{format: voc, root: {root / 'VOC2012'}, split: test}}\n"
    )
    from resdet.data.catalog import load_source

    sources: list[DatasetSource] = [
        load_source({"format": "voc", "root": str(root / y), "split": "test"})
        for y in ("VOC2007", "VOC2012")
    ]
    dets = []
    for r in (r for s in sources for r in s.records):
        for (x1, y1, x2, y2), k in zip(r.boxes.tolist(), r.labels.tolist()):
            dets.append(
                {
                    "image_id": r.image_id,
                    "category_id": k + 1,
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "score": 0.9,
                }
            )
    cow = VOC_CLASSES.index("cow") + 1  # no cow in these images: a detection of it changes nothing
    dets.append({"image_id": "000001", "category_id": cow, "bbox": [1, 1, 50, 50], "score": 0.1})
    (tmp_path / "dets.json").write_text(json.dumps(dets))
    spec = importlib.util.spec_from_file_location("eval_det", ROOT / "tools" / "eval_det.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    metrics = module.main(
        [str(cfg), "--detections", str(tmp_path / "dets.json"), "--output-dir", str(tmp_path)]
    )
    present = {
        "aeroplane",
        "car",
        "chair",
        "dog",
        "person",
        "sofa",
        "train",
        "tvmonitor",
    }  # read off the XML
    assert {n for n, v in metrics["per_class"].items() if v["AP50"] is not None} == present
    for (
        name
    ) in present:  # every box found once (the difficult chairs' hits are ignored, not counted)
        assert metrics["per_class"][name] == {"AP50_voc07": 1.0, "AP50": 1.0, "AP": 1.0}
    assert metrics["mAP50"] == metrics["mAP50_voc07"] == metrics["mAP"] == 1.0
    assert metrics["per_class"]["cow"]["AP"] is None
    # the resdet.io.run_dir layout: per-class numbers flattened
    written = json.loads((tmp_path / "metrics.json").read_text())["metrics"]
    assert "AP/cow" not in written and written["AP/car"] == 1.0


def test_best_metric_the_evaluator_never_reports_is_refused_before_training():
    from resdet.config import ConfigError, config_from_dict
    from resdet.runs.detection import _check_best_metric

    record = ImageRecord(
        "a.jpg", "a", 10, 10, np.zeros((0, 4), np.float32), np.zeros(0, np.int64), np.zeros(0, bool)
    )
    names = VOCEvaluator([record], ["RBC", "WBC"], "cells").metric_names()
    assert names[:3] == ["mAP50_voc07", "mAP50", "mAP"] and "AP50/WBC" in names
    for ok in ("mAP50", "AP/RBC"):
        _check_best_metric(config_from_dict({"test": {"best_metric": ok}}), names)
    with pytest.raises(ConfigError, match=r"test.best_metric 'AP50' is not reported .*mAP50"):
        _check_best_metric(config_from_dict({"test": {"best_metric": "AP50"}}), names)

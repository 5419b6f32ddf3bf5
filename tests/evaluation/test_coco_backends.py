"""COCO scoring backends (`test.coco_backend`): faster-coco-eval's numbers equal pycocotools' to the
last bit (every metric, `==`) on real COCO files and on a generated larger set; `auto` picks
faster-coco-eval; `faster` without the package is one ConfigError; mask results are scored by
the mask's area; detections travel as compact arrays."""

from __future__ import annotations

import importlib.util
import json
import pickle
import sys
from pathlib import Path

import numpy as np
import pycocotools.mask as mask_util
import pytest
from pycocotools.coco import COCO
from test_coco_eval import KEYS, config, eval_det

from resdet.benchmarks.coco_eval_speed import synthetic_coco, synthetic_detections
from resdet.config import ConfigError, load_config
from resdet.data.build import build_detection_dataset
from resdet.evaluation import build_evaluator, coco_backends, evaluate_detections
from resdet.evaluation.detections import Detections

SEGM_KEYS = [f"segm/{k}" for k in KEYS]
needs_faster = pytest.mark.skipif(
    importlib.util.find_spec("faster_coco_eval") is None, reason="faster-coco-eval not installed"
)


def evaluator(tmp_path: Path, ann_file: Path, backend: str, masks: bool = False):
    cfg = load_config(config(tmp_path, ann_file), [f"test.coco_backend={backend}"])
    dataset = build_detection_dataset(cfg.data, "test", check_files=False)
    return build_evaluator(dataset, masks=masks, coco_backend=cfg.test.coco_backend)


def both_backends(tmp_path, ann_file, dets: list[dict] | Detections, masks=False) -> list[dict]:
    """The metrics of `dets` (a results-format list, or arrays as ranks gather them) on
    pycocotools, then on faster-coco-eval."""
    out = []
    for backend in ("pycocotools", "faster"):
        ev = evaluator(tmp_path, ann_file, backend, masks)
        assert ev.backend == backend
        if isinstance(dets, Detections):
            ev.merge([dets])
        else:
            ev.load_results(json.loads(json.dumps(dets)), "dets.json")
        out.append(ev.evaluate())
    return out


def assert_identical(reference: dict, faster: dict, keys: list[str]) -> None:
    assert [faster[k] for k in keys] == [reference[k] for k in keys]
    assert faster == reference  # every metric, per class too
    assert all(isinstance(reference[k], float) for k in keys)


def mask_detections(gt_file: Path, seed: int, noise_per_image: int = 5) -> list[dict]:
    """Deterministic mask detections on a COCO file: each object's mask shifted by a few pixels
    (its box jittered), some with another category, plus noise rectangles; scores rounded (ties)."""
    rng = np.random.default_rng(seed)
    coco = COCO(str(gt_file))
    out = []
    for image_id, image in sorted(coco.imgs.items()):
        h, w = image["height"], image["width"]
        for ann in coco.imgToAnns[image_id]:
            mask = coco.annToMask(ann)
            shifted = np.roll(mask, tuple(rng.integers(-4, 5, 2)), axis=(0, 1))
            rle = mask_util.encode(np.asfortranarray(shifted))
            x, y, bw, bh = ann["bbox"]
            out.append(
                {
                    "image_id": image_id,
                    "category_id": ann["category_id"]
                    if rng.random() < 0.9
                    else int(rng.choice(sorted(coco.cats))),
                    "bbox": [x + rng.normal(0, 2), y + rng.normal(0, 2), bw * 1.05, bh * 0.97],
                    "score": round(float(rng.uniform(0.2, 1)), 2),
                    "segmentation": {"size": [h, w], "counts": rle["counts"].decode()},
                }
            )
        for _ in range(noise_per_image):
            bw, bh = rng.uniform(8, min(w, h) / 2, 2)
            box = [float(rng.uniform(0, w - bw)), float(rng.uniform(0, h - bh)), bw, bh]
            rle = mask_util.frPyObjects(np.array([box]), h, w)[0]
            out.append(
                {
                    "image_id": image_id,
                    "category_id": int(rng.choice(sorted(coco.cats))),
                    "bbox": box,
                    "score": round(float(rng.uniform(0, 0.6)), 2),
                    "segmentation": {"size": [h, w], "counts": rle["counts"].decode()},
                }
            )
    return out


# ------------------------------------------------------------- the same numbers, to the last bit
@needs_faster
def test_cocoapi_fake_results_box_and_mask(shared_data, tmp_path):
    folder = shared_data("coco_val2014_100")
    gt = folder / "instances_val2014_100.json"
    boxes = json.loads((folder / "instances_val2014_fakebbox100_results.json").read_text())
    reference, faster = both_backends(tmp_path, gt, boxes)
    assert_identical(reference, faster, KEYS)
    assert round(reference["AP"], 3) == 0.505  # cocoapi's published number
    masks = json.loads((folder / "instances_val2014_fakesegm100_results.json").read_text())
    reference, faster = both_backends(tmp_path, gt, masks)
    assert_identical(reference, faster, KEYS + SEGM_KEYS)
    assert round(reference["segm/AP"], 3) == 0.320


@needs_faster
def test_detectron2_two_images(shared_data, tmp_path):
    folder = shared_data("coco_2img")
    dets = json.loads((folder / "detections.json").read_text())
    reference, faster = both_backends(tmp_path, folder / "gt.json", dets)
    assert_identical(reference, faster, KEYS + SEGM_KEYS)
    assert reference["APl"] == -1.0  # no large object


@needs_faster
def test_tiny_coco_generated_masks(shared_data, tmp_path):
    gt = shared_data("tiny_coco") / "annotations" / "instances_val2017.json"
    dets = mask_detections(gt, seed=0)
    reference, faster = both_backends(tmp_path, gt, dets, masks=True)
    assert_identical(reference, faster, KEYS + SEGM_KEYS)
    assert 0.2 < reference["segm/AP"] < 0.9 and 0.2 < reference["AP"] < 0.9  # not degenerate


@needs_faster
def test_generated_larger_set(tmp_path):
    """300 images x 100 detections as a model gives them (float32, gathered arrays), scores
    rounded to 0.01 (many ties, sorted alike by both), boxes and masks."""
    gt = synthetic_coco(300, seed=3)
    ann_file = tmp_path / "instances.json"
    ann_file.write_text(json.dumps(gt))
    dets = synthetic_detections(gt, 100, seed=3, score_decimals=2)
    assert len(dets) == 30000 and dets.boxes.dtype == np.float32
    reference, faster = both_backends(tmp_path, ann_file, dets)
    assert_identical(reference, faster, KEYS)
    assert all(reference[k] > 0 for k in KEYS)

    # masks: each detection's box as a rectangle mask (the ground truth's polygons are theirs)
    sizes = {im["id"]: (im["height"], im["width"]) for im in gt["images"]}
    keep = np.flatnonzero(np.arange(len(dets)) % 100 < 20)  # 20 an image: seconds, not minutes
    rles = [
        mask_util.frPyObjects(dets.boxes[i : i + 1].astype(float), *sizes[dets.image_id(i)])[0]
        for i in keep
    ]
    with_masks = Detections(
        dets.image_ids[keep],
        dets.category_ids[keep],
        dets.boxes[keep],
        dets.scores[keep],
        np.array([r["counts"].decode() for r in rles], dtype=object),
        np.array([r["size"] for r in rles], dtype=np.int32),
    )
    reference, faster = both_backends(tmp_path, ann_file, with_masks)
    assert_identical(reference, faster, KEYS + SEGM_KEYS)


# ------------------------------------------------------------- choosing the backend
@needs_faster
def test_auto_picks_faster_coco_eval(shared_data, tmp_path):
    assert coco_backends.resolve_backend("auto") == "faster"
    assert evaluator(tmp_path, shared_data("coco_2img") / "gt.json", "auto").backend == "faster"
    assert load_config(config(tmp_path, Path("x.json"))).test.coco_backend == "auto"  # default


def test_faster_without_the_package_is_one_config_error(shared_data, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "faster_coco_eval", None)  # its import fails
    with pytest.raises(ConfigError) as err:
        coco_backends.resolve_backend("faster")
    message = str(err.value)
    assert "test.coco_backend=faster" in message and "faster-coco-eval" in message
    assert "\n" not in message
    # through the tool's --detections path, before any scoring; auto falls back to pycocotools
    folder = shared_data("coco_2img")
    cfg = config(tmp_path, folder / "gt.json")
    dets = str(folder / "detections.json")
    with pytest.raises(ConfigError, match="needs the package faster-coco-eval"):
        eval_det().main([str(cfg), "--detections", dets, "test.coco_backend=faster"])
    assert coco_backends.resolve_backend("auto") == "pycocotools"
    metrics, ev = evaluate_detections(load_config(cfg), json.loads(Path(dets).read_text()))
    assert ev.backend == "pycocotools" and 0 < metrics["AP"] < 1


def test_an_unknown_backend_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"test.coco_backend: 'fast' is not one of"):
        load_config(config(tmp_path, Path("x.json")), ["test.coco_backend=fast"])


@needs_faster
def test_auto_falls_back_when_the_numbers_differ(monkeypatch):
    monkeypatch.setattr(coco_backends, "backends_agree", lambda gt, dets: False)
    coco_backends.faster_is_exact.cache_clear()
    try:
        with pytest.warns(RuntimeWarning, match="uses pycocotools"):
            assert coco_backends.resolve_backend("auto") == "pycocotools"
        assert coco_backends.resolve_backend("faster") == "faster"  # asked for: used
    finally:
        coco_backends.faster_is_exact.cache_clear()


@needs_faster
def test_the_built_in_check_needs_the_correction(monkeypatch):
    """The case behind `auto` holds curves whose only leading true positive is the first
    detection: faster-coco-eval's raw precision differs there, ours does not."""
    assert coco_backends.backends_agree(*coco_backends._check_case())
    monkeypatch.setattr(coco_backends, "ONE_TP_PRECISION", 1.0)  # faster-coco-eval's value kept
    assert not coco_backends.backends_agree(*coco_backends._check_case())


@needs_faster
def test_counts_that_do_not_add_up_fall_back_to_pycocotools(shared_data, tmp_path, monkeypatch):
    folder = shared_data("coco_2img")
    dets = json.loads((folder / "detections.json").read_text())
    reference, _ = both_backends(tmp_path, folder / "gt.json", dets)
    wrong = coco_backends._counted_ground_truth
    monkeypatch.setattr(coco_backends, "_counted_ground_truth", lambda ev: wrong(ev) + 1)
    ev = evaluator(tmp_path, folder / "gt.json", "faster")
    ev.load_results(dets)
    with pytest.warns(RuntimeWarning, match="scored with pycocotools instead"):
        assert ev.evaluate() == reference


# ------------------------------------------------------------- masks scored by their own area
@pytest.mark.parametrize("backend", ["pycocotools", pytest.param("faster", marks=needs_faster)])
def test_mask_results_are_ranged_by_the_mask_area_not_the_box(tmp_path, backend):
    """A small object found by the lower-scored detection; the higher-scored one is a false
    positive whose mask is small (400 px) but whose box is large (200 x 200). By the mask's area
    it counts in the small range (segm APs 0.5); by its box's it would be ignored there (1.0)."""
    h, w = 300, 300

    def square(x, y, side):
        m = np.zeros((1, h, w), dtype=bool)
        m[0, y : y + side, x : x + side] = True
        rle = mask_util.encode(np.asfortranarray(m[0].astype(np.uint8)))
        return {"size": [h, w], "counts": rle["counts"].decode()}

    ann = tmp_path / "gt.json"
    gt_mask = square(10, 10, 20)
    ann.write_text(
        json.dumps(
            {
                "images": [{"id": 1, "file_name": "a.jpg", "height": h, "width": w}],
                "categories": [{"id": 1, "name": "thing"}],
                "annotations": [
                    {
                        "id": 1,
                        "image_id": 1,
                        "category_id": 1,
                        "bbox": [10, 10, 20, 20],
                        "area": 400,
                        "iscrowd": 0,
                        "segmentation": gt_mask,
                    }
                ],
            }
        )
    )
    dets = [
        {"image_id": 1, "category_id": 1, "score": 0.5, "segmentation": gt_mask},
        {
            "image_id": 1,
            "category_id": 1,
            "score": 0.9,
            "bbox": [50, 50, 200, 200],
            "segmentation": square(200, 200, 20),
        },
    ]
    ev = evaluator(tmp_path, ann, backend)
    ev.load_results(dets)
    metrics = ev.evaluate()
    assert metrics["segm/APs"] == pytest.approx(0.5, abs=1e-12)
    assert metrics["APs"] == pytest.approx(1.0, abs=1e-12)  # the box is large: ignored there
    gt = coco_backends.load_ground_truth(backend, ann)
    results = coco_backends.results_coco(backend, gt, ev.results, "segm")
    assert [sorted(a) for a in results.dataset["annotations"]] == [
        ["area", "category_id", "id", "image_id", "iscrowd", "score", "segmentation"]
    ] * 2
    assert [a["area"] for a in results.dataset["annotations"]] == [400, 400]


# ------------------------------------------------------------- what ranks exchange
def test_ranks_exchange_compact_arrays(shared_data, tmp_path):
    folder = shared_data("coco_val2014_100")
    cfg = config(tmp_path, folder / "instances_val2014_100.json")
    records = json.loads((folder / "instances_val2014_fakesegm100_results.json").read_text())
    _, ev = evaluate_detections(load_config(cfg), records)
    arrays = ev.results
    assert arrays.boxes.shape == (len(records), 4) and arrays.image_ids.dtype == np.int64
    assert arrays.rle_counts is not None and isinstance(arrays.rle_counts[0], str)
    assert len(pickle.dumps(arrays)) < len(pickle.dumps(ev.detections))  # the RLE text dominates
    # a rank's share survives the trip (all_gather_object pickles it) and merges back in order
    halves = [pickle.loads(pickle.dumps(Detections.concat([arrays]))) for _ in range(2)]
    merged = evaluator(tmp_path, folder / "instances_val2014_100.json", "pycocotools")
    merged.merge(halves)
    assert merged.detections == ev.detections + ev.detections
    # a model's detections (float32): about half the bytes, and numbers, not N dicts, to unpickle
    model = synthetic_detections(synthetic_coco(20, seed=1), 100, seed=1)
    assert len(pickle.dumps(model)) < 0.6 * len(pickle.dumps(model.records()))
    assert all(a.dtype != object for a in (model.image_ids, model.boxes, model.scores))

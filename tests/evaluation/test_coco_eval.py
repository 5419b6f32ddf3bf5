"""COCO evaluation: cocoapi's published fake-results numbers through
tools/eval_det.py, and hand cases."""

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from torchvision.ops import box_iou

from resdet.config import load_config
from resdet.data import DatasetError
from resdet.data.build import build_detection_dataset
from resdet.evaluation import build_evaluator, evaluate_detections
from resdet.evaluation.rle import binary_to_rle
from resdet.io.run_dir import flat_metrics

ROOT = Path(__file__).resolve().parents[2]
KEYS = ["AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"]
#: cocoapi's published summary for instances_val2014_fakebbox100_results.json (pycocoEvalDemo)
PUBLISHED = [0.505, 0.697, 0.573, 0.586, 0.519, 0.501, 0.387, 0.594, 0.595, 0.640, 0.566, 0.564]


def eval_det():
    spec = importlib.util.spec_from_file_location("eval_det", ROOT / "tools" / "eval_det.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def config(tmp_path: Path, ann_file: Path) -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text(
        f"output_dir: {tmp_path / 'out'}\ndata:\n  test:\n"
        f"    - {{format: coco, ann_file: {ann_file}, image_dir: {tmp_path / 'no_images'}}}\n"
    )
    return path


def test_fake_results_reproduce_the_published_stats(shared_data, tmp_path, capsys):
    folder = shared_data("coco_val2014_100")
    cfg = config(tmp_path, folder / "instances_val2014_100.json")
    metrics = eval_det().main(
        [
            str(cfg),
            "--detections",
            str(folder / "instances_val2014_fakebbox100_results.json"),
            "--output-dir",
            str(tmp_path / "ev"),
        ]
    )
    assert [round(metrics[k], 3) for k in KEYS] == PUBLISHED
    assert len(metrics["per_class"]) == 80
    # no ground truth of that class in these images
    assert metrics["per_class"]["fire hydrant"]["AP"] is None
    # the file has the one eval/metrics.json layout (resdet.io.run_dir): per-class numbers flattened
    written = json.loads((tmp_path / "ev/metrics.json").read_text())
    assert written["detections"] == str(folder / "instances_val2014_fakebbox100_results.json")
    assert written["metrics"] == json.loads(json.dumps(flat_metrics(metrics)))
    assert "AP/fire hydrant" not in written["metrics"] and 0 <= written["metrics"]["AP/person"] <= 1
    table = capsys.readouterr().out
    assert "AR100" in table and " 50.5" in table and "person" in table


def iou(a, b) -> float:
    xyxy = lambda r: torch.tensor([[r[0], r[1], r[0] + r[2], r[1] + r[3]]], dtype=torch.float64)  # noqa: E731
    return box_iou(xyxy(a), xyxy(b)).item()


@pytest.mark.parametrize("extra_fp_on_empty_image", [False, True])
def test_two_images_one_without_ground_truth(shared_data, tmp_path, extra_fp_on_empty_image):
    folder = shared_data("coco_2img")
    gt = json.loads((folder / "gt.json").read_text())
    dets = json.loads((folder / "detections.json").read_text())
    assert {i["id"] for i in gt["images"]} - {a["image_id"] for a in gt["annotations"]} == {285}
    if extra_fp_on_empty_image:
        # the file's records carry masks (detectron2's literals), so this one does too: its box
        image = next(i for i in gt["images"] if i["id"] == 285)
        mask = torch.zeros(1, image["height"], image["width"], dtype=torch.bool)
        mask[:, 10:60, 10:60] = True
        dets.append(
            {
                "image_id": 285,
                "category_id": 1,
                "bbox": [10, 10, 50, 50],
                "score": 0.999,
                "segmentation": binary_to_rle(mask)[0],
            }
        )
    det_file = tmp_path / "dets.json"
    det_file.write_text(json.dumps(dets))
    metrics = eval_det().main(
        [
            str(config(tmp_path, folder / "gt.json")),
            "--detections",
            str(det_file),
            f"output_dir={tmp_path / 'over'}",
        ]
    )
    assert (
        tmp_path / "over/eval/metrics.json"
    ).is_file()  # default output: <output_dir>/eval, overridable

    # Hand computation. GT1 (medium, area 2913) is hit by the top detection, GT2 (small, area
    # 435) by the second; the third is a tiny false positive. At IoU threshold t a GT is
    # found iff its IoU >= t.
    g1, g2 = (next(a["bbox"] for a in gt["annotations"] if a["id"] == i) for i in (230831, 233201))
    i1, i2 = iou(dets[0]["bbox"], g1), iou(dets[1]["bbox"], g2)
    ts = [0.5 + 0.05 * k for k in range(10)]
    hit1 = [i1 >= t - 1e-12 for t in ts]
    hit2 = [i2 >= t - 1e-12 for t in ts]
    assert sum(hit1) == 8 and sum(hit2) == 7  # the case exercises partial hits

    def ap_all(h1: bool, h2: bool) -> float:
        # 101-point interpolated precision; an extra top-scoring FP halves/thirds the precision
        fp0 = 1 if extra_fp_on_empty_image else 0
        if h1 and h2:
            return 2 / (2 + fp0)
        if h1:
            return 51 / 101 * 1 / (1 + fp0)
        if h2:
            return 51 / 101 * 1 / (2 + fp0)
        return 0.0

    expected = {
        "AP": sum(ap_all(a, b) for a, b in zip(hit1, hit2)) / 10,
        "APs": sum(hit2)
        / 10,  # only GT2 is small; the big top detection lies outside the range: ignored
        "APm": sum(hit1) / 10,
        "APl": -1.0,
        "ARl": -1.0,  # no large object: COCOeval reports -1
        "AR1": sum(hit1) / 20,  # one detection per image: only the top one on image 139
        "AR10": (sum(hit1) + sum(hit2)) / 20,
        "AR100": (sum(hit1) + sum(hit2)) / 20,
        "ARs": sum(hit2) / 10,
        "ARm": sum(hit1) / 10,
    }
    if (
        extra_fp_on_empty_image
    ):  # the FP box (area 2500) is medium: it also precedes GT1's hit there
        expected["APm"] = sum(hit1) / 10 / 2
    for key, value in expected.items():
        assert metrics[key] == pytest.approx(value, abs=1e-9), key


def test_process_merge_and_written_detections_round_trip(shared_data, tmp_path):
    folder = shared_data("coco_val2014_100")
    cfg = load_config(config(tmp_path, folder / "instances_val2014_100.json"))
    results = json.loads((folder / "instances_val2014_fakebbox100_results.json").read_text())
    reference, _ = evaluate_detections(cfg, results)

    dataset = build_detection_dataset(cfg.data, "test", check_files=False)
    label = {cid: k for k, cid in enumerate(dataset.sources[0].category_ids)}
    by_image: dict[int, list[dict]] = {}
    for r in results:
        by_image.setdefault(r["image_id"], []).append(r)
    partials = []
    for part in (list(by_image)[::2], list(by_image)[1::2]):  # two "ranks"
        ev = build_evaluator(dataset)
        for image_id in part:
            rs = by_image[image_id]
            xywh = torch.tensor([r["bbox"] for r in rs], dtype=torch.float64)
            ev.process(
                [{"image_id": image_id}],
                [
                    {
                        "boxes": torch.cat([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], 1).float(),
                        "scores": torch.tensor([r["score"] for r in rs]),
                        "labels": torch.tensor([label[r["category_id"]] for r in rs]),
                    }
                ],
            )
        partials.append(ev.results)  # what a rank sends
    ev = build_evaluator(dataset)
    ev.merge(partials)
    assert len(ev.detections) == len(results)
    merged = ev.evaluate()
    for k in KEYS:
        assert merged[k] == pytest.approx(reference[k], abs=2e-3), k  # float32 boxes in between
    ev.write_detections(tmp_path / "dets.json")
    again, _ = evaluate_detections(cfg, json.loads((tmp_path / "dets.json").read_text()))
    assert again == merged


@pytest.mark.parametrize(
    "record,needle",
    [
        ({"image_id": 999, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 0.5}, "'image_id' 999"),
        (
            {"image_id": 139, "category_id": 2, "bbox": [0, 0, 1, 1], "score": 0.5},
            "'category_id' 2",
        ),
        ({"image_id": 139, "category_id": 1, "bbox": [0, 0, 1], "score": 0.5}, "'bbox'"),
        ({"image_id": 139, "category_id": 1, "bbox": [0, 0, 1, 1]}, "missing field 'score'"),
    ],
)
def test_bad_detection_records(shared_data, tmp_path, record, needle):
    folder = shared_data("coco_2img")
    cfg = load_config(config(tmp_path, folder / "gt.json"))
    with pytest.raises(DatasetError, match="record 1") as err:
        evaluate_detections(
            cfg,
            [{"image_id": 139, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 0.1}, record],
            source="x.json",
        )
    assert needle in str(err.value) and "x.json" in str(err.value)


def test_no_detections_scores_zero_not_an_error(shared_data, tmp_path):
    cfg = load_config(config(tmp_path, shared_data("coco_2img") / "gt.json"))
    metrics, _ = evaluate_detections(cfg, [])
    assert metrics["AP"] == metrics["AR100"] == 0.0 and metrics["APl"] == -1.0
    assert metrics["per_class"] == {
        "person": {"AP": 0.0, "AP50": 0.0},
        "bed": {"AP": None, "AP50": None},
    }

"""COCO mask (segm) evaluation: cocoapi's published fake-segmentation numbers through
tools/eval_det.py and through the evaluator's `process`, and hand cases."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from test_coco_eval import KEYS, config, eval_det

from resdet.config import load_config
from resdet.data import DatasetError
from resdet.data.build import build_detection_dataset
from resdet.evaluation import build_evaluator, evaluate_detections
from resdet.evaluation.rle import binary_to_rle, rle_to_bbox, rle_to_mask
from resdet.io.run_dir import flat_metrics

#: cocoapi's published summary for instances_val2014_fakesegm100_results.json (pycocoEvalDemo)
PUBLISHED = [0.320, 0.562, 0.299, 0.387, 0.310, 0.327, 0.268, 0.415, 0.417, 0.469, 0.377, 0.381]
SEGM_KEYS = [f"segm/{k}" for k in KEYS]


def fake_segm(shared_data) -> tuple[Path, Path]:
    """(ground truth, fake segmentation results): 100 val2014 images, results on 99 of them."""
    folder = shared_data("coco_val2014_100")
    return (
        folder / "instances_val2014_100.json",
        folder / "instances_val2014_fakesegm100_results.json",
    )


def test_fake_segm_results_reproduce_the_published_stats(shared_data, tmp_path, capsys):
    gt, results = fake_segm(shared_data)
    metrics = eval_det().main(
        [str(config(tmp_path, gt)), "--detections", str(results), "--output-dir", str(tmp_path)]
    )
    assert [round(metrics[k], 3) for k in SEGM_KEYS] == PUBLISHED
    assert all(0 <= metrics[k] <= 1 for k in KEYS)  # the boxes (the masks' own) are scored too
    assert metrics["per_class"]["person"].keys() == {"AP", "AP50", "segm/AP", "segm/AP50"}
    assert metrics["per_class"]["fire hydrant"]["segm/AP"] is None  # no ground truth
    written = json.loads((tmp_path / "metrics.json").read_text())["metrics"]
    assert written == json.loads(json.dumps(flat_metrics(metrics)))
    assert [round(written[k], 3) for k in SEGM_KEYS] == PUBLISHED
    assert 0 <= written["segm/AP/person"] <= 1 and "segm/AP/fire hydrant" not in written
    table = capsys.readouterr().out
    assert "COCO mask metrics" in table and " 32.0" in table and "segm/AP50" in table


# pycocotools 2.0.11's decode under numpy 2 warns on every call
@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
def test_process_of_model_masks_reproduces_the_file(shared_data, tmp_path):
    """The fake results as a mask model's outputs (float (K, 1, H, W) masks): `process` encodes
    them back to the same RLE, so the stats are the published ones and the written file holds it."""
    gt, results_file = fake_segm(shared_data)
    cfg = load_config(config(tmp_path, gt))
    dataset = build_detection_dataset(cfg.data, "test", check_files=False)
    label = {cid: k for k, cid in enumerate(dataset.sources[0].category_ids)}
    results = json.loads(results_file.read_text())
    by_image: dict[int, list[dict]] = {}
    for r in results:
        by_image.setdefault(r["image_id"], []).append(r)
    ev = build_evaluator(dataset, masks=True)
    for image_id, rs in by_image.items():
        xywh = torch.tensor([rle_to_bbox(r["segmentation"]) for r in rs], dtype=torch.float64)
        masks = np.stack([rle_to_mask(r["segmentation"]) for r in rs])  # (K, H, W)
        ev.process(
            [{"image_id": image_id}],
            [
                {
                    "boxes": torch.cat([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], 1).float(),
                    "scores": torch.tensor([r["score"] for r in rs]),
                    "labels": torch.tensor([label[r["category_id"]] for r in rs]),
                    "masks": torch.from_numpy(masks)[:, None].float() * 0.8 + 0.1,
                }
            ],
        )
    metrics = ev.evaluate()
    assert [round(metrics[k], 3) for k in SEGM_KEYS] == PUBLISHED
    ev.write_detections(tmp_path / "dets.json")
    written = json.loads((tmp_path / "dets.json").read_text())
    order = [r for rs in by_image.values() for r in rs]
    assert [w["segmentation"] for w in written] == [r["segmentation"] for r in order]


# ----------------------------------------------------------------------------- hand cases
H, W = 20, 30
GT_BOX = (5, 4, 10, 10)  # x, y, w, h: the gt mask is this rectangle, 100 pixels


def rectangle(x: int, y: int, w: int, h: int) -> torch.Tensor:
    """bool (H, W), on inside the rectangle."""
    m = torch.zeros(H, W, dtype=torch.bool)
    m[y : y + h, x : x + w] = True
    return m


@pytest.fixture
def one_image(tmp_path):
    """An evaluator (masks=True) for a hand-made COCO file: one 20x30 image, one 10x10 object of
    category id 7 ("blob") given as RLE."""
    ann = tmp_path / "gt.json"
    rle = binary_to_rle(rectangle(*GT_BOX)[None])[0]
    ann.write_text(
        json.dumps(
            {
                "images": [{"id": 1, "file_name": "a.jpg", "height": H, "width": W}],
                "categories": [{"id": 7, "name": "blob"}],
                "annotations": [
                    {
                        "id": 1,
                        "image_id": 1,
                        "category_id": 7,
                        "bbox": list(GT_BOX),
                        "area": 100,
                        "iscrowd": 0,
                        "segmentation": rle,
                    }
                ],
            }
        )
    )
    cfg = load_config(config(tmp_path, ann))
    return build_evaluator(build_detection_dataset(cfg.data, "test", check_files=False), masks=True)


def model_output(mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """One detection, boxed exactly on the gt object, with `mask` as probabilities (K=1)."""
    x, y, w, h = GT_BOX
    return {
        "boxes": torch.tensor([[x, y, x + w, y + h]], dtype=torch.float32),
        "scores": torch.tensor([0.9]),
        "labels": torch.tensor([0]),
        "masks": torch.where(mask, 0.9, 0.1)[None, None],  # (1, 1, H, W)
    }


def test_mask_equal_to_the_ground_truth_scores_one(one_image):
    one_image.process([{"image_id": 1}], [model_output(rectangle(*GT_BOX))])
    metrics = one_image.evaluate()
    one = pytest.approx(1.0, abs=1e-12)  # COCOeval's means of 1.0s are off in the last bit
    assert [metrics[k] for k in ("segm/AP", "segm/AP50", "segm/APs", "segm/AR100")] == [one] * 4
    assert metrics["segm/APm"] == -1.0  # no medium object
    assert metrics["per_class"]["blob"] == dict.fromkeys(
        ("AP", "AP50", "segm/AP", "segm/AP50"), one
    )
    assert one_image.detections[0]["segmentation"]["size"] == [H, W]


def test_shifted_mask_below_half_iou_scores_zero_while_its_box_scores_one(one_image):
    shifted = rectangle(GT_BOX[0] + 4, GT_BOX[1], GT_BOX[2], GT_BOX[3])
    gt = rectangle(*GT_BOX)
    # by hand: 6 of the 10 columns overlap -> 60 / (100 + 100 - 60) = 3/7
    assert (shifted & gt).sum() / (shifted | gt).sum() == pytest.approx(3 / 7)
    one_image.process([{"image_id": 1}], [model_output(shifted)])
    metrics = one_image.evaluate()
    assert metrics["segm/AP"] == metrics["segm/AP50"] == 0.0
    assert metrics["AP"] == pytest.approx(1.0, abs=1e-12)  # boxes and masks are scored apart


def test_mask_evaluation_names_its_metrics_and_reports_them_without_detections(one_image):
    names = one_image.metric_names()
    assert {"AP", "AP/blob", "segm/AP", "segm/ARl", "segm/AP/blob", "segm/AP50/blob"} <= set(names)
    metrics = one_image.evaluate()
    assert metrics["segm/AP"] == 0.0 and metrics["segm/APl"] == -1.0


def test_a_mask_of_another_size_than_its_image_is_refused(one_image):
    small = {
        "size": [H - 1, W],
        "counts": binary_to_rle(rectangle(*GT_BOX)[None, :-1])[0]["counts"],
    }
    one_image.load_results(
        [{"image_id": 1, "category_id": 7, "score": 0.5, "segmentation": small}], "m.json"
    )
    with pytest.raises(DatasetError, match=r"detection 0 \(image_id 1\): mask size \[19, 30\]"):
        one_image.evaluate()


# ----------------------------------------------------------------------------- bad files
@pytest.mark.parametrize("first_has_mask", [True, False])
def test_a_file_mixing_records_with_and_without_masks_is_refused(
    shared_data, tmp_path, first_has_mask
):
    gt, results_file = fake_segm(shared_data)
    records = json.loads(results_file.read_text())[:10]
    # records 5..9 lose their masks, or 0..4 do: record 5 is the first unlike record 0 either way
    for r in records[5:] if first_has_mask else records[:5]:
        r["bbox"] = rle_to_bbox(r.pop("segmentation"))
    mixed = tmp_path / "mixed.json"
    mixed.write_text(json.dumps(records))
    with pytest.raises(DatasetError) as err:
        eval_det().main([str(config(tmp_path, gt)), "--detections", str(mixed)])
    message = str(err.value)
    assert message.startswith(f"{mixed}: record 5: ")
    assert (
        "has no field 'segmentation'" if first_has_mask else "has field 'segmentation'"
    ) in message


@pytest.mark.parametrize(
    "segmentation", [[[1.0, 1.0, 5.0, 1.0, 5.0, 5.0]], {"size": [20, 30], "counts": [1, 2]}]
)
def test_a_mask_that_is_not_compressed_rle_is_refused(one_image, segmentation):
    record = {"image_id": 1, "category_id": 7, "score": 0.5, "segmentation": segmentation}
    with pytest.raises(
        DatasetError, match="s.json: record 0: field 'segmentation' must be a COCO RLE"
    ):
        one_image.load_results([record], "s.json")


def test_records_with_masks_and_no_bbox_get_the_masks_box(shared_data, tmp_path):
    gt, results_file = fake_segm(shared_data)
    cfg = load_config(config(tmp_path, gt))
    records = json.loads(results_file.read_text())
    _, ev = evaluate_detections(cfg, records[:3], "f.json")
    assert [d["bbox"] for d in ev.detections] == [
        rle_to_bbox(r["segmentation"]) for r in records[:3]
    ]

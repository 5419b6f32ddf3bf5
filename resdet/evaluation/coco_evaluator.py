"""COCO box metrics through pycocotools' `COCOeval`, against the dataset's own annotation file.

Reported (`metrics.json`): the 12 standard stats `AP, AP50, AP75, APs, APm, APl, AR1, AR10, AR100,
ARs, ARm, ARl` (fractions; -1 where COCOeval has nothing to average, e.g. an area range without
ground truth) and `per_class: {name: {AP, AP50}}` (None for a class without ground truth). The
ground truth is the json file as released (crowd regions and the `area` field included), so numbers
equal the official evaluation; no image file is opened.
"""

from __future__ import annotations

import contextlib
import io
from typing import Any

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from resdet.evaluation.base import DetectionEvaluator, fmt

STAT_KEYS = ["AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"]


def _results_coco(gt: COCO, detections: list[dict[str, Any]]) -> COCO:
    """A COCO object holding `detections`, built as `COCO.loadRes` builds box
    results (area = w * h)."""
    dt = COCO()
    dt.dataset = {
        "images": list(gt.dataset["images"]),
        "categories": list(gt.dataset["categories"]),
        "annotations": [
            {**d, "id": i + 1, "area": d["bbox"][2] * d["bbox"][3], "iscrowd": 0}
            for i, d in enumerate(detections)
        ],
    }
    with contextlib.redirect_stdout(io.StringIO()):
        dt.createIndex()
    return dt


class COCOEvaluator(DetectionEvaluator):
    """Scores detections against `ann_file` on the images `image_ids` (all the dataset's images)."""

    SUMMARY_KEYS = tuple(STAT_KEYS)
    PER_CLASS_KEYS = ("AP", "AP50")

    def __init__(
        self,
        ann_file: str,
        class_names: list[str],
        category_ids: list[int],
        image_ids: list[int],
        name: str,
    ) -> None:
        super().__init__(class_names, category_ids, image_ids, name)
        self.ann_file = ann_file

    def evaluate(self) -> dict[str, Any]:
        with contextlib.redirect_stdout(io.StringIO()):
            gt = COCO(self.ann_file)
            dt = _results_coco(gt, self.detections)
            ev = COCOeval(gt, dt, "bbox")
            ev.params.imgIds = sorted(self.image_ids)
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        metrics: dict[str, Any] = {k: float(v) for k, v in zip(STAT_KEYS, ev.stats)}
        # precision: (IoU thresholds, recall points, classes, area ranges, max dets); -1 = undefined
        precision = ev.eval["precision"]
        per_class = {}
        for k, cid in enumerate(ev.params.catIds):
            entry = {}
            for key, p in (("AP", precision[:, :, k, 0, -1]), ("AP50", precision[0, :, k, 0, -1])):
                p = p[p > -1]
                entry[key] = float(np.mean(p)) if p.size else None
            per_class[self.class_names[self.label_of[cid]]] = entry
        metrics["per_class"] = per_class
        return metrics

    def format_table(self, metrics: dict[str, Any]) -> str:
        lines = [
            f"COCO box metrics on {self.name} "
            f"({len(self.image_ids)} images, {len(self.detections)} detections)",
            "  ".join(f"{k:>5}" for k in STAT_KEYS),
            "  ".join(f"{fmt(metrics[k]):>5}" for k in STAT_KEYS),
            "",
            f"{'class':<20} {'AP':>5} {'AP50':>5}",
        ]
        for name, v in metrics["per_class"].items():
            lines.append(f"{name:<20} {fmt(v['AP']):>5} {fmt(v['AP50']):>5}")
        return "\n".join(lines)

"""COCO box and mask metrics through pycocotools' `COCOeval`, against the dataset's own annotation
file.

Reported (`metrics.json`): the 12 standard box stats `AP, AP50, AP75, APs, APm, APl, AR1, AR10,
AR100, ARs, ARm, ARl` (fractions; -1 where COCOeval has nothing to average, e.g. an area range
without ground truth) and `per_class: {name: {AP, AP50}}` (None for a class without ground truth).
When the detections carry masks (`segmentation`, COCO RLE), the same 12 stats of `iouType="segm"`
follow as `segm/AP, segm/AP50, ..., segm/ARl`, and each class entry gains `segm/AP, segm/AP50`
(flattened: `segm/AP/<class>`). The ground truth is the json file as released (crowd regions, the
`area` field, polygons and RLE included), so numbers equal the official evaluation; no image file is
opened.
"""

from __future__ import annotations

import contextlib
import io
from typing import Any

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from resdet.data.errors import DatasetError
from resdet.evaluation.base import DetectionEvaluator, fmt
from resdet.evaluation.rle import rle_area

STAT_KEYS = ["AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"]
#: the prefix of the mask metrics' names (`segm/AP`, `segm/AP/<class>`)
SEGM = "segm/"


def _results_coco(gt: COCO, detections: list[dict[str, Any]], iou_type: str) -> COCO:
    """A COCO object holding `detections`, built as `COCO.loadRes` builds box results (area =
    w * h) or, for `iou_type="segm"`, mask results (area = the mask's pixels)."""
    if iou_type == "segm":
        areas = rle_area([d["segmentation"] for d in detections])
    else:
        areas = [d["bbox"][2] * d["bbox"][3] for d in detections]
    dt = COCO()
    dt.dataset = {
        "images": list(gt.dataset["images"]),
        "categories": list(gt.dataset["categories"]),
        "annotations": [
            {**d, "id": i + 1, "area": a, "iscrowd": 0}
            for i, (d, a) in enumerate(zip(detections, areas, strict=True))
        ],
    }
    with contextlib.redirect_stdout(io.StringIO()):
        dt.createIndex()
    return dt


class COCOEvaluator(DetectionEvaluator):
    """Scores detections against `ann_file` on the images `image_ids` (all the dataset's images).

    `masks=True` (a mask model's evaluation): the mask metrics are always computed and
    `metric_names` lists them. Without it they are computed when the detections carry masks (a
    results file with `segmentation`).
    """

    SUMMARY_KEYS = tuple(STAT_KEYS)
    PER_CLASS_KEYS = ("AP", "AP50")
    HEADLINE = "AP50"

    def __init__(
        self,
        ann_file: str,
        class_names: list[str],
        category_ids: list[int],
        image_ids: list[int],
        name: str,
        *,
        masks: bool = False,
    ) -> None:
        super().__init__(class_names, category_ids, image_ids, name)
        self.ann_file, self.masks = ann_file, masks

    def metric_names(self) -> list[str]:
        names = super().metric_names()
        if self.masks:
            names += [SEGM + n for n in names]
        return names

    def _with_masks(self) -> bool:
        """Whether `evaluate` scores masks: asked for, or the detections carry them (then all
        must)."""
        with_masks = self.masks or any("segmentation" in d for d in self.detections)
        if with_masks:
            missing = next(
                (i for i, d in enumerate(self.detections) if "segmentation" not in d), None
            )
            if missing is not None:
                raise DatasetError(
                    f"{self.name}: detection {missing} (image_id "
                    f"{self.detections[missing]['image_id']!r}) has no mask ('segmentation') "
                    "while masks are evaluated"
                )
        return with_masks

    def _check_mask_sizes(self, gt: COCO) -> None:
        """A mask of another size than its image would score IoU 0 in pycocotools, silently:
        refuse it."""
        for i, d in enumerate(self.detections):
            image = gt.imgs[d["image_id"]]
            if d["segmentation"]["size"] != [image["height"], image["width"]]:
                raise DatasetError(
                    f"{self.name}: detection {i} (image_id {d['image_id']!r}): mask size "
                    f"{d['segmentation']['size']} is not the image's [height, width] "
                    f"{[image['height'], image['width']]}"
                )

    def _coco_eval(self, gt: COCO, iou_type: str) -> tuple[dict[str, float], dict[str, dict]]:
        """COCOeval of `iou_type` ("bbox" or "segm") -> (the 12 stats by `STAT_KEYS` name,
        `{class name: {AP, AP50}}`)."""
        with contextlib.redirect_stdout(io.StringIO()):
            ev = COCOeval(gt, _results_coco(gt, self.detections, iou_type), iou_type)
            ev.params.imgIds = sorted(self.image_ids)
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        stats = {k: float(v) for k, v in zip(STAT_KEYS, ev.stats)}
        # precision: (IoU thresholds, recall points, classes, area ranges, max dets); -1 = undefined
        precision = ev.eval["precision"]
        per_class = {}
        for k, cid in enumerate(ev.params.catIds):
            entry = {}
            for key, p in (("AP", precision[:, :, k, 0, -1]), ("AP50", precision[0, :, k, 0, -1])):
                p = p[p > -1]
                entry[key] = float(np.mean(p)) if p.size else None
            per_class[self.class_names[self.label_of[cid]]] = entry
        return stats, per_class

    def evaluate(self) -> dict[str, Any]:
        with_masks = self._with_masks()
        with contextlib.redirect_stdout(io.StringIO()):
            gt = COCO(self.ann_file)
        metrics: dict[str, Any]
        metrics, per_class = self._coco_eval(gt, "bbox")
        if with_masks:
            self._check_mask_sizes(gt)
            stats, per_class_segm = self._coco_eval(gt, "segm")
            metrics.update({SEGM + k: v for k, v in stats.items()})
            for name, entry in per_class_segm.items():
                per_class[name].update({SEGM + k: v for k, v in entry.items()})
        metrics["per_class"] = per_class
        return metrics

    def format_table(self, metrics: dict[str, Any]) -> str:
        with_masks = SEGM + "AP" in metrics
        lines = [
            f"COCO box metrics on {self.name} "
            f"({len(self.image_ids)} images, {len(self.detections)} detections)",
            "  ".join(f"{k:>5}" for k in STAT_KEYS),
            "  ".join(f"{fmt(metrics[k]):>5}" for k in STAT_KEYS),
        ]
        if with_masks:
            lines += [
                "",
                "COCO mask metrics (segm)",
                "  ".join(f"{k:>5}" for k in STAT_KEYS),
                "  ".join(f"{fmt(metrics[SEGM + k]):>5}" for k in STAT_KEYS),
            ]
        keys = [*self.PER_CLASS_KEYS, *(SEGM + k for k in self.PER_CLASS_KEYS if with_masks)]
        widths = [max(5, len(k)) for k in keys]
        lines += ["", f"{'class':<20} " + " ".join(f"{k:>{w}}" for k, w in zip(keys, widths))]
        for name, v in metrics["per_class"].items():
            cells = (f"{fmt(v[k]):>{w}}" for k, w in zip(keys, widths))
            lines.append(f"{name:<20} " + " ".join(cells))
        return "\n".join(lines)

"""PASCAL VOC box metrics, computed as the official MATLAB devkit (`VOCevaldet.m`, `VOCap`) does.

Rules, per class:
- Boxes are compared in devkit pixel coordinates (1-based, inclusive): a loaded box `(x1, y1, x2,
  y2)` is `(x1 + 1, y1 + 1, x2, y2)` there (undoing the reader's shift), and widths count `x2 - x1 +
  1` pixels, in the intersection too.
- Detections of all images are taken in decreasing score order (stable for ties). Each is compared
  with every ground-truth box of its image, difficult ones included; let `j` be the first box of
  maximal overlap. If overlap >= threshold: a difficult `j` makes the detection neither true nor
  false positive; otherwise it is a true positive the first time `j` is claimed and a false positive
  (duplicate) after. Below the threshold it is a false positive. (`>=` is the devkit's test; the
  py-faster-rcnn port uses `>`.)
- recall = TP / #non-difficult ground truth, precision = TP / (TP + FP), cumulated.
- `AP50_voc07`: 11-point average of max precision at recall >= t, t = 0:0.1:1 (the devkit's VOC2007
  rule, with MATLAB's colon values for t); `AP50`: area under the monotone precision envelope
  (VOC2010+); `AP`: the all-point AP averaged over IoU thresholds 0.50:0.05:0.95; `AP75`: the
  all-point AP at IoU 0.75 (the third number of detectron2's and MoCo's VOC tables).
A class without non-difficult ground truth has no AP (None) and is left out of the means.
`metrics.json`: `mAP50_voc07`, `mAP50`, `mAP`, `mAP75` and `per_class: {name: {AP50_voc07, AP50,
AP}}`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from resdet.data.errors import DatasetError
from resdet.data.records import ImageRecord
from resdet.evaluation.base import DetectionEvaluator, fmt

#: t = 0:0.1:1 as MATLAB computes it (first half a + k*d, second half b - (n-k)*d)
VOC07_RECALL_POINTS = np.array(
    [k * 0.1 for k in range(6)] + [1.0 - (10 - k) * 0.1 for k in range(6, 11)]
)
COCO_IOUS = np.linspace(0.5, 0.95, 10)


def devkit_iou(det: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """(D, 4) x (G, 4) devkit-coordinate boxes -> (D, G) overlaps with the +1 pixel rule."""
    iw = (
        np.minimum(det[:, None, 2], gt[None, :, 2])
        - np.maximum(det[:, None, 0], gt[None, :, 0])
        + 1
    )
    ih = (
        np.minimum(det[:, None, 3], gt[None, :, 3])
        - np.maximum(det[:, None, 1], gt[None, :, 1])
        + 1
    )
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    area_d = (det[:, 2] - det[:, 0] + 1) * (det[:, 3] - det[:, 1] + 1)
    area_g = (gt[:, 2] - gt[:, 0] + 1) * (gt[:, 3] - gt[:, 1] + 1)
    return inter / (area_d[:, None] + area_g[None, :] - inter)


def voc_ap(recall: np.ndarray, precision: np.ndarray, eleven_point: bool) -> float:
    """AP from cumulative recall/precision (in score order), by the VOC2007 11-point or
    the all-point rule."""
    if eleven_point:
        return float(
            sum(
                (precision[recall >= t].max() if (recall >= t).any() else 0.0)
                for t in VOC07_RECALL_POINTS
            )
            / 11.0
        )
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    changes = np.nonzero(mrec[1:] != mrec[:-1])[0] + 1
    return float(np.sum((mrec[changes] - mrec[changes - 1]) * mpre[changes]))


def match_class(
    dets: list[tuple[Any, float, np.ndarray]],
    gts: dict[Any, tuple[np.ndarray, np.ndarray]],
    thresholds: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Match one class's detections to its ground truth at each IoU threshold.

    `dets`: (image_id, score, devkit box (4,)); `gts[image_id]` = (devkit boxes (G, 4), difficult
    (G,)). Returns `tp`, `fp` of shape (T, D) in decreasing score order, and the number of
    non-difficult boxes.
    """
    npos = int(sum((~diff).sum() for _, diff in gts.values()))
    order = np.argsort(-np.array([s for _, s, _ in dets], dtype=np.float64), kind="stable")
    ovmax = np.full(len(dets), -np.inf)
    jmax = np.full(len(dets), -1)
    difficult = np.zeros(len(dets), dtype=bool)
    image_index = np.zeros(len(dets), dtype=np.int64)
    by_image: dict[Any, list[int]] = {}
    for rank, i in enumerate(order):
        by_image.setdefault(dets[i][0], []).append(rank)
    for n, (image_id, ranks) in enumerate(by_image.items()):
        image_index[ranks] = n
        boxes, diff = gts.get(image_id, (np.zeros((0, 4)), np.zeros(0, dtype=bool)))
        if len(boxes) == 0:
            continue
        iou = devkit_iou(np.stack([dets[order[r]][2] for r in ranks]), boxes)
        j = iou.argmax(axis=1)  # first maximum, as the devkit's strict `>` scan
        ovmax[ranks], jmax[ranks], difficult[ranks] = iou[np.arange(len(ranks)), j], j, diff[j]
    tp = np.zeros((len(thresholds), len(dets)))
    fp = np.zeros((len(thresholds), len(dets)))
    for t, thr in enumerate(thresholds):
        hit = ovmax >= thr
        counted = hit & ~difficult
        # the first claim (in score order) of each (image, gt box) is the true positive,
        # later ones duplicates
        key = image_index * (1 + max(int(jmax.max(initial=0)), 0)) + jmax
        first = np.zeros(len(dets), dtype=bool)
        idx = np.nonzero(counted)[0]
        _, first_pos = np.unique(key[idx], return_index=True)
        first[idx[first_pos]] = True
        tp[t] = first
        fp[t] = ~hit | (counted & ~first)
    return tp, fp, npos


class VOCEvaluator(DetectionEvaluator):
    """Scores detections against the records' boxes and `difficult` flags (no
    image file is opened)."""

    SUMMARY_KEYS = ("mAP50_voc07", "mAP50", "mAP", "mAP75")
    PER_CLASS_KEYS = ("AP50_voc07", "AP50", "AP")
    HEADLINE = "mAP50"
    RENAMED = {"AP50_voc07": "mAP50_voc07", "AP": "mAP", "AP75": "mAP75"}

    def __init__(self, records: list[ImageRecord], class_names: list[str], name: str) -> None:
        super().__init__(
            class_names, list(range(1, len(class_names) + 1)), [r.image_id for r in records], name
        )
        if len(self.image_ids) != len(records):
            raise DatasetError(f"{name}: image ids are not unique across the concatenated VOC sets")
        shift = np.array([1, 1, 0, 0], dtype=np.float64)
        self.gts: list[dict[Any, tuple[np.ndarray, np.ndarray]]] = [{} for _ in class_names]
        for r in records:
            for k in np.unique(r.labels):
                sel = r.labels == k
                self.gts[k][r.image_id] = (
                    r.boxes[sel].astype(np.float64) + shift,
                    r.difficult[sel],
                )

    def evaluate(self) -> dict[str, Any]:
        dets = self.results
        per_class_dets: list[list[tuple[Any, float, np.ndarray]]] = [[] for _ in self.class_names]
        x, y, w, h = dets.boxes.astype(np.float64).T
        devkit = np.stack([x + 1, y + 1, x + w, y + h], axis=1)
        for image_id, cid, score, box in zip(
            dets.image_id_list(), dets.category_ids.tolist(), dets.scores.tolist(), devkit
        ):
            per_class_dets[self.label_of[cid]].append((image_id, score, box))
        thresholds = np.concatenate([[0.5], COCO_IOUS])
        per_class: dict[str, dict[str, float | None]] = {}
        ap75: dict[str, float | None] = {}
        for k, name in enumerate(self.class_names):
            tp, fp, npos = match_class(per_class_dets[k], self.gts[k], thresholds)
            if npos == 0:
                per_class[name] = {"AP50_voc07": None, "AP50": None, "AP": None}
                ap75[name] = None
                continue
            tp, fp = np.cumsum(tp, axis=1), np.cumsum(fp, axis=1)
            recall = tp / npos
            precision = tp / np.maximum(tp + fp, np.finfo(np.float64).tiny)
            aps = [
                voc_ap(recall[t], precision[t], eleven_point=False) for t in range(len(thresholds))
            ]
            per_class[name] = {
                "AP50_voc07": voc_ap(recall[0], precision[0], eleven_point=True),
                "AP50": aps[0],
                "AP": float(np.mean(aps[1:])),
            }
            ap75[name] = aps[1 + int(np.flatnonzero(np.isclose(COCO_IOUS, 0.75))[0])]

        def mean(values: list[float | None]) -> float:
            present = [v for v in values if v is not None]
            return float(np.mean(present)) if present else -1.0

        return {
            **{f"m{k}": mean([v[k] for v in per_class.values()]) for k in self.PER_CLASS_KEYS},
            "mAP75": mean(list(ap75.values())),
            "per_class": per_class,
        }

    def format_table(self, metrics: dict[str, Any]) -> str:
        lines = [
            f"VOC box metrics on {self.name} "
            f"({len(self.image_ids)} images, {len(self.results)} detections)",
            f"{'class':<14} {'AP50(07)':>8} {'AP50':>6} {'AP':>6}",
        ]
        for name, v in metrics["per_class"].items():
            lines.append(
                f"{name:<14} {fmt(v['AP50_voc07']):>8} {fmt(v['AP50']):>6} {fmt(v['AP']):>6}"
            )
        means = (fmt(metrics["mAP50_voc07"]), fmt(metrics["mAP50"]), fmt(metrics["mAP"]))
        lines.append(f"{'mean':<14} {means[0]:>8} {means[1]:>6} {means[2]:>6}")
        lines.append(f"mAP at IoU 0.75: {fmt(metrics['mAP75'])}")
        return "\n".join(lines)

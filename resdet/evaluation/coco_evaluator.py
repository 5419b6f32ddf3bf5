"""COCO box and mask metrics through `COCOeval`, against the dataset's own annotation file.

Reported (`metrics.json`): the 12 standard box stats `AP, AP50, AP75, APs, APm, APl, AR1, AR10,
AR100, ARs, ARm, ARl` (fractions; -1 where COCOeval has nothing to average, e.g. an area range
without ground truth) and `per_class: {name: {AP, AP50}}` (None for a class without ground truth).
When the detections carry masks (`segmentation`, COCO RLE), the same 12 stats of `iouType="segm"`
follow as `segm/AP, segm/AP50, ..., segm/ARl`, and each class entry gains `segm/AP, segm/AP50`
(flattened: `segm/AP/<class>`); mask results are scored without their box, so the mask's area
decides small / medium / large (detectron2's rule). The ground truth is the json file as released
(crowd regions, the `area` field, polygons and RLE included), so numbers equal the official
evaluation; no image file is opened.

`COCOeval` is pycocotools' or faster-coco-eval's (`test.coco_backend`,
`resdet.evaluation.coco_backends`): the same numbers to the last bit, faster-coco-eval's several
times sooner. The detections are scored from the compact arrays the ranks gathered
(`resdet.evaluation.detections`), each record built once, in the backend's own input.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from resdet.data.errors import DatasetError
from resdet.evaluation import coco_backends
from resdet.evaluation.base import DetectionEvaluator, fmt
from resdet.evaluation.detections import Detections

STAT_KEYS = ["AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"]
#: the prefix of the mask metrics' names (`segm/AP`, `segm/AP/<class>`)
SEGM = "segm/"


class COCOEvaluator(DetectionEvaluator):
    """Scores detections against `ann_file` on the images `image_ids` (all the dataset's images).

    `masks=True` (a mask model's evaluation): the mask metrics are always computed and
    `metric_names` lists them. Without it they are computed when the detections carry masks (a
    results file with `segmentation`). `backend`: `test.coco_backend` ("auto", "faster",
    "pycocotools"), resolved here, so that `faster` without its package fails before any work.
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
        backend: str = "auto",
    ) -> None:
        super().__init__(class_names, category_ids, image_ids, name)
        self.ann_file, self.masks = ann_file, masks
        self.backend = coco_backends.resolve_backend(backend)

    def metric_names(self) -> list[str]:
        names = super().metric_names()
        if self.masks:
            names += [SEGM + n for n in names]
        return names

    def _with_masks(self, dets: Detections) -> bool:
        """Whether `evaluate` scores masks: asked for, or the detections carry them (then all
        must)."""
        with_masks = self.masks or dets.has_masks
        if with_masks and len(dets):
            missing = 0 if not dets.has_masks else dets.first_without_mask()
            if missing is not None:
                raise DatasetError(
                    f"{self.name}: detection {missing} (image_id "
                    f"{dets.image_id(missing)!r}) has no mask ('segmentation') "
                    "while masks are evaluated"
                )
        return with_masks

    def _check_mask_sizes(self, gt: Any, dets: Detections) -> None:
        """A mask of another size than its image would score IoU 0 in pycocotools, silently:
        refuse it."""
        if not len(dets):
            return
        assert dets.mask_sizes is not None
        images, where = np.unique(dets.image_ids, return_inverse=True)
        image_sizes = np.array(
            [[gt.imgs[i]["height"], gt.imgs[i]["width"]] for i in images.tolist()], dtype=np.int64
        )[where.reshape(-1)]
        wrong = np.flatnonzero((dets.mask_sizes != image_sizes).any(axis=1))
        if len(wrong):
            i = int(wrong[0])
            raise DatasetError(
                f"{self.name}: detection {i} (image_id {dets.image_id(i)!r}): mask size "
                f"{dets.mask_sizes[i].tolist()} is not the image's [height, width] "
                f"{image_sizes[i].tolist()}"
            )

    def _coco_eval(
        self, backend: str, gt: Any, dets: Detections, iou_type: str
    ) -> tuple[dict[str, float], dict[str, dict]]:
        """COCOeval of `iou_type` ("bbox" or "segm") -> (the 12 stats by `STAT_KEYS` name,
        `{class name: {AP, AP50}}`)."""
        scores = coco_backends.score(backend, gt, dets, iou_type, list(self.image_ids))
        stats = dict(zip(STAT_KEYS, scores.stats))
        # precision: (IoU thresholds, recall points, classes, area ranges, max dets); -1 = undefined
        precision = scores.precision
        per_class = {}
        for k, cid in enumerate(scores.category_ids):
            entry = {}
            for key, p in (("AP", precision[:, :, k, 0, -1]), ("AP50", precision[0, :, k, 0, -1])):
                p = p[p > -1]
                entry[key] = float(np.mean(p)) if p.size else None
            per_class[self.class_names[self.label_of[cid]]] = entry
        return stats, per_class

    def evaluate(self) -> dict[str, Any]:
        dets = self.results
        with_masks = self._with_masks(dets)
        try:
            return self._evaluate(self.backend, dets, with_masks)
        except coco_backends.InexactBackendError as e:
            if self.backend == "pycocotools":
                raise
            warnings.warn(
                f"{self.name}: {e}; scored with pycocotools instead", RuntimeWarning, stacklevel=2
            )
            return self._evaluate("pycocotools", dets, with_masks)

    def _evaluate(self, backend: str, dets: Detections, with_masks: bool) -> dict[str, Any]:
        gt = coco_backends.load_ground_truth(backend, self.ann_file)
        metrics: dict[str, Any]
        metrics, per_class = self._coco_eval(backend, gt, dets, "bbox")
        if with_masks:
            self._check_mask_sizes(gt, dets)
            stats, per_class_segm = self._coco_eval(backend, gt, dets, "segm")
            metrics.update({SEGM + k: v for k, v in stats.items()})
            for name, entry in per_class_segm.items():
                per_class[name].update({SEGM + k: v for k, v in entry.items()})
        metrics["per_class"] = per_class
        return metrics

    def format_table(self, metrics: dict[str, Any]) -> str:
        with_masks = SEGM + "AP" in metrics
        lines = [
            f"COCO box metrics on {self.name} "
            f"({len(self.image_ids)} images, {len(self.results)} detections)",
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

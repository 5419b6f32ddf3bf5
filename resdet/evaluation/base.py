"""What every detection evaluator shares: collecting detections in the results
format and checking them.

Detections are kept in DESIGN.md's results format, one dict per box: `image_id` (the dataset's id),
`category_id` (the dataset's id of the class: COCO category id, 1-based index for VOC), `bbox`
`[x, y, w, h]` in the image's loaded frame (absolute pixels) and `score`, plus, from a mask model,
`segmentation`: the instance's mask as COCO RLE `{"size": [H, W], "counts": str}`
(`resdet.evaluation.rle`); either every detection has one or none does. That list is what
`write_detections` saves and what `--detections` files hold. Inside, an evaluator keeps the same
columns as compact arrays (`resdet.evaluation.detections.Detections`: ids, float32 boxes and
scores, RLE strings), and those are what ranks exchange under DDP and what `evaluate` scores:

    partial = evaluator.results                        # on every rank
    evaluator.merge(all_gather_object(partial))        # on the rank that evaluates
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from resdet.data.errors import DatasetError
from resdet.evaluation.detections import Detections
from resdet.evaluation.rle import is_rle, masks_to_rle, rle_to_bbox


class DetectionEvaluator:
    """Base class: accumulate detections (`process`, `load_results`, `merge`) and score
    them (`evaluate`)."""

    #: the summary numbers `evaluate` returns, and the numbers under each `per_class` entry
    SUMMARY_KEYS: tuple[str, ...] = ()
    PER_CLASS_KEYS: tuple[str, ...] = ()
    #: `evaluate`'s name for the headline metric, mean AP at IoU 0.5 (COCO: AP50, VOC: mAP50)
    HEADLINE: str = "AP50"
    #: `evaluate`'s names of the other summary metrics, keyed by COCO's name (AP: over IoU
    #: 0.5:0.95, AP75; VOC's 11-point AP50_voc07), where they differ from it
    RENAMED: dict[str, str] = {}

    @classmethod
    def metric_name(cls, name: str) -> str:
        """`evaluate`'s name for the summary metric COCO calls `name` ("AP50": `HEADLINE`)."""
        return cls.HEADLINE if name == "AP50" else cls.RENAMED.get(name, name)

    def __init__(
        self,
        class_names: list[str],
        category_ids: list[int],
        image_ids: Sequence[int | str],
        name: str,
    ) -> None:
        self.class_names, self.category_ids, self.name = list(class_names), list(category_ids), name
        self.image_ids = set(image_ids)
        self.label_of = {cid: k for k, cid in enumerate(self.category_ids)}
        self._category_array = np.asarray(self.category_ids, dtype=np.int64)
        self._parts: list[Detections] = []

    def reset(self) -> None:
        self._parts = []

    @property
    def results(self) -> Detections:
        """Every detection added so far, as compact arrays (what ranks exchange, what `evaluate`
        scores)."""
        if len(self._parts) != 1:
            self._parts = [Detections.concat(self._parts)]
        return self._parts[0]

    @property
    def detections(self) -> list[dict[str, Any]]:
        """The detections in the results format, one dict each (built on each call, from
        `results`)."""
        return self.results.records()

    def metric_names(self) -> list[str]:
        """Every flat metric name an evaluation can report (`resdet.io.run_dir.flat_metrics`): the
        summary keys, then `"<key>/<class>"`."""
        per_class = [f"{k}/{c}" for c in self.class_names for k in self.PER_CLASS_KEYS]
        return [*self.SUMMARY_KEYS, *per_class]

    def process(
        self,
        targets: Sequence[dict[str, Any] | int | str],
        outputs: Sequence[dict[str, torch.Tensor]],
    ) -> None:
        """Add one batch of predictions.

        `targets[i]` is the image's target dict (its `image_id` is used) or the image id itself;
        `outputs[i]` holds `boxes` (K, 4) xyxy in the ORIGINAL image's pixels, `scores` (K,) and
        `labels` (K,) contiguous `0..C-1`, and from a mask model `masks` (K, 1, H, W) float
        probabilities in the same frame (torchvision's convention), kept as RLE under
        `segmentation` (a pixel is on above `rle.MASK_THRESHOLD`).
        """
        for target, out in zip(targets, outputs, strict=True):
            image_id = target["image_id"] if isinstance(target, dict) else target
            corners = _array(out["boxes"]).reshape(-1, 4)
            # a model's float32 (or wider) boxes; w, h rounded once, from the exact difference
            wide = corners.astype(np.float64)
            xywh = np.concatenate([wide[:, :2], wide[:, 2:] - wide[:, :2]], axis=1)
            dtype = np.result_type(corners.dtype, np.float32)
            labels = _array(out["labels"]).reshape(-1).astype(np.int64)
            scores = _array(out["scores"]).reshape(-1)
            rles = masks_to_rle(out["masks"]) if "masks" in out else None
            if rles is not None and len(rles) != len(xywh):
                raise ValueError(f"image {image_id!r}: {len(rles)} masks for {len(xywh)} boxes")
            if not len(labels) == len(scores) == len(xywh):
                raise ValueError(
                    f"image {image_id!r}: {len(xywh)} boxes, {len(scores)} scores, "
                    f"{len(labels)} labels"
                )
            self._parts.append(
                Detections.of_image(
                    image_id,
                    self._category_array[labels],
                    xywh.astype(dtype),
                    scores.astype(np.result_type(scores.dtype, np.float32)),
                    rles,
                )
            )

    def load_results(self, results: list[dict[str, Any]], source: str = "<results>") -> None:
        """Add detections given in the results format, checking every record.

        Records with a `segmentation` (RLE) may leave out `bbox`: it is then the mask's tight box,
        as `COCO.loadRes` derives it. A file mixing records with and without `segmentation` is an
        error naming the first record that differs from record 0.
        """
        if not isinstance(results, list):
            raise DatasetError(f"{source}: detections must be a JSON list of records")
        with_masks = None
        image_ids: list[int | str] = []
        category_ids: list[int] = []
        boxes: list[list[float]] = []
        scores: list[float] = []
        rles: list[dict[str, Any]] = []
        for i, r in enumerate(results):
            where = f"{source}: record {i}"
            if not isinstance(r, dict):
                raise DatasetError(f"{where}: expected an object, got {r!r}")
            has_mask = "segmentation" in r
            if with_masks is None:
                with_masks = has_mask
            elif has_mask != with_masks:
                raise DatasetError(
                    f"{where}: {'has' if has_mask else 'has no'} field 'segmentation' but record "
                    f"0 {'does not' if has_mask else 'does'}: a results file gives a mask for "
                    "every record or for none"
                )
            if has_mask and not is_rle(r["segmentation"]):
                raise DatasetError(
                    f"{where}: field 'segmentation' must be a COCO RLE "
                    f'{{"size": [height, width], "counts": str}}, got {r["segmentation"]!r:.80}'
                )
            for key in ("image_id", "category_id", "score") + (() if has_mask else ("bbox",)):
                if key not in r:
                    raise DatasetError(f"{where}: missing field {key!r}")
            image_id, category_id, score = r["image_id"], r["category_id"], r["score"]
            if isinstance(image_id, bool) or not isinstance(image_id, (int, str)):
                raise DatasetError(
                    f"{where}: field 'image_id' must be an integer or string, got {image_id!r:.80}"
                )
            if image_id not in self.image_ids:
                raise DatasetError(
                    f"{where}: field 'image_id' {image_id!r} is not an image of {self.name}"
                )
            if isinstance(category_id, bool) or not isinstance(category_id, int):
                raise DatasetError(
                    f"{where}: field 'category_id' must be an integer, got {category_id!r:.80}"
                )
            if category_id not in self.label_of:
                raise DatasetError(
                    f"{where}: field 'category_id' {category_id!r} is not a category of {self.name}"
                )
            bbox = r["bbox"] if "bbox" in r else rle_to_bbox(r["segmentation"])
            if not isinstance(bbox, list) or len(bbox) != 4 or not all(map(_finite, bbox)):
                raise DatasetError(
                    f"{where}: field 'bbox' must be 4 finite numbers [x, y, w, h], got {bbox!r:.80}"
                )
            if bbox[2] < 0 or bbox[3] < 0:
                raise DatasetError(
                    f"{where}: field 'bbox' has a negative width or height (w {bbox[2]!r}, "
                    f"h {bbox[3]!r}); boxes are [x, y, w, h], not corners"
                )
            if not _finite(score):
                raise DatasetError(
                    f"{where}: field 'score' must be a finite number, got {score!r:.80}"
                )
            image_ids.append(image_id)
            category_ids.append(category_id)
            boxes.append(bbox)
            scores.append(score)
            if has_mask:
                rles.append(r["segmentation"])
        if not results:
            return
        ids = np.empty(len(image_ids), dtype=object)
        ids[:] = image_ids
        if not any(isinstance(i, str) for i in image_ids):
            ids = ids.astype(np.int64)
        counts = sizes = None
        if with_masks:
            counts = np.empty(len(rles), dtype=object)
            counts[:] = [m["counts"] for m in rles]
            sizes = np.array([m["size"] for m in rles], dtype=np.int32)
        # the file's numbers as written (float64), not rounded to a model's float32
        self._parts.append(
            Detections(
                ids,
                np.asarray(category_ids, dtype=np.int64),
                np.asarray(boxes, dtype=np.float64).reshape(-1, 4),
                np.asarray(scores, dtype=np.float64),
                counts,
                sizes,
            )
        )

    def merge(self, partials: Sequence[Detections]) -> None:
        """Replace the detections with the concatenation of per-rank `results`."""
        self._parts = [Detections.concat(list(partials))]

    def write_detections(self, path: str | Path) -> None:
        """Save the detections as a results-format JSON list."""
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(self.detections))

    def evaluate(self) -> dict[str, Any]:
        """Score the detections; returns the `metrics.json` content (fractions in 0..1)."""
        raise NotImplementedError

    def format_table(self, metrics: dict[str, Any]) -> str:
        """A readable table of `metrics` (as returned by `evaluate`)."""
        raise NotImplementedError


def _array(t: torch.Tensor | np.ndarray) -> np.ndarray:
    """A tensor's values as a numpy array on the CPU (half precision as float32)."""
    if not isinstance(t, torch.Tensor):
        return np.asarray(t)
    t = t.detach().cpu()
    if t.is_floating_point() and t.dtype not in (torch.float32, torch.float64):
        t = t.float()
    return t.numpy()


def _finite(value: Any) -> bool:
    """A JSON number (int or float, not a boolean) that is finite."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def fmt(value: float | None) -> str:
    """A metric as a percentage with one decimal, or '-' when undefined."""
    return "-" if value is None or value < 0 else f"{100 * value:5.1f}"


def evaluator_class(metrics: dict[str, Any]) -> type[DetectionEvaluator]:
    """The evaluator that wrote `metrics` (`evaluate`'s dict or its flat form), told by the name of
    its headline metric; `DetectionEvaluator` (COCO's names) when no evaluator's is there. The
    evaluators are the subclasses `resdet.evaluation` imports."""
    pending = list(DetectionEvaluator.__subclasses__())
    while pending:
        cls = pending.pop(0)
        if cls.HEADLINE in metrics:
            return cls
        pending.extend(cls.__subclasses__())
    return DetectionEvaluator


def headline_metric(metrics: dict[str, Any], name: str = "AP50") -> str:
    """The name of the headline metric (mean AP at IoU 0.5) in `metrics`, as whichever evaluator
    wrote them names it: `mAP50` for VOC's, `AP50` for COCO's (and when neither is there). With
    `name`, that evaluator's name of the summary metric COCO calls `name` instead (`"AP"`: `mAP`
    for VOC's, `AP` for COCO's)."""
    return evaluator_class(metrics).metric_name(name)

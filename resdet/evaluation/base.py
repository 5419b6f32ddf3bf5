"""What every detection evaluator shares: collecting detections in the results
format and checking them.

Detections are kept in DESIGN.md's results format, one dict per box: `image_id` (the dataset's id),
`category_id` (the dataset's id of the class: COCO category id, 1-based index for VOC), `bbox`
`[x, y, w, h]` in the image's loaded frame (absolute pixels) and `score`, plus, from a mask model,
`segmentation`: the instance's mask as COCO RLE `{"size": [H, W], "counts": str}`
(`resdet.evaluation.rle`); either every detection has one or none does. That list is what
`write_detections` saves, what `--detections` files hold, and what ranks exchange under DDP:

    partial = evaluator.detections                     # on every rank
    evaluator.merge(all_gather_object(partial))        # on the rank that evaluates
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Sequence

import torch

from resdet.data.errors import DatasetError
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
        self.detections: list[dict[str, Any]] = []

    def reset(self) -> None:
        self.detections = []

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
            boxes = out["boxes"].detach().to("cpu", torch.float64).reshape(-1, 4)
            xywh = torch.cat([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], dim=1).tolist()
            scores = out["scores"].detach().cpu().tolist()
            labels = out["labels"].detach().cpu().tolist()
            rles = masks_to_rle(out["masks"]) if "masks" in out else None
            if rles is not None and len(rles) != len(xywh):
                raise ValueError(f"image {image_id!r}: {len(rles)} masks for {len(xywh)} boxes")
            for j, (b, s, k) in enumerate(zip(xywh, scores, labels, strict=True)):
                det = {
                    "image_id": image_id,
                    "category_id": self.category_ids[int(k)],
                    "bbox": b,
                    "score": float(s),
                }
                if rles is not None:
                    det["segmentation"] = rles[j]
                self.detections.append(det)

    def load_results(self, results: list[dict[str, Any]], source: str = "<results>") -> None:
        """Add detections given in the results format, checking every record.

        Records with a `segmentation` (RLE) may leave out `bbox`: it is then the mask's tight box,
        as `COCO.loadRes` derives it. A file mixing records with and without `segmentation` is an
        error naming the first record that differs from record 0.
        """
        if not isinstance(results, list):
            raise DatasetError(f"{source}: detections must be a JSON list of records")
        with_masks = None
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
            det = {
                "image_id": r["image_id"],
                "category_id": r["category_id"],
                "bbox": [float(v) for v in bbox],
                "score": float(r["score"]),
            }
            if has_mask:
                det["segmentation"] = r["segmentation"]
            self.detections.append(det)

    def merge(self, partials: Sequence[list[dict[str, Any]]]) -> None:
        """Replace the detections with the concatenation of per-rank `detections` lists."""
        self.detections = [d for part in partials for d in part]

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

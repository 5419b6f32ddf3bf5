"""Pictures of a run's detections: ground truth and detections drawn on dataset images.

Boxes: `draw_detections` overlays ground truth (`GT_COLOUR`, class name) and predictions
(`PRED_COLOUR`, class name and score; their masks, when the results carry them, filled half
transparent) on one image with `torchvision.utils.draw_bounding_boxes` / `draw_segmentation_masks`;
`group_detections` checks a results-format list against a dataset with the evaluators' own record
checks (so the files `tools/eval_det.py --detections` accepts are accepted) and groups it per
image; `draw_dataset` writes one PNG per image at the image's own size, in the frame the results
format uses (the decoded file, no resize).

Curves of a run (losses, mAP, error) are `resdet.reports.curves`'.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image
from torchvision.ops import box_convert
from torchvision.utils import draw_bounding_boxes, draw_segmentation_masks

from resdet.data.dataset import DetectionDataset
from resdet.data.errors import DatasetError
from resdet.data.image_io import read_image
from resdet.data.records import ImageRecord
from resdet.evaluation.base import DetectionEvaluator
from resdet.evaluation.rle import rle_to_mask

GT_COLOUR = (0, 255, 0)
PRED_COLOUR = (255, 0, 64)
GT_WIDTH = 3
#: thinner than GT, so a prediction on top of its ground truth leaves the GT's inner ring visible
PRED_WIDTH = 2


@dataclass
class ImageDetections:
    """Predictions on one image: `boxes` (K, 4) float32 xyxy absolute pixels of the decoded file,
    `scores` (K,) float32, `labels` (K,) int64 contiguous `0..C-1`, `masks` (K, H, W) bool or
    None (box-only results)."""

    boxes: torch.Tensor
    scores: torch.Tensor
    labels: torch.Tensor
    masks: torch.Tensor | None = None


def group_detections(
    results: list[dict[str, Any]], dataset: DetectionDataset, source: str = "<results>"
) -> dict[int | str, ImageDetections]:
    """Check `results` (DESIGN's results format: COCO ids, or VOC id strings and 1-based class
    indices) against `dataset` and group them by `image_id`; errors name `source`, the record and
    the field."""
    names = " + ".join(s.name for s in dataset.sources)
    category_ids = {tuple(s.category_ids) for s in dataset.sources}
    if len(category_ids) != 1:
        raise DatasetError(
            f"{names}: the entries number their categories differently; draw them one at a time"
        )
    # the evaluators' own record checks and id mapping, without their one-COCO-file limit
    checker = DetectionEvaluator(
        dataset.class_names,
        dataset.sources[0].category_ids,
        [r.image_id for r in dataset.records],
        names,
    )
    checker.load_results(results, source)
    rows: dict[int | str, list[tuple[list[float], float, int, Any]]] = {}
    for i, d in enumerate(checker.detections):
        if d["bbox"][2] < 0 or d["bbox"][3] < 0:
            raise DatasetError(
                f"{source}: record {i}: field 'bbox' {d['bbox']!r} has a negative "
                "width or height (expected [x, y, w, h])"
            )
        rows.setdefault(d["image_id"], []).append(
            (d["bbox"], d["score"], checker.label_of[d["category_id"]], d.get("segmentation"))
        )
    grouped = {}
    for image_id, dets in rows.items():
        xywh = torch.tensor([b for b, _, _, _ in dets], dtype=torch.float32).reshape(-1, 4)
        rles = [m for _, _, _, m in dets]
        grouped[image_id] = ImageDetections(
            box_convert(xywh, "xywh", "xyxy"),
            torch.tensor([s for _, s, _, _ in dets], dtype=torch.float32),
            torch.tensor([k for _, _, k, _ in dets], dtype=torch.int64),
            torch.stack([torch.from_numpy(rle_to_mask(m)).bool() for m in rles])
            if rles[0] is not None
            else None,
        )
    return grouped


def draw_detections(
    image: torch.Tensor,
    record: ImageRecord,
    class_names: Sequence[str],
    detections: ImageDetections | None = None,
    score_thresh: float = 0.5,
) -> torch.Tensor:
    """Draw `record`'s ground truth, then the detections scoring at least `score_thresh`.

    `image` is uint8 (3, H, W), the decoded file the record describes. Returns a new uint8 (3, H,
    W). VOC `difficult` objects are labelled "(difficult)", COCO crowd regions "crowd".
    """
    gt_boxes = torch.as_tensor(
        np.concatenate([record.boxes, record.crowd_boxes]), dtype=torch.float32
    )
    gt_text = [
        class_names[int(k)] + (" (difficult)" if diff else "")
        for k, diff in zip(record.labels, record.difficult)
    ]
    gt_text += ["crowd"] * len(record.crowd_boxes)
    out = image
    if len(gt_boxes):
        out = draw_bounding_boxes(
            out, gt_boxes, gt_text, colors=GT_COLOUR, width=GT_WIDTH, fill_labels=True
        )
    if detections is not None:
        out = draw_predictions(out, class_names, detections, score_thresh, record.file_name)
    return out


def draw_predictions(
    image: torch.Tensor,
    class_names: Sequence[str],
    detections: ImageDetections,
    score_thresh: float = 0.5,
    name: str = "<image>",
) -> torch.Tensor:
    """Draw the detections scoring at least `score_thresh` (masks filled half transparent, then
    boxes with class name and score) on `image`, uint8 (3, H, W); returns a new uint8 (3, H, W).
    `name` identifies the image in errors."""
    out = image
    keep = detections.scores >= score_thresh
    if not keep.any():
        return out
    if detections.masks is not None:
        if detections.masks.shape[-2:] != out.shape[-2:]:
            raise DatasetError(
                f"{name}: detection masks are {tuple(detections.masks.shape[-2:])}"
                f" but the image is {tuple(out.shape[-2:])} (HxW)"
            )
        out = draw_segmentation_masks(out, detections.masks[keep], alpha=0.5, colors=PRED_COLOUR)
    text = [
        f"{class_names[int(k)]} {s:.2f}"
        for k, s in zip(detections.labels[keep], detections.scores[keep].tolist())
    ]
    return draw_bounding_boxes(
        out, detections.boxes[keep], text, colors=PRED_COLOUR, width=PRED_WIDTH, fill_labels=True
    )


def _file_stem(image_id: int | str) -> str:
    return re.sub(r"[^\w.-]", "_", str(image_id))


def draw_dataset(
    dataset: DetectionDataset,
    detections: dict[int | str, ImageDetections],
    output_dir: str | Path,
    *,
    num: int | None = None,
    image_ids: Sequence[str] | None = None,
    score_thresh: float = 0.5,
) -> list[Path]:
    """Write `<output_dir>/<image_id>.png` for the first `num` images of `dataset` (all when None),
    or for the images whose id (as text) is in `image_ids`; returns the paths written."""
    records = dataset.records
    if image_ids is not None:
        by_id = {str(r.image_id): r for r in records}
        unknown = [i for i in image_ids if i not in by_id]
        if unknown:
            names = " + ".join(s.name for s in dataset.sources)
            raise DatasetError(f"image id(s) {', '.join(unknown)} are not images of {names}")
        records = [by_id[i] for i in image_ids]
    if num is not None:
        records = records[:num]
    out_dir = Path(output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for r in records:
        # (H, W, 3) -> (3, H, W) for draw_bounding_boxes, and back for PIL
        image = torch.from_numpy(read_image(r.file_name)).permute(2, 0, 1)
        drawn = draw_detections(
            image, r, dataset.class_names, detections.get(r.image_id), score_thresh
        )
        path = out_dir / f"{_file_stem(r.image_id)}.png"
        Image.fromarray(drawn.permute(1, 2, 0).numpy()).save(path)
        written.append(path)
    return written

"""Detections as compact arrays: what an evaluator collects, what DDP ranks exchange, what the
COCO backends score.

One row per detection, the results format's fields as columns (`resdet.evaluation.base`):

    image_ids     (N,) int64, or object for string ids (VOC's)
    category_ids  (N,) int64, the dataset's category ids
    boxes         (N, 4) [x, y, w, h]: float32 from a model (`DetectionEvaluator.process`),
                  float64 from a results file (its numbers as written)
    scores        (N,) float32 from a model, float64 from a results file
    rle_counts    (N,) object: each mask's COCO RLE counts string (None for a row without one), or
                  None when no row has a mask
    mask_sizes    (N, 2) int32: each mask's [H, W] (0, 0 without one), or None with `rle_counts`

Pickled (`all_gather_object`) it is a handful of arrays, not N dicts; `records()` gives the
results-format list of dicts back (written files, `--detections` round trips).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np


@dataclass
class Detections:
    image_ids: np.ndarray
    category_ids: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray
    rle_counts: np.ndarray | None = None
    mask_sizes: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.image_ids)
        shapes = {
            "category_ids": (self.category_ids.shape, (n,)),
            "boxes": (self.boxes.shape, (n, 4)),
            "scores": (self.scores.shape, (n,)),
        }
        if (self.rle_counts is None) != (self.mask_sizes is None):
            raise ValueError("rle_counts and mask_sizes come together")
        if self.rle_counts is not None and self.mask_sizes is not None:
            shapes["rle_counts"] = (self.rle_counts.shape, (n,))
            shapes["mask_sizes"] = (self.mask_sizes.shape, (n, 2))
        for name, (got, want) in shapes.items():
            if got != want:
                raise ValueError(f"Detections.{name} has shape {got}, expected {want}")

    @classmethod
    def empty(cls) -> Detections:
        return cls(
            np.zeros(0, dtype=np.int64),
            np.zeros(0, dtype=np.int64),
            np.zeros((0, 4), dtype=np.float32),
            np.zeros(0, dtype=np.float32),
        )

    @classmethod
    def of_image(
        cls,
        image_id: int | str,
        category_ids: np.ndarray,
        boxes: np.ndarray,
        scores: np.ndarray,
        rles: Sequence[dict[str, Any]] | None = None,
    ) -> Detections:
        """The detections of one image; `rles`: COCO RLE dicts `{"size": [H, W], "counts": str}`,
        one a row."""
        n = len(scores)
        ids = np.full(n, image_id, dtype=object if isinstance(image_id, str) else np.int64)
        counts = sizes = None
        if rles is not None:
            counts = np.empty(n, dtype=object)
            counts[:] = [r["counts"] for r in rles]
            sizes = np.array([r["size"] for r in rles], dtype=np.int32).reshape(n, 2)
        return cls(ids, np.asarray(category_ids, dtype=np.int64), boxes, scores, counts, sizes)

    @classmethod
    def concat(cls, parts: Sequence[Detections]) -> Detections:
        """The rows of `parts` in order. Parts with masks and parts without mix into rows whose
        missing masks are None (an evaluator that scores masks names the first)."""
        parts = [p for p in parts if len(p)]
        if not parts:
            return cls.empty()
        if len(parts) == 1:
            return parts[0]
        counts = sizes = None
        if any(p.rle_counts is not None for p in parts):
            counts = np.concatenate(
                [p.rle_counts if p.rle_counts is not None else np.full(len(p), None) for p in parts]
            )
            sizes = np.concatenate(
                [
                    p.mask_sizes if p.mask_sizes is not None else np.zeros((len(p), 2), np.int32)
                    for p in parts
                ]
            )
        return cls(
            np.concatenate([p.image_ids for p in parts]),
            np.concatenate([p.category_ids for p in parts]),
            np.concatenate([p.boxes for p in parts]),
            np.concatenate([p.scores for p in parts]),
            counts,
            sizes,
        )

    def __len__(self) -> int:
        return len(self.image_ids)

    @property
    def has_masks(self) -> bool:
        """Whether any row carries a mask."""
        return self.rle_counts is not None

    def first_without_mask(self) -> int | None:
        """The first row without a mask while others have one (None: every row has one, or none
        does)."""
        if self.rle_counts is None:
            return None
        missing = np.flatnonzero(np.equal(self.rle_counts, None))
        return int(missing[0]) if len(missing) else None

    def rles(self) -> list[dict[str, Any]]:
        """Each row's mask as a COCO RLE dict (every row must have one)."""
        if not len(self):
            return []
        assert self.rle_counts is not None and self.mask_sizes is not None
        return [
            {"size": size, "counts": counts}
            for size, counts in zip(self.mask_sizes.tolist(), self.rle_counts.tolist())
        ]

    def image_id(self, i: int) -> int | str:
        """Row `i`'s image id as a Python int (or string)."""
        return self.image_ids[i : i + 1].tolist()[0]

    def image_id_list(self) -> list[int | str]:
        """The image ids as Python ints (or strings)."""
        return self.image_ids.tolist()

    def records(self) -> list[dict[str, Any]]:
        """The results-format list of dicts (`bbox` and `score` as Python floats)."""
        out = [
            {"image_id": i, "category_id": c, "bbox": b, "score": s}
            for i, c, b, s in zip(
                self.image_id_list(),
                self.category_ids.tolist(),
                self.boxes.tolist(),
                self.scores.tolist(),
            )
        ]
        if self.rle_counts is not None and self.mask_sizes is not None:
            for r, counts, size in zip(out, self.rle_counts.tolist(), self.mask_sizes.tolist()):
                if counts is not None:
                    r["segmentation"] = {"size": size, "counts": counts}
        return out

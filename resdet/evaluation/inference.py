"""Evaluating a detector on a test set, on one process or sharded over DDP ranks.

Each rank runs the model over its contiguous shard of the test set (`InferenceSampler`), collects
detections in the results format, and rank 0 gathers every shard and scores them with the dataset's
evaluator (COCO or VOC, `resdet.evaluation.build_evaluator`). The test images reach the detector at
their decoded size (the data pipeline does not resize; the detector does, and maps its boxes back),
so the predicted boxes are already in the original image's pixels.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from resdet.config.data import DataConfig
from resdet.data.build import build_test_loader
from resdet.data.dataset import DetectionDataset
from resdet.engine.precision import autocast
from resdet.evaluation.base import DetectionEvaluator, headline_metric
from resdet.evaluation.build import build_evaluator
from resdet.io.run_dir import flat_metrics  # noqa: F401  (the metrics.json layout's; imported from here too)
from resdet.utils.dist import DistInfo, all_gather_object


def label_mapping(
    model_classes: int, evaluator: DetectionEvaluator, class_names: list[str] | None = None
) -> torch.Tensor | None:
    """Model label -> dataset label (-1: not a class of the dataset), or None when they coincide.

    With the model's `class_names` (label k = entry k; our checkpoints record them), the test set's
    classes in another order are matched by name, and other names are a `ValueError` listing both.
    A model with as many classes as the largest COCO category id (torchvision's COCO detectors: 90)
    predicts label `k` for category id `k + 1`; any other mismatch is an error.
    """
    num = len(evaluator.class_names)
    if class_names is not None and list(class_names) != list(evaluator.class_names):
        if sorted(class_names) != sorted(evaluator.class_names):
            raise ValueError(
                f"the model was trained on classes {list(class_names)}, but {evaluator.name} has "
                f"{list(evaluator.class_names)}"
            )
        return torch.tensor([evaluator.class_names.index(n) for n in class_names])
    if model_classes == num:
        return None
    if model_classes == max(evaluator.category_ids) and min(evaluator.category_ids) >= 1:
        return torch.tensor([evaluator.label_of.get(k + 1, -1) for k in range(model_classes)])
    raise ValueError(
        f"the model predicts {model_classes} classes but {evaluator.name} has {num} "
        f"(and its largest category id is {max(evaluator.category_ids)})"
    )


class InferenceRunner:
    """Runs a detector over `dataset` and scores its detections with the dataset's
    `DetectionEvaluator`: `runner(model)` -> the evaluator's metrics on rank 0, None on other ranks.
    Every rank must call it (the shards are gathered).

    `model`: the bare detector (not the DDP wrapper: shards differ in length, and DDP's forward
    would wait for the other ranks); it is run as it is (the caller puts it in eval mode).
    `masks`: the model predicts masks (Mask R-CNN), scored as `segm` beside `bbox` on COCO data.
    `class_names`: the model's classes (label order), when known: the test set's in another
    order are matched by name (said in one line), other names are a `ValueError` at once.
    `coco_backend`: `test.coco_backend` (`resdet.evaluation.coco_backends`).

    The ranks exchange their detections as compact arrays (`resdet.evaluation.detections`: ids,
    float32 boxes and scores, RLE strings), not as one dict per detection.
    """

    def __init__(
        self,
        dataset: DetectionDataset,
        data: DataConfig,
        dist: DistInfo,
        *,
        amp: str = "none",
        masks: bool = False,
        class_names: list[str] | None = None,
        coco_backend: str = "auto",
    ) -> None:
        self.dataset, self.dist, self.amp = dataset, dist, amp
        self.loader = build_test_loader(dataset, data, rank=dist.rank, world_size=dist.world_size)
        self.evaluator = build_evaluator(dataset, masks=masks, coco_backend=coco_backend)
        self.class_names = class_names
        if class_names is not None and list(class_names) != list(self.evaluator.class_names):
            label_mapping(len(class_names), self.evaluator, class_names)  # other names: an error
            if dist.is_main:
                print(
                    f"{self.evaluator.name}: the model's classes are this set's in another order; "
                    "its detections are scored by class name",
                    flush=True,
                )

    @torch.no_grad()
    def __call__(self, model: nn.Module) -> dict[str, Any] | None:
        mapping = label_mapping(model.num_classes, self.evaluator, self.class_names)
        self.evaluator.reset()
        for images, targets in self.loader:
            for image, target in zip(images, targets):
                if tuple(image.shape[-2:]) != tuple(target["orig_size"]):
                    raise RuntimeError(
                        f"{target['file_name']}: the test pipeline changed the image size "
                        f"({tuple(target['orig_size'])} -> {tuple(image.shape[-2:])}); only "
                        "the detector may resize, so that its boxes are in original pixels"
                    )
            with autocast(self.amp, self.dist.device):
                outputs = model([im.to(self.dist.device, non_blocking=True) for im in images])
            # half-precision values (autocast) to float32; labels stay integers (they index)
            outputs = [
                {k: (v.float() if v.is_floating_point() else v).cpu() for k, v in out.items()}
                for out in outputs
            ]
            if mapping is not None:
                outputs = [_relabel(out, mapping) for out in outputs]
            self.evaluator.process(targets, outputs)
        shards = all_gather_object(self.evaluator.results)
        if not self.dist.is_main:
            return None
        self.evaluator.merge(shards)
        return self.evaluator.evaluate()

    def summary(self, metrics: dict[str, Any]) -> str:
        """The evaluator's table for `metrics`."""
        return self.evaluator.format_table(metrics)


def headline(metrics: dict[str, Any]) -> str:
    """`mAP@0.5` and `mAP@[.5:.95]` of either evaluator's metrics, in percent; a metric with nothing
    to score (COCO's -1, NaN) is left out, so the line may be empty."""
    ap50 = metrics.get(headline_metric(metrics))
    ap = metrics.get(headline_metric(metrics, "AP"))
    show = [
        f"{name} {100 * v:.1f}"
        for name, v in (("mAP@0.5", ap50), ("mAP@[.5:.95]", ap))
        if isinstance(v, float) and math.isfinite(v) and v >= 0
    ]
    return ", ".join(show)


def _relabel(out: dict[str, torch.Tensor], mapping: torch.Tensor) -> dict[str, torch.Tensor]:
    """`out` with its labels mapped and the detections of no dataset class dropped (every
    per-detection output: boxes, scores, masks)."""
    labels = mapping[out["labels"]]
    keep = labels >= 0
    return {**{k: v[keep] for k, v in out.items()}, "labels": labels[keep]}

"""Pick the evaluator that matches a dataset, and evaluate a results file against a
config's test set."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from resdet.config import Config
from resdet.data.build import build_detection_dataset
from resdet.data.dataset import DetectionDataset
from resdet.data.errors import DatasetError
from resdet.evaluation.base import DetectionEvaluator
from resdet.evaluation.coco_evaluator import COCOEvaluator
from resdet.evaluation.voc_evaluator import VOCEvaluator


def build_evaluator(dataset: DetectionDataset, *, masks: bool = False) -> DetectionEvaluator:
    """COCO evaluator for a (single) source of protocol "coco", VOC evaluator for one or more
    sources of protocol "voc" (`DatasetSource.protocol`). `masks`: a mask model is evaluated, so
    the COCO evaluator always reports the `segm/` metrics (VOC has no mask ground truth: its
    evaluator scores the boxes only)."""
    protocols = {s.protocol for s in dataset.sources}
    name = " + ".join(s.name for s in dataset.sources)
    if protocols == {"voc"}:
        return VOCEvaluator(dataset.records, dataset.class_names, name)
    if protocols == {"coco"} and len(dataset.sources) == 1:
        src = dataset.sources[0]
        assert src.ann_file is not None
        return COCOEvaluator(
            src.ann_file,
            src.class_names,
            src.category_ids,
            [r.image_id for r in dataset.records],
            name,
            masks=masks,
        )
    raise DatasetError(
        f"cannot evaluate {name} as one set: list one COCO test entry, or VOC entries only, "
        "per evaluation"
    )


def read_results(path: str | Path) -> list[dict[str, Any]]:
    """Read a results-format JSON list; malformed JSON is an error naming the file."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise DatasetError(f"{path}: detections file not found") from None
    except json.JSONDecodeError as e:
        raise DatasetError(f"{path}: malformed JSON: {e}") from None
    if not isinstance(data, list):
        raise DatasetError(f"{path}: detections must be a JSON list of records")
    return data


def evaluate_detections(
    cfg: Config, results: list[dict[str, Any]], source: str = "<results>"
) -> tuple[dict[str, Any], DetectionEvaluator]:
    """Score `results` (results format) against `cfg.data.test`; opens annotations only, no
    image. Records with `segmentation` (RLE) are scored as masks too (COCO)."""
    dataset = build_detection_dataset(cfg.data, "test", check_files=False)
    evaluator = build_evaluator(dataset)
    evaluator.load_results(results, source)
    return evaluator.evaluate(), evaluator

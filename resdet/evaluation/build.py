"""Pick the evaluator that matches a dataset, and evaluate a results file against a
config's test set."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

from resdet.config import Config
from resdet.data.build import build_detection_dataset
from resdet.data.coco import read_coco_json
from resdet.data.dataset import DetectionDataset
from resdet.data.errors import DatasetError, DatasetWarning
from resdet.data.records import DatasetSource
from resdet.evaluation.base import DetectionEvaluator
from resdet.evaluation.coco_evaluator import COCOEvaluator
from resdet.evaluation.voc_evaluator import VOCEvaluator


def build_evaluator(
    dataset: DetectionDataset, *, masks: bool = False, coco_backend: str = "auto"
) -> DetectionEvaluator:
    """COCO evaluator for a (single) source of protocol "coco", VOC evaluator for one or more
    sources of protocol "voc" (`DatasetSource.protocol`). `masks`: a mask model is evaluated, so
    the COCO evaluator always reports the `segm/` metrics (VOC has no mask ground truth: its
    evaluator scores the boxes only). `coco_backend`: `test.coco_backend`, what scores COCO
    (`resdet.evaluation.coco_backends`; a `ConfigError` for `faster` without its package)."""
    protocols = {s.protocol for s in dataset.sources}
    name = " + ".join(s.name for s in dataset.sources)
    if protocols == {"voc"}:
        return VOCEvaluator(dataset.records, dataset.class_names, name)
    if protocols == {"coco"} and len(dataset.sources) == 1:
        src = dataset.sources[0]
        assert src.ann_file is not None
        check_coco_ground_truth(src)
        return COCOEvaluator(
            src.ann_file,
            src.class_names,
            src.category_ids,
            [r.image_id for r in dataset.records],
            name,
            masks=masks,
            backend=coco_backend,
        )
    raise DatasetError(
        f"cannot evaluate {name} as one set: list one COCO test entry, or VOC entries only, "
        "per evaluation"
    )


def check_coco_ground_truth(src: DatasetSource) -> None:
    """A COCO test set whose images have no annotation at all: a file without the `annotations`
    key is a `DatasetError` naming it (an image list alone cannot be scored), an empty
    `annotations` list one warning that nothing will be scored (every COCO metric is -1). The file
    is read again only in that case."""
    if any(len(r.boxes) or len(r.crowd_boxes) for r in src.records):
        return
    assert src.ann_file is not None
    data = read_coco_json(src.ann_file)
    if "annotations" not in data:
        raise DatasetError(
            f"{src.ann_file}: no 'annotations' key: a COCO file used as a test set needs its "
            "ground truth (images, categories and annotations); this one cannot be scored"
        )
    if not data["annotations"]:
        warnings.warn(
            f"{src.ann_file}: 'annotations' is empty: nothing to score, every COCO metric will be "
            "undefined (-1, shown as - or -100)",
            DatasetWarning,
            stacklevel=3,
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
    """Score `results` (results format) against `cfg.data.test` with `cfg.test.coco_backend`;
    opens annotations only, no image. Records with `segmentation` (RLE) are scored as masks too
    (COCO)."""
    dataset = build_detection_dataset(cfg.data, "test", check_files=False)
    evaluator = build_evaluator(dataset, coco_backend=cfg.test.coco_backend)
    evaluator.load_results(results, source)
    return evaluator.evaluate(), evaluator

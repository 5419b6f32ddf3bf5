"""Detection evaluation: COCO (pycocotools, or faster-coco-eval with the same numbers:
`test.coco_backend`) and devkit-exact VOC metrics, plus results-file scoring; detections are kept
and exchanged as compact arrays (`Detections`)."""

from resdet.evaluation.base import DetectionEvaluator
from resdet.evaluation.build import build_evaluator, evaluate_detections, read_results
from resdet.evaluation.coco_evaluator import COCOEvaluator
from resdet.evaluation.detections import Detections
from resdet.evaluation.voc_evaluator import VOCEvaluator

__all__ = [
    "DetectionEvaluator",
    "COCOEvaluator",
    "Detections",
    "VOCEvaluator",
    "build_evaluator",
    "evaluate_detections",
    "read_results",
]

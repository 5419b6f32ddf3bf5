"""Detection evaluation: COCO (pycocotools) and devkit-exact VOC metrics, plus
results-file scoring."""

from resdet.evaluation.base import DetectionEvaluator
from resdet.evaluation.build import build_evaluator, evaluate_detections, read_results
from resdet.evaluation.coco_evaluator import COCOEvaluator
from resdet.evaluation.voc_evaluator import VOCEvaluator

__all__ = [
    "DetectionEvaluator",
    "COCOEvaluator",
    "VOCEvaluator",
    "build_evaluator",
    "evaluate_detections",
    "read_results",
]

"""The headline-metric rule lives on the evaluators: each names its mean AP at IoU 0.5 (and its
other summary metrics) as its `evaluate` reports them, and `headline_metric` reads the right name
off a plain metrics dict."""

from __future__ import annotations

import pytest

from resdet.evaluation import COCOEvaluator, VOCEvaluator
from resdet.evaluation.base import evaluator_class, headline_metric
from resdet.evaluation.inference import headline


@pytest.mark.parametrize("evaluator", [COCOEvaluator, VOCEvaluator])
def test_names_are_among_what_evaluate_reports(evaluator):
    for name in ("AP50", "AP", "AP75"):
        assert evaluator.metric_name(name) in evaluator.SUMMARY_KEYS


def test_headline_of_a_metrics_dict():
    voc = {"mAP50_voc07": 0.6, "mAP50": 0.5, "mAP": 0.3, "mAP75": 0.2, "AP50/cell": 0.5}
    coco = {"AP": 0.3, "AP50": 0.5, "AP75": 0.25, "AP50/cell": 0.5}
    assert evaluator_class(voc) is VOCEvaluator and evaluator_class(coco) is COCOEvaluator
    assert [headline_metric(voc, n) for n in ("AP50", "AP", "AP75", "AP50_voc07")] == [
        "mAP50",
        "mAP",
        "mAP75",
        "mAP50_voc07",
    ]
    assert [headline_metric(coco, n) for n in ("AP50", "AP", "AP75")] == ["AP50", "AP", "AP75"]
    assert headline_metric({}) == "AP50"  # no evaluator's headline: COCO's names
    assert headline(voc) == headline(coco) == "mAP@0.5 50.0, mAP@[.5:.95] 30.0"
    assert headline({"mAP50": 0.5, "mAP": float("nan")}) == "mAP@0.5 50.0"

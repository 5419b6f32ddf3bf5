"""resdet.benchmarks.accuracy: ours and torchvision's detector both train through our engine, and
the table and verdict over their runs."""

from pathlib import Path

import pytest

from resdet.benchmarks.accuracy import accuracy_table, compare_accuracy, verdict
from resdet.runs.trained import TrainedRun
from tests.tools.tiny_runs import NARROW_HEADS, SHORT_SCHEDULE, input_size, shapes

ROOT = Path(__file__).parents[2]
BCCD = ROOT / "configs" / "frcnn_r18_fpn_bccd.yaml"


def test_both_train_through_the_engine(tmp_path, capsys):
    overrides = [
        *NARROW_HEADS,
        *SHORT_SCHEDULE,
        *input_size(64),
        "model.backbone.weights=null",
        "model.backbone.norm=BN",
        "model.backbone.freeze_at=0",
        "solver.max_iter=3",
        "solver.checkpoint_period=3",
        "solver.log_period=1",
        shapes("train", 6, 0),
        shapes("val", 4, 0),
        "data.root=null",
        "test.best_metric=AP50",
    ]
    runs = compare_accuracy(str(BCCD), overrides, seeds=[0], root=tmp_path, progress=False)
    assert [r.label for r in runs] == ["ours", "torchvision"]
    for r in runs:
        assert 0.0 <= r.metrics["AP50"] <= 1.0 and r.seconds > 0
        assert (tmp_path / f"{r.label}_seed0" / "model_final.pth").is_file()
    # a finished run is read back, not trained again
    again = compare_accuracy(str(BCCD), overrides, seeds=[0], root=tmp_path, progress=False)
    assert again == runs
    assert capsys.readouterr().out.count("already trained") == 2


def _run(impl: str, seed: int, ap50: float, minutes: float) -> TrainedRun:
    return TrainedRun(impl, seed, {"mAP50": ap50, "AP50/cell": ap50}, 60 * minutes, "")


def test_verdict_against_the_reference_spread():
    runs = [_run("ours", 0, 0.80, 10), _run("torchvision", 0, 0.83, 12)]
    runs += [_run("ours", 1, 0.78, 10), _run("torchvision", 1, 0.79, 12)]
    v = verdict(runs, "mAP50")
    # ours 0.79 vs torchvision 0.81 with spread 0.04: within it
    assert v["ours_mean"] == pytest.approx(0.79) and v["torchvision_spread"] == pytest.approx(0.04)
    assert v["ours_no_worse"] and v["time_ratio"] == pytest.approx(10 / 12)
    runs[2] = _run("ours", 1, 0.70, 10)  # mean 0.75 < 0.81 - 0.04
    assert not verdict(runs, "mAP50")["ours_no_worse"]
    table = accuracy_table(runs).splitlines()
    assert table[0].split() == [
        "ours", "s0", "torchvision", "s0", "ours", "s1", "torchvision", "s1",
        "ours", "mean", "ours", "spread", "torchvision", "mean", "torchvision", "spread",
        "ours-tv",
    ]  # fmt: skip
    assert table[1].split() == ["mAP50", "80.0", "83.0", "70.0", "79.0", "75.0", "10.0", "81.0",
                                "4.0", "-6.0"]  # fmt: skip


def test_table_rows_under_either_evaluators_names():
    voc = {"mAP50_voc07": 0.6, "mAP50": 0.5, "mAP": 0.3, "mAP75": 0.2, "AP50/cell": 0.5}
    coco = {"AP": 0.3, "AP50": 0.5, "AP75": 0.25, "APs": 0.1, "AP50/cell": 0.5}
    for metrics, rows in (
        (voc, ["mAP50_voc07", "mAP50", "mAP", "AP50/cell", "minutes"]),
        (coco, ["AP50", "AP", "AP75", "AP50/cell", "minutes"]),
    ):
        runs = [TrainedRun(impl, 0, metrics, 60.0, "") for impl in ("ours", "torchvision")]
        assert [line.split()[0] for line in accuracy_table(runs).splitlines()[1:]] == rows

"""`resdet.io.run_dir`: one layout for eval/metrics.json whoever writes it, the files written
before it still read (by the curve tools too), the metrics log and the checkpoint pointer."""

import json
import warnings

import pytest

from resdet.io.run_dir import (
    Evaluation,
    read_evaluation,
    read_last_checkpoint,
    read_metrics_log,
    reset_metrics_log,
    trained_checkpoint,
    write_evaluation,
    write_last_checkpoint,
)
from resdet.reports.curves import read_run

#: what tools/eval_det.py wrote before the one layout: the evaluator's result itself
OLD_EVAL_DET = {"AP": 0.5, "AP50": 0.75, "per_class": {"circle": {"AP": 0.4, "AP50": None}}}


def test_every_writer_uses_one_layout(tmp_path):
    nested = {
        "AP": 0.5,
        "AP50": float("nan"),
        "per_class": {"circle": {"AP": 0.4, "AP50": 0.6}},
        "note": "x",
    }
    path = write_evaluation(tmp_path / "a", nested, iteration=7)
    assert json.loads(path.read_text()) == {
        "iteration": 7,
        "metrics": {"AP": 0.5, "AP50": None, "AP/circle": 0.4, "AP50/circle": 0.6},
    }
    write_evaluation(tmp_path / "b", {"top1": 90.0}, checkpoint=tmp_path / "model_final.pth")
    assert json.loads((tmp_path / "b" / "metrics.json").read_text()) == {
        "checkpoint": str(tmp_path / "model_final.pth"),
        "metrics": {"top1": 90.0},
    }
    assert read_evaluation(tmp_path / "a") == Evaluation(
        {"AP": 0.5, "AP50": None, "AP/circle": 0.4, "AP50/circle": 0.6}, iteration=7
    )
    assert read_evaluation(tmp_path / "b").checkpoint == str(tmp_path / "model_final.pth")
    assert read_evaluation(tmp_path / "missing") is None


def test_old_eval_det_layout_is_read_and_the_curve_tool_accepts_it(tmp_path):
    run = tmp_path / "run"
    (run / "eval").mkdir(parents=True)
    (run / "eval" / "metrics.json").write_text(json.dumps(OLD_EVAL_DET))
    (run / "metrics.jsonl").write_text(json.dumps({"iteration": 10, "total_loss": 1.5}) + "\n")
    old = read_evaluation(run / "eval")
    assert old.iteration is None and old.checkpoint is None
    assert old.metrics == {"AP": 0.5, "AP50": 0.75, "AP/circle": 0.4}
    curves = read_run(run)  # an evaluation without an iteration has no place on the curve
    assert set(curves.series) == {"total_loss"} and curves.label == "run"


def test_metrics_log_reader_and_resume_truncation(tmp_path):
    lines = [{"iteration": i, "loss": float(i)} for i in (1, 2, 3)]
    text = "".join(json.dumps(x) + "\n" for x in lines) + '{"iteration": 4, "lo'
    (tmp_path / "metrics.jsonl").write_text(text)
    with pytest.warns(UserWarning, match=r"metrics.jsonl:4: skipping an incomplete last line"):
        assert read_metrics_log(tmp_path) == lines
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reset_metrics_log(tmp_path, 2)  # a run resumed at iteration 2 keeps what came before
    assert read_metrics_log(tmp_path) == lines[:2]
    reset_metrics_log(tmp_path, 0)
    assert not (tmp_path / "metrics.jsonl").exists()


def test_checkpoint_pointer(tmp_path):
    assert read_last_checkpoint(tmp_path) is None
    with pytest.raises(FileNotFoundError, match="no model_final.pth or last_checkpoint"):
        trained_checkpoint(tmp_path)
    (tmp_path / "model_0000002.pth").write_bytes(b"x")
    write_last_checkpoint(tmp_path, "model_0000002.pth")
    periodic = tmp_path / "model_0000002.pth"
    assert read_last_checkpoint(tmp_path) == trained_checkpoint(tmp_path) == periodic
    (tmp_path / "model_final.pth").write_bytes(b"x")
    assert trained_checkpoint(tmp_path) == tmp_path / "model_final.pth"
    write_last_checkpoint(tmp_path, "gone.pth")
    with pytest.raises(FileNotFoundError, match="names 'gone.pth'"):
        read_last_checkpoint(tmp_path)

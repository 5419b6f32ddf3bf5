"""Periodic and final evaluation: eval/metrics.json, metrics.jsonl entries, the best model kept."""

import json

import torch
from engine_toy import make_trainer

from resdet.config.solver import SolverConfig
from resdet.config.solver import (
    TestConfig as EvalConfig,
)  # not "Test*": pytest would try to collect it
from resdet.io.checkpoints import load_checkpoint_file
from resdet.utils.seed import seed_all


def test_periodic_eval_keeps_best_model(tmp_path):
    scores = iter([0.3, 0.9, 0.5, 0.7])  # evaluations at iterations 2, 4, 6 and the final one at 8
    seen = []

    def evaluate():
        seen.append((trainer.iteration, trainer.model.training))
        snap[trainer.iteration] = {k: v.clone() for k, v in trainer.model.state_dict().items()}
        return {"AP": next(scores) * 100, "AP50": 1.0}

    snap = {}
    seed_all(0)
    solver = SolverConfig(
        max_iter=8, base_lr=0.05, ims_per_batch=4, checkpoint_period=100, log_period=4
    )
    trainer = make_trainer(tmp_path, solver, evaluate_fn=evaluate, test=EvalConfig(eval_period=2))
    final = trainer.train()

    assert seen == [(2, False), (4, False), (6, False), (8, False)] and trainer.model.training
    assert final == {"AP": 70.0, "AP50": 1.0}
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text()) == {
        "iteration": 8,
        "metrics": final,
    }
    assert json.loads((tmp_path / "best_metric.json").read_text()) == {
        "metric": "AP",
        "value": 90.0,
        "iteration": 4,
    }
    best = load_checkpoint_file(tmp_path / "model_best.pth")
    assert best["iteration"] == 4
    for k, v in snap[4].items():
        assert torch.equal(best["model"][k], v), k
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in rows if "eval/AP" in r] == [2, 4, 6, 8]
    train_rows = [r for r in rows if "total_loss" in r]
    assert [r["iteration"] for r in train_rows] == [4, 8]
    assert {"loss_cls", "loss_box", "total_loss", "lr", "time", "data_time", "max_mem_mb"} <= set(
        train_rows[0]
    )
    assert load_checkpoint_file(tmp_path / "model_final.pth")["best"]["value"] == 90.0


def test_best_metric_by_name_and_min_mode(tmp_path):
    values = iter([5.0, 3.0, 4.0])
    seed_all(0)
    solver = SolverConfig(max_iter=3, base_lr=0.05, ims_per_batch=4)
    trainer = make_trainer(
        tmp_path,
        solver,
        evaluate_fn=lambda: {"AP": 1.0, "err": next(values)},
        test=EvalConfig(eval_period=1, best_metric="err", best_mode="min"),
    )
    trainer.train()
    assert json.loads((tmp_path / "best_metric.json").read_text())["iteration"] == 2

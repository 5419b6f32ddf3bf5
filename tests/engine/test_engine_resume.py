"""Exact resume: a run interrupted after iteration k and resumed equals an uninterrupted run."""

import json

import pytest
import torch
from engine_toy import ToyDetector, make_trainer

from resdet.config.solver import SolverConfig
from resdet.io.checkpoints import load_checkpoint_file
from resdet.utils.seed import seed_all

# warmup, a decay step after the resume point, momentum, weight decay, accumulation, BN, dropout
SOLVER = dict(
    max_iter=9,
    base_lr=0.05,
    ims_per_batch=4,
    grad_accum=2,
    steps=[6],
    warmup_iters=3,
    warmup_factor=0.1,
    checkpoint_period=4,
    log_period=1,
    weight_decay=1e-3,
)


def losses(path):
    return [
        (r["iteration"], r["loss_cls"], r["loss_box"], r["lr"])
        for r in map(json.loads, path.read_text().splitlines())
        if "loss_cls" in r
    ]


def test_interrupted_and_resumed_run_equals_uninterrupted(tmp_path):
    seed_all(0)
    ref = make_trainer(tmp_path / "ref", SolverConfig(**SOLVER), tensorboard=True)
    ref.train()

    # The same run crashes in iteration 6 (forward call 11 with grad_accum=2); its last checkpoint
    # is iteration 4.
    seed_all(0)
    crashed = make_trainer(
        tmp_path / "run",
        SolverConfig(**SOLVER),
        model=ToyDetector(fail_at=(11, "raise")),
        tensorboard=True,
    )
    with pytest.raises(RuntimeError, match="injected failure"):
        crashed.train()
    assert (tmp_path / "run" / "last_checkpoint").read_text().strip() == "model_0000004.pth"

    # A new process would start from other random states and other weights: the checkpoint must
    # restore them.
    seed_all(99)
    resumed = make_trainer(tmp_path / "run", SolverConfig(**SOLVER), tensorboard=True)
    assert resumed.resume_or_load(resume=True) and resumed.iteration == 4
    assert resumed.batches_consumed == 8  # 4 iterations x 2 accumulation steps
    resumed.train()

    a, b = ref.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    for pa, pb in zip(ref.optimizer.state.values(), resumed.optimizer.state.values()):
        assert torch.equal(pa["momentum_buffer"], pb["momentum_buffer"])
    assert ref.scheduler.get_last_lr() == resumed.scheduler.get_last_lr()
    # per-iteration losses and lr identical too, i.e. same data order and augmentation; the crashed
    # run's lines after iteration 4 were dropped, so the log reads as one run
    assert losses(tmp_path / "ref" / "metrics.jsonl") == losses(tmp_path / "run" / "metrics.jsonl")
    assert [r[0] for r in losses(tmp_path / "run" / "metrics.jsonl")] == list(range(1, 10))
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    lr = [r[3] for r in losses(tmp_path / "ref" / "metrics.jsonl")]
    for run in ("ref", "run"):  # the resumed run's TensorBoard purges the crashed run's later steps
        events = EventAccumulator(str(tmp_path / run)).Reload()
        assert [e.step for e in events.Scalars("total_loss")] == list(range(1, 10))
        assert [e.value for e in events.Scalars("lr")] == pytest.approx(lr)


def test_checkpoint_format_loads_weights_only(tmp_path):
    seed_all(0)
    t = make_trainer(
        tmp_path, SolverConfig(max_iter=3, base_lr=0.05, ims_per_batch=4, checkpoint_period=2)
    )
    t.train()
    ck = torch.load(tmp_path / "model_0000002.pth", weights_only=True)
    assert ck["format"] == "resdet" and ck["kind"] == "detector" and ck["iteration"] == 2
    assert set(ck["rng"]) == {"python", "numpy", "torch", "cuda"}
    assert ck["sampler"] == {"position": 2}
    assert {"model", "optimizer", "scheduler", "scaler", "config", "pixel_format"} <= set(ck)
    assert load_checkpoint_file(tmp_path / "model_final.pth")["iteration"] == 3
    torch.save({"format": "resdet", "obj": object()}, tmp_path / "unsafe.pth")
    with pytest.raises(ValueError, match="unsafe unpickling"):
        load_checkpoint_file(tmp_path / "unsafe.pth")

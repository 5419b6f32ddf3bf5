"""Failures leave the last good checkpoint usable: a NaN loss, non-finite gradients (skipped,
counted, too many in a row stop the run), a non-finite state (never written), a crash while writing
a checkpoint, SIGINT/SIGTERM (a checkpoint, then `TrainingInterrupted`)."""

import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from engine_toy import ToyDetector, make_trainer

from resdet.config.solver import SolverConfig
from resdet.engine import NonFiniteStateError, NonFiniteStepsError, TrainingInterrupted
from resdet.io.checkpoints import Checkpointer, NonFiniteCheckpointError, load_checkpoint_file
from resdet.utils.seed import seed_all

#: a checkpoint after every iteration, all kept
EVERY_ITERATION = dict(
    base_lr=0.05, ims_per_batch=4, checkpoint_period=1, log_period=1, keep_last=0
)


def log(run_dir: Path) -> dict[int, dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return {r["iteration"]: r for r in map(json.loads, lines)}


def ckpt(run_dir: Path, iteration: int) -> dict:
    return load_checkpoint_file(run_dir / f"model_{iteration:07d}.pth")


def same_tensors(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_nan_loss_stops_with_message_and_nonzero_exit(tmp_path):
    # the script injects a NaN loss_box in iteration 5, checkpoints every 2 iterations
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("engine_toy.py")), "nan", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stderr
    m = re.search(
        r"non-finite loss at iteration (\d+): loss_cls=(\S+), loss_box=(\S+), total_loss=(\S+);",
        proc.stderr,
    )
    assert m, proc.stderr
    assert m.group(1) == "5" and m.group(3) == "nan" and m.group(4) == "nan"
    assert 0 < float(m.group(2)) < 10  # the finite loss is reported with its value
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000004.pth\n"
    ck = load_checkpoint_file(tmp_path / "model_0000004.pth")
    assert ck["iteration"] == 4 and all(torch.isfinite(v).all() for v in ck["model"].values())
    assert not (tmp_path / "model_final.pth").exists()


def test_crash_while_writing_checkpoint_keeps_previous(tmp_path, monkeypatch):
    seed_all(0)
    trainer = make_trainer(
        tmp_path, SolverConfig(max_iter=6, base_lr=0.05, ims_per_batch=4, checkpoint_period=2)
    )
    real_save = torch.save
    calls = []

    def broken_save(obj, f, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # the checkpoint of iteration 4: half a file, then the disk "fails"
            f.write(b"PK\x03\x04 partial")
            raise OSError("disk full (simulated)")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="simulated"):
        trainer.train()
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "last_checkpoint",
        "metrics.jsonl",
        "model_0000002.pth",
    ]
    assert Checkpointer(tmp_path).last() == tmp_path / "model_0000002.pth"
    assert load_checkpoint_file(tmp_path / "model_0000002.pth")["iteration"] == 2


def test_keep_last_k(tmp_path):
    seed_all(0)
    solver = SolverConfig(
        max_iter=11, base_lr=0.05, ims_per_batch=4, checkpoint_period=2, keep_last=2
    )
    make_trainer(tmp_path, solver).train()
    assert sorted(p.name for p in tmp_path.glob("*.pth")) == [
        "model_0000008.pth",
        "model_0000010.pth",
        "model_final.pth",
    ]
    assert (tmp_path / "last_checkpoint").read_text() == "model_final.pth\n"


def test_checkpointer_keep_last_and_bad_pointer(tmp_path):
    ck = Checkpointer(tmp_path, keep_last=1)
    for it in (5, 10, 15):
        ck.save(f"model_{it:07d}.pth", {"format": "resdet", "iteration": it})
    assert [p.name for p in ck.periodic()] == ["model_0000015.pth"]
    keep_all = Checkpointer(tmp_path / "all", keep_last=0)
    for it in (1, 2, 3):
        keep_all.save(f"model_{it:07d}.pth", {"format": "resdet", "iteration": it})
    assert len(keep_all.periodic()) == 3
    (tmp_path / "last_checkpoint").write_text("model_0000099.pth\n")
    with pytest.raises(FileNotFoundError, match="model_0000099.pth"):
        ck.last()


def test_nonfinite_gradients_skip_the_step_and_are_counted(tmp_path):
    seed_all(0)
    model = ToyDetector(faults={3: "inf_grad", 5: "inf_grad"})  # finite losses, inf gradients
    solver = SolverConfig(max_iter=7, max_nonfinite_steps=2, **EVERY_ITERATION)
    make_trainer(tmp_path, solver, model=model).train()  # two skips, never two in a row: finishes
    records = log(tmp_path)
    assert [records[i]["skipped_steps"] for i in range(1, 8)] == [0, 0, 1, 1, 2, 2, 2]
    assert all(r["total_loss"] is not None for r in records.values())
    names = [n for n, _ in ToyDetector().named_parameters()]  # (BN statistics do move)
    for skipped in (3, 5):  # no update: parameters and momentum stay; schedule and data move on
        before, after = ckpt(tmp_path, skipped - 1), ckpt(tmp_path, skipped)
        assert all(torch.equal(before["model"][n], after["model"][n]) for n in names)
        assert before["optimizer"]["state"].keys() == after["optimizer"]["state"].keys()
        for k, v in before["optimizer"]["state"].items():
            assert torch.equal(
                v["momentum_buffer"], after["optimizer"]["state"][k]["momentum_buffer"]
            )
        assert after["scheduler"]["last_epoch"] == before["scheduler"]["last_epoch"] + 1
        assert after["sampler"]["position"] == before["sampler"]["position"] + 1
        assert after["nonfinite"] == {"skipped_steps": skipped // 2, "in_a_row": 1}
    assert not same_tensors(ckpt(tmp_path, 3)["model"], ckpt(tmp_path, 4)["model"])
    final = load_checkpoint_file(tmp_path / "model_final.pth")
    assert final["iteration"] == 7 and final["nonfinite"]["skipped_steps"] == 2
    assert all(torch.isfinite(v).all() for v in final["model"].values())


def test_too_many_nonfinite_steps_in_a_row_stop_naming_the_last_good_checkpoint(tmp_path, capsys):
    seed_all(0)
    model = ToyDetector(faults={i: "inf_grad" for i in (3, 4, 5, 6)})
    solver = SolverConfig(max_iter=9, max_nonfinite_steps=3, **{**EVERY_ITERATION, "keep_last": 2})
    with pytest.raises(NonFiniteStepsError) as e:
        make_trainer(tmp_path, solver, model=model).train()
    message = str(e.value)
    assert "\n" not in message
    assert "non-finite gradients in 3 steps in a row (iterations 3-5" in message
    assert (
        f"training stopped at iteration 5; last good checkpoint: {tmp_path / 'model_0000004.pth'}"
        in message
    )
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000004.pth\n"
    assert log(tmp_path)[5]["skipped_steps"] == 3  # the stopping step is logged
    assert "warning: iteration 3: non-finite gradients (first in conv." in capsys.readouterr().err
    for p in tmp_path.glob("*.pth"):
        assert all(torch.isfinite(v).all() for v in load_checkpoint_file(p)["model"].values())


def test_a_nonfinite_state_is_never_checkpointed(tmp_path):
    seed_all(0)
    model = ToyDetector(faults={3: "nan_stat"})  # a NaN running mean: losses and gradients finite
    solver = SolverConfig(max_iter=6, **{**EVERY_ITERATION, "checkpoint_period": 2})
    with pytest.raises(NonFiniteStateError) as e:
        make_trainer(tmp_path, solver, model=model).train()
    assert str(e.value) == (
        "the training state after iteration 4 holds non-finite values (model.norm.running_mean): "
        f"{tmp_path / 'model_0000004.pth'} not written; training stopped at iteration 4; last "
        f"good checkpoint: {tmp_path / 'model_0000002.pth'}"
    )
    assert sorted(p.name for p in tmp_path.glob("*.pth")) == ["model_0000002.pth"]
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000002.pth\n"


def test_checkpointer_refuses_nonfinite_tensors_anywhere(tmp_path):
    ck = Checkpointer(tmp_path)
    ck.save("model_0000001.pth", {"format": "resdet", "model": {"w": torch.ones(2)}})
    bad = {
        "format": "resdet",
        "model": {"w": torch.ones(2)},
        "optimizer": {"state": {0: {"momentum_buffer": torch.tensor([1.0, float("inf")])}}},
    }
    with pytest.raises(NonFiniteCheckpointError, match=r"optimizer\.state\.0\.momentum_buffer"):
        ck.save("model_0000002.pth", bad)
    assert not (tmp_path / "model_0000002.pth").exists()
    assert ck.last() == tmp_path / "model_0000001.pth"
    assert not list(tmp_path.glob("*.tmp*"))


@pytest.mark.parametrize("fault,signum", [("sigint", signal.SIGINT), ("sigterm", signal.SIGTERM)])
def test_a_stop_signal_checkpoints_the_iteration_and_resume_is_exact(tmp_path, fault, signum):
    solver = dict(max_iter=7, base_lr=0.05, ims_per_batch=4, checkpoint_period=5, log_period=1)
    seed_all(0)
    ref = make_trainer(tmp_path / "ref", SolverConfig(**solver))
    ref.train()

    seed_all(0)
    before = signal.getsignal(signum)
    run = make_trainer(
        tmp_path / "run", SolverConfig(**solver), model=ToyDetector(faults={3: fault})
    )
    with pytest.raises(TrainingInterrupted) as e:  # the signal comes during iteration 3's forward
        run.train()
    assert signal.getsignal(signum) is before  # the trainer's handler was only for its loop
    assert e.value.exit_code == 128 + signum and e.value.iteration == 3
    assert str(e.value) == (
        f"interrupted at iteration 3: checkpoint {tmp_path / 'run' / 'model_0000003.pth'}; "
        "--resume continues"
    )
    assert (tmp_path / "run" / "last_checkpoint").read_text() == "model_0000003.pth\n"

    seed_all(99)
    resumed = make_trainer(tmp_path / "run", SolverConfig(**solver))
    assert resumed.resume_or_load() and resumed.iteration == 3
    resumed.train()
    assert same_tensors(ref.model.state_dict(), resumed.model.state_dict())

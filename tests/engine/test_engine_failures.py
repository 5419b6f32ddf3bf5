"""Failures leave the last good checkpoint usable:
a NaN loss, a crash while writing a checkpoint."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from engine_toy import make_trainer

from resdet.config.solver import SolverConfig
from resdet.io.checkpoints import Checkpointer, load_checkpoint_file
from resdet.utils.seed import seed_all


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

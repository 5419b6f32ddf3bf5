"""Training faults lose nothing (README "Reliability"), through tools/train_det.py on a tiny shapes
run: non-finite steps never reach a checkpoint, a resumed run equals an uninterrupted one for any
`data.num_workers` (flips on), SIGTERM writes a checkpoint and `--resume` continues bit for bit."""

from __future__ import annotations

import itertools
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from resdet.data.samplers import GroupedBatchSampler, SeededBatchSampler, SeededItems
from resdet.io.checkpoints import load_checkpoint_file
from tools import train_det

ROOT = Path(__file__).resolve().parents[2]
CONFIG = "configs/demo_shapes.yaml"
N = 4  # iterations of a full run; the copied-checkpoint resumes start at N // 2

#: the demo shrunk to seconds (as tests/tools/tiny_runs.py): 64-px shapes seen at 32 px, narrow
#: heads, batch 2, constant lr, no evaluation, a random-init backbone; flips on (data.flip_prob 0.5)
TINY = [
    "data.train=[{format: shapes, split: train, num_images: 6, image_size: 64, seed: 3}]",
    "data.test=[]",
    "model.input.min_size_train=[32]",
    "model.input.max_size_train=32",
    "model.fpn.out_channels=16",
    "model.roi_heads.fc_dim=32",
    "model.rpn.batch_size_per_image=32",
    "model.roi_heads.batch_size_per_image=32",
    "model.backbone.weights=null",
    "model.backbone.norm=BN",
    "model.backbone.freeze_at=1",
    "solver.ims_per_batch=2",
    "solver.steps=[]",
    "solver.warmup_iters=0",
    "solver.base_lr=0.01",
    "solver.log_period=1",
    "test.eval_period=0",
]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """$RESDET_CACHE shared by the module (the shapes set is generated once), cwd the checkout."""
    cache = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RESDET_CACHE", str(cache))
        mp.chdir(ROOT)
        yield {**os.environ, "RESDET_CACHE": str(cache)}


def train(out: Path, *extra: str) -> None:
    """tools/train_det.py in this process (a finished run returns 0)."""
    assert train_det.main([CONFIG, "--no-progress", "--output-dir", str(out), *TINY, *extra]) == 0


@pytest.fixture(scope="module")
def uninterrupted(env, tmp_path_factory):
    """`workers -> output dir` of a full N-iteration run (checkpoint at N // 2), made on demand."""
    runs: dict[int, Path] = {}

    def get(workers: int) -> Path:
        if workers not in runs:
            out = tmp_path_factory.mktemp(f"full{workers}")
            train(
                out,
                f"solver.max_iter={N}",
                f"solver.checkpoint_period={N // 2}",
                f"data.num_workers={workers}",
            )
            runs[workers] = out
        return runs[workers]

    return get


def weights(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint_file(path)["model"]


def assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    different = [k for k in wa if not torch.equal(wa[k], wb[k])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"


def losses(run: Path, first: int) -> list[tuple[int, float]]:
    records = map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
    return [(r["iteration"], r["total_loss"]) for r in records if r["iteration"] >= first]


def all_finite(path: Path) -> bool:
    ckpt = load_checkpoint_file(path)
    tensors = list(ckpt["model"].values()) + [
        v for s in ckpt["optimizer"]["state"].values() for v in s.values() if torch.is_tensor(v)
    ]
    return all(torch.isfinite(t).all() for t in tensors if t.is_floating_point())


def test_sample_seeds_depend_only_on_the_run_seed_and_the_position():
    groups = [0, 1, 1] * 8

    def batches(start: int, n: int, rank: int = 0, world_size: int = 1) -> list:
        sampler = GroupedBatchSampler(
            groups, 4, seed=5, rank=rank, world_size=world_size, start_iter=start
        )
        return list(itertools.islice(SeededBatchSampler(sampler), n))

    single = batches(0, 6)
    assert batches(3, 3) == single[3:]  # resumed
    ranks = [batches(0, 6, r, 2) for r in (0, 1)]
    assert [a + b for a, b in zip(*ranks)] == single  # two processes
    assert len({k.seed for b in single for k in b}) == 24

    class Draws:  # an item drawn from python's, numpy's and torch's global generators
        def __getitem__(self, index: int) -> tuple:
            return index, random.random(), float(np.random.rand()), float(torch.rand(()))

    items, key = SeededItems(Draws()), single[2][1]
    state = torch.get_rng_state()
    assert items[key] == items[key] != items[single[2][0]]
    assert torch.equal(torch.get_rng_state(), state)  # the caller's generators are left alone


@pytest.mark.parametrize("workers", [0, 1, 2])
def test_resume_is_exact_for_any_number_of_workers(workers, uninterrupted, tmp_path):
    full = uninterrupted(workers)
    half = N // 2
    # a run stopped after its checkpoint at N/2: that file and the pointer, in a fresh directory
    name = f"model_{half:07d}.pth"
    shutil.copy(full / name, tmp_path / name)
    (tmp_path / "last_checkpoint").write_text(name + "\n")
    train(
        tmp_path,
        f"solver.max_iter={N}",
        f"solver.checkpoint_period={half}",
        f"data.num_workers={workers}",
        "--resume",
    )
    assert load_checkpoint_file(tmp_path / "model_final.pth")["iteration"] == N
    assert losses(tmp_path, half + 1) == losses(full, half + 1)  # same images, same flips
    assert_same_weights(tmp_path / "model_final.pth", full / "model_final.pth")


def test_nonfinite_steps_never_reach_a_checkpoint(env, tmp_path):
    # the run: at lr 1e6 the loss or the gradients overflow within a few iterations
    proc = subprocess.run(
        [
            sys.executable,
            "tools/train_det.py",
            CONFIG,
            "--no-progress",
            "--output-dir",
            str(tmp_path),
            *TINY,
            "solver.max_iter=8",
            "solver.base_lr=1000000.0",
            "solver.checkpoint_period=1",
            "solver.keep_last=0",
            "data.num_workers=0",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=ROOT,
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    m = re.fullmatch(
        r"train_det: error: non-finite (?:loss|gradients) .*?at iteration (\d+)\b.*"
        r"last good checkpoint: (\S+?)(?: \(.*\))?",
        last,
    )
    assert m, proc.stderr
    stopped, named = int(m.group(1)), Path(m.group(2))
    pointed = tmp_path / (tmp_path / "last_checkpoint").read_text().strip()
    assert named == pointed and named.is_file()
    assert load_checkpoint_file(named)["iteration"] < stopped
    checkpoints = sorted(tmp_path.glob("*.pth"))
    assert checkpoints and all(all_finite(p) for p in checkpoints)
    assert not (tmp_path / "model_final.pth").exists()
    logged = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert all("skipped_steps" in r for r in logged)


def test_sigterm_checkpoints_and_resume_equals_the_uninterrupted_run(env, uninterrupted, tmp_path):
    full = uninterrupted(1)  # the demo's one data worker
    run = tmp_path / "run"
    proc = subprocess.Popen(
        [
            sys.executable,
            "tools/train_det.py",
            CONFIG,
            "--no-progress",
            "--output-dir",
            str(run),
            *TINY,
            f"solver.max_iter={N}",
            f"solver.checkpoint_period={N // 2}",
            "data.num_workers=1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    log = run / "metrics.jsonl"
    deadline = time.monotonic() + 240
    while not (log.is_file() and log.read_text().strip()):  # the first iteration is done
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=240)
    assert proc.returncode == 143, stderr
    assert "Traceback" not in stderr
    m = re.fullmatch(
        r"train_det: interrupted at iteration (\d+): checkpoint (\S+); --resume continues",
        stderr.strip().splitlines()[-1],
    )
    assert m, stderr
    stopped, saved = int(m.group(1)), Path(m.group(2))
    assert 1 <= stopped < N, "the run ended before the signal: make it longer"
    assert saved == run / f"model_{stopped:07d}.pth"
    assert (run / "last_checkpoint").read_text() == saved.name + "\n"
    assert load_checkpoint_file(saved)["iteration"] == stopped
    assert not (run / "model_final.pth").exists()

    train(
        run,
        f"solver.max_iter={N}",
        f"solver.checkpoint_period={N // 2}",
        "data.num_workers=1",
        "--resume",
    )
    assert losses(run, 1) == losses(full, 1)
    assert_same_weights(run / "model_final.pth", full / "model_final.pth")

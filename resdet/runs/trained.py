"""One finished training run, recorded in its output directory so that a benchmark made of many runs
(`resdet.benchmarks.accuracy`, `resdet.benchmarks.transfer`) resumes where it stopped: a run whose
record is there is read back, not trained again.

    run = train_or_reuse(config, overrides, out, label="ours", seed=0)   # -> TrainedRun

The record is the run directory's `trained_run.json` (`resdet.io.run_dir`), written after the
final evaluation.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from torch import nn

from resdet.build import build_model
from resdet.config import Config, load_config
from resdet.io.run_dir import read_trained_run, write_trained_run
from resdet.runs.detection import check_weights_present, load_datasets, train_detector


@dataclass
class TrainedRun:
    """A run's final evaluation (flat metrics: `mAP50`, `AP50/<class>`, ...), its wall time in
    seconds (training and evaluation), and what it was: `label` (an implementation or a weight
    source), `seed`, `output_dir`."""

    label: str
    seed: int
    metrics: dict[str, float]
    seconds: float
    output_dir: str


def train_or_reuse(
    config: str,
    overrides: list[str],
    out: Path,
    *,
    label: str,
    seed: int,
    model_fn: Callable[[Config, int], nn.Module] = build_model,
    progress: bool = True,
) -> TrainedRun:
    """Train `config` with `overrides`, `seed` and `output_dir=out` through `train_detector`,
    unless `out` already holds the record of that run; the record either way."""
    record = read_trained_run(out)
    if record is not None:
        print(f"[{label} seed {seed}] already trained ({out})", flush=True)
        return TrainedRun(**record)
    cfg = load_config(config, [*overrides, f"seed={seed}", f"output_dir={out}"])
    check_weights_present(cfg)
    print(f"[{label} seed {seed}] training -> {out}", flush=True)
    start = time.perf_counter()
    # resume: a benchmark killed mid-run continues that run where it stopped
    datasets = load_datasets(cfg)
    metrics = train_detector(cfg, datasets, resume=True, progress=progress, model_fn=model_fn)
    run = TrainedRun(label, seed, metrics, time.perf_counter() - start, str(out))
    write_trained_run(out, asdict(run))
    return run

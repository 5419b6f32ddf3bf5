"""Accuracy side by side: our detector and torchvision's, trained to one config through one engine.

    runs = compare_accuracy("configs/frcnn_r18_fpn_bccd.yaml", [], seeds=[0, 1], root=Path("out"))
    print(accuracy_table(runs))

For each seed, ours (`resdet.build_model`) and torchvision's
(`resdet.reference.torchvision_detector`) are trained by `resdet.detection_run.train_detector` with
the same config: the same data in the same order (the sampler and the augmentation draw from `seed`
only), the same optimizer, schedule and gradient clipping, the same backbone weights, and evaluated
by the same evaluator on the same test set. The runs alternate (ours, torchvision, ours, ...) so
that a change in machine load falls on both. Each run keeps its output directory
`<root>/<impl>_seed<k>/`; a run whose `accuracy_run.json` is there is not repeated, so an
interrupted comparison resumes where it stopped.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from resdet.build import build_model
from resdet.config import load_config
from resdet.detection_run import load_datasets, train_detector
from resdet.reference import torchvision_detector
from resdet.utils.atomic import atomic_write_text

IMPLEMENTATIONS = {"ours": build_model, "torchvision": torchvision_detector}
RESULT_FILE = "accuracy_run.json"


@dataclass
class AccuracyRun:
    """One training run's final evaluation (flat metrics, e.g. `mAP50`, `AP50/<class>`) and its
    wall time (training and evaluation, seconds)."""

    implementation: str
    seed: int
    metrics: dict[str, float]
    seconds: float
    output_dir: str


def compare_accuracy(
    config: str, overrides: list[str], *, seeds: list[int], root: Path, progress: bool = True
) -> list[AccuracyRun]:
    """Train both implementations once per seed (see the module docstring); the runs in order."""
    runs = []
    for seed in seeds:
        for impl, model_fn in IMPLEMENTATIONS.items():
            out = root / f"{impl}_seed{seed}"
            done = out / RESULT_FILE
            if done.is_file():
                run = AccuracyRun(**json.loads(done.read_text()))
                print(f"[accuracy] {impl} seed {seed}: already trained ({done})", flush=True)
                runs.append(run)
                continue
            cfg = load_config(config, [*overrides, f"seed={seed}", f"output_dir={out}"])
            print(f"[accuracy] training {impl} seed {seed} -> {out}", flush=True)
            start = time.perf_counter()
            metrics = train_detector(cfg, load_datasets(cfg), progress=progress, model_fn=model_fn)
            run = AccuracyRun(impl, seed, metrics, time.perf_counter() - start, str(out))
            atomic_write_text(done, json.dumps(asdict(run), indent=2))
            runs.append(run)
    return runs


def _metric_keys(runs: list[AccuracyRun]) -> list[str]:
    """The headline metrics first (VOC or COCO names, whichever the evaluator wrote), then the
    per-class AP50s in the evaluator's order."""
    first = runs[0].metrics
    head = [k for k in ("mAP50_voc07", "mAP50", "mAP", "AP50", "AP", "AP75") if k in first]
    per_class = [k for k in first if k.startswith("AP50/")]
    return head + per_class


def accuracy_table(runs: list[AccuracyRun]) -> str:
    """Every run's metrics (percent) and minutes, then per implementation the mean and the spread
    (max - min) over seeds, and ours - torchvision of the means."""
    keys = _metric_keys(runs)
    impls = [i for i in IMPLEMENTATIONS if any(r.implementation == i for r in runs)]
    cols = [
        (
            f"{r.implementation} s{r.seed}",
            [100 * r.metrics.get(k, math.nan) for k in keys] + [r.seconds / 60],
        )
        for r in runs
    ]
    means: dict[str, list[float]] = {}
    for impl in impls:
        mine = [c for (name, c) in cols if name.startswith(f"{impl} s")]
        means[impl] = [statistics.fmean(v) for v in zip(*mine)]
        cols.append((f"{impl} mean", means[impl]))
        cols.append((f"{impl} spread", [max(v) - min(v) for v in zip(*mine)]))
    if len(impls) == 2:
        cols.append(("ours-tv", [a - b for a, b in zip(means["ours"], means["torchvision"])]))
    rows = [["", *(name for name, _ in cols)]]
    for i, k in enumerate([*keys, "minutes"]):
        rows.append([k, *(f"{c[i]:.1f}" for _, c in cols)])
    widths = [max(len(r[j]) for r in rows) for j in range(len(rows[0]))]
    return "\n".join(
        "  ".join(c.ljust(w) if j == 0 else c.rjust(w) for j, (c, w) in enumerate(zip(r, widths)))
        for r in rows
    )


def verdict(runs: list[AccuracyRun], metric: str) -> dict[str, Any]:
    """Whether ours is no worse than torchvision on `metric` beyond torchvision's own seed spread:
    `{"metric", "ours_mean", "torchvision_mean", "torchvision_spread", "ours_no_worse",
    "time_ratio"}` (time ratio: ours / torchvision mean minutes)."""
    vals = {i: [r.metrics[metric] for r in runs if r.implementation == i] for i in IMPLEMENTATIONS}
    secs = {i: [r.seconds for r in runs if r.implementation == i] for i in IMPLEMENTATIONS}
    ours, tv = statistics.fmean(vals["ours"]), statistics.fmean(vals["torchvision"])
    spread = max(vals["torchvision"]) - min(vals["torchvision"])
    return {
        "metric": metric,
        "ours_mean": ours,
        "torchvision_mean": tv,
        "torchvision_spread": spread,
        "ours_no_worse": ours >= tv - spread,
        "time_ratio": statistics.fmean(secs["ours"]) / statistics.fmean(secs["torchvision"]),
    }

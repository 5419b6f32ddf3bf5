"""Accuracy side by side: our detector and torchvision's, trained to one config through one engine.

    runs = compare_accuracy("configs/frcnn_r18_fpn_bccd.yaml", [], seeds=[0, 1], root=Path("out"))
    print(accuracy_table(runs))

For each seed, ours (`resdet.build_model`) and torchvision's
(`resdet.benchmarks.torchvision_reference.torchvision_detector`) are trained by
`resdet.runs.detection.train_detector` with the same config: the same data in the same order (the
sampler and the augmentation draw from `seed` only), the same optimizer, schedule and gradient
clipping, the same backbone weights, and evaluated by the same evaluator on the same test set. The
runs alternate (ours, torchvision, ours, ...) so that a change in machine load falls on both. Each
run keeps its output directory `<root>/<impl>_seed<k>/`; a run whose record is there is not
repeated (`resdet.runs.trained`), so an interrupted comparison resumes where it stopped.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

from resdet.benchmarks.torchvision_reference import torchvision_detector
from resdet.build import build_model
from resdet.evaluation.base import headline_metric
from resdet.runs.trained import TrainedRun, train_or_reuse

IMPLEMENTATIONS = {"ours": build_model, "torchvision": torchvision_detector}


def compare_accuracy(
    config: str, overrides: list[str], *, seeds: list[int], root: Path, progress: bool = True
) -> list[TrainedRun]:
    """Train both implementations once per seed (see the module docstring); the runs in order,
    each labelled with its implementation."""
    return [
        train_or_reuse(
            config,
            overrides,
            root / f"{impl}_seed{seed}",
            label=impl,
            seed=seed,
            model_fn=model_fn,
            progress=progress,
        )
        for seed in seeds
        for impl, model_fn in IMPLEMENTATIONS.items()
    ]


def _metric_keys(runs: list[TrainedRun]) -> list[str]:
    """The headline metrics first (VOC or COCO names, whichever the evaluator wrote: VOC's 11-point
    AP50, mAP at 0.5 and at 0.5:0.95, and COCO's AP75), then the per-class AP50s in the evaluator's
    order."""
    first = runs[0].metrics
    named = [headline_metric(first, name) for name in ("AP50_voc07", "AP50", "AP")]
    head = [k for k in (*named, "AP75") if k in first]
    per_class = [k for k in first if k.startswith("AP50/")]
    return head + per_class


def accuracy_table(runs: list[TrainedRun]) -> str:
    """Every run's metrics (percent) and minutes, then per implementation the mean and the spread
    (max - min) over seeds, and ours - torchvision of the means."""
    keys = _metric_keys(runs)
    impls = [i for i in IMPLEMENTATIONS if any(r.label == i for r in runs)]
    cols = [
        (
            f"{r.label} s{r.seed}",
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


def verdict(runs: list[TrainedRun], metric: str) -> dict[str, Any]:
    """Whether ours is no worse than torchvision on `metric` beyond torchvision's own seed spread:
    `{"metric", "ours_mean", "torchvision_mean", "torchvision_spread", "ours_no_worse",
    "time_ratio"}` (time ratio: ours / torchvision mean minutes)."""
    vals = {i: [r.metrics[metric] for r in runs if r.label == i] for i in IMPLEMENTATIONS}
    secs = {i: [r.seconds for r in runs if r.label == i] for i in IMPLEMENTATIONS}
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

"""Curves of training runs, read from their output directories (`resdet.io.run_dir`), in two views.

`read_run` collects every numeric key of a run's `metrics.jsonl` (plus the last `eval/metrics.json`
when it has an iteration) as a series over iterations, with the run's kind (plain or residual, and
depth) from its `config.yaml`.
- `plot_curves`: one subplot per key, one line per run (tools/visualize.py curves).
- `plot_error_curves`: Fig. 6 of He et al. 2015, training error dashed and test error bold over
  iterations, plain nets left, residual nets right (tools/visualize.py fig6).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from resdet.io.run_dir import (
    eval_dir,
    metrics_log_path,
    read_config,
    read_evaluation,
    read_metrics_log,
)
from resdet.utils.figures import pyplot, save_figure

LOSS_KEYS = ("total_loss", "loss_rpn_cls", "loss_rpn_box", "loss_cls", "loss_box")
#: evaluation results as the trainer logs them (COCO: AP50/AP; VOC: mAP50_voc07/mAP50/mAP)
METRIC_KEYS = ("eval/AP50", "eval/AP", "eval/mAP50_voc07", "eval/mAP50", "eval/mAP")
#: the Fig. 6 series: training top-1 error of the logged steps, test top-1 error of the evaluations
TRAIN_ERROR, TEST_ERROR = "train_error", "eval/top1_err"

_EMPTY = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64))


@dataclass
class RunCurves:
    """Every numeric key logged by one run: `series[key] = (iterations (T,) int64, values (T,)
    float64)`, sorted by iteration; NaN where a value was logged as null (non-finite). Errors in
    percent."""

    label: str
    path: Path
    series: dict[str, tuple[np.ndarray, np.ndarray]]
    #: from the run's config.yaml (classification runs); None when it does not say
    plain: bool | None = None
    depth: int | None = None

    @property
    def train_iter(self) -> np.ndarray:
        return self.series.get(TRAIN_ERROR, _EMPTY)[0]

    @property
    def train_error(self) -> np.ndarray:
        return self.series.get(TRAIN_ERROR, _EMPTY)[1]

    @property
    def test_iter(self) -> np.ndarray:
        return self.series.get(TEST_ERROR, _EMPTY)[0]

    @property
    def test_error(self) -> np.ndarray:
        return self.series.get(TEST_ERROR, _EMPTY)[1]


def _number(value: Any) -> float | None:
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def read_run(run_dir: str | Path, label: str | None = None) -> RunCurves:
    """Read `run_dir/metrics.jsonl` (and `run_dir/eval/metrics.json` when it holds an iteration).

    The default label is "plain-<depth>" / "ResNet-<depth>" when `config.yaml` gives `model.depth`
    (a classification run), else the directory's name. A malformed last line (a run killed
    mid-write) is skipped with a warning; a malformed line elsewhere is an error naming the file and
    line.
    """
    run_dir = Path(run_dir)
    points: dict[str, dict[int, float]] = {}
    for record in read_metrics_log(run_dir):
        iteration = int(record["iteration"])
        for key, value in record.items():
            v = _number(value)
            if key != "iteration" and v is not None:
                points.setdefault(key, {})[iteration] = v
    evaluation = read_evaluation(eval_dir(run_dir))
    # an --eval-only file (no iteration) has no place on the curve
    if evaluation is not None and evaluation.iteration is not None:
        for key, value in evaluation.metrics.items():
            points.setdefault(f"eval/{key}", {}).setdefault(evaluation.iteration, _number(value))
    series = {
        k: (
            np.array(sorted(p), dtype=np.int64),
            np.array([p[i] for i in sorted(p)], dtype=np.float64),
        )
        for k, p in points.items()
    }
    model = (read_config(run_dir) or {}).get("model") or {}
    plain, depth = model.get("plain"), model.get("depth")
    if label is None:
        kind = "plain" if plain else "ResNet"
        label = f"{kind}-{depth}" if isinstance(depth, int) else run_dir.name
    return RunCurves(
        label, metrics_log_path(run_dir), series, plain, depth if isinstance(depth, int) else None
    )


def run_labels(run_dirs: Sequence[str | Path]) -> list[str]:
    """Each run's directory name, or its path as given where two runs share a name."""
    names = [Path(d).name for d in run_dirs]
    return [name if names.count(name) == 1 else str(d) for name, d in zip(names, run_dirs)]


def resolve_keys(runs: Sequence[RunCurves], keys: Sequence[str] | None = None) -> list[str]:
    """The series to plot. Default: the `LOSS_KEYS` and `METRIC_KEYS` any run has. A requested key
    may omit the `eval/` prefix; one that no run logged is an error listing the keys that exist."""
    available = {k for r in runs for k in r.series}
    if keys is None:
        chosen = [k for k in (*LOSS_KEYS, *METRIC_KEYS) if k in available]
        if not chosen:
            raise ValueError(
                f"none of {', '.join(str(r.path) for r in runs)} logs a loss or mAP "
                f"key ({', '.join(LOSS_KEYS + METRIC_KEYS)}); pass --keys from: "
                f"{', '.join(sorted(available)) or '(none)'}"
            )
        return chosen
    chosen = []
    for key in keys:
        found = key if key in available else f"eval/{key}" if f"eval/{key}" in available else None
        if found is None:
            raise ValueError(
                f"key {key!r} is in none of {', '.join(str(r.path) for r in runs)}; "
                f"logged keys: {', '.join(sorted(available)) or '(none)'}"
            )
        chosen.append(found)
    return chosen


def moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over up to `window` points (the first points average what exists so far)."""
    if window <= 1 or len(values) == 0:
        return values
    c = np.cumsum(np.insert(values.astype(float), 0, 0.0))
    idx = np.arange(1, len(values) + 1)
    lo = np.maximum(idx - window, 0)
    return (c[idx] - c[lo]) / (idx - lo)


def plot_curves(
    runs: Sequence[RunCurves], keys: Sequence[str], output: str | Path, *, ncols: int = 3
) -> Path:
    """Write a PNG with one subplot per key (x: iteration), one line per run that logged the key."""
    plt = pyplot()

    if not runs or not keys:
        raise ValueError("nothing to plot: need at least one run and one key")
    ncols = min(ncols, len(keys))
    nrows = math.ceil(len(keys) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.5 * ncols, 3.4 * nrows), squeeze=False)
    colours = [plt.cm.tab10(i % 10) for i in range(len(runs))]
    for ax, key in zip(axes.flat, keys):
        for run, colour in zip(runs, colours):
            if key in run.series:
                iters, values = run.series[key]
                # evaluation points are sparse: mark them so a single evaluation still shows
                ax.plot(
                    iters,
                    values,
                    color=colour,
                    label=run.label,
                    marker="o" if key.startswith("eval/") else None,
                    markersize=3,
                    linewidth=1.2,
                )
        ax.set_title(key)
        ax.set_xlabel("iteration")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(keys) :]:
        ax.set_visible(False)
    return save_figure(fig, output, dpi=100)


def plot_error_curves(
    runs: list[RunCurves], out: str | Path, *, smooth: int = 1, title: str | None = None
) -> Path:
    """Write a Fig. 6-style PNG: one panel per kind present (plain, residual), shared error axis,
    one colour per depth; training error (`train_error`, smoothed over `smooth` points) dashed, test
    error (`eval/top1_err`) bold. Every run must have logged `train_error`."""
    plt = pyplot()

    if not runs:
        raise ValueError("no runs to plot")
    for r in runs:
        if not len(r.train_iter):
            raise ValueError(
                f"{r.path}: no '{TRAIN_ERROR}' entries (written by tools/pretrain_cls.py)"
            )
    groups = [
        ("plain", [r for r in runs if r.plain]),
        ("residual", [r for r in runs if not r.plain]),
    ]
    groups = [(name, rs) for name, rs in groups if rs]
    depths = sorted({r.depth if r.depth is not None else -1 for r in runs})
    colours = {d: plt.cm.tab10(i % 10) for i, d in enumerate(depths)}
    fig, axes = plt.subplots(
        1, len(groups), figsize=(5.5 * len(groups), 4.2), sharey=True, squeeze=False
    )
    for ax, (name, rs) in zip(axes[0], groups):
        for r in rs:
            colour = colours[r.depth if r.depth is not None else -1]
            ax.plot(
                r.train_iter, moving_average(r.train_error, smooth), "--", color=colour, linewidth=1
            )
            if len(r.test_iter):
                ax.plot(r.test_iter, r.test_error, "-", color=colour, linewidth=2, label=r.label)
            else:
                ax.plot([], [], "-", color=colour, linewidth=2, label=r.label)
        ax.set_xlabel("iteration")
        ax.set_title(f"{name} nets")
        ax.grid(alpha=0.3)
        ax.legend(title="dashed: training, solid: test", fontsize=8, title_fontsize=8)
    axes[0][0].set_ylabel("top-1 error (%)")
    if title:
        fig.suptitle(title)
    return save_figure(fig, out, dpi=120)

"""Training and test error over iterations from runs' `metrics.jsonl`, drawn like Fig. 6 of He et al. 2015:
dashed lines training error, solid lines test error, plain nets on the left, residual nets on the right."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from resdet.utils.figures import pyplot, save_figure


@dataclass
class ErrorCurves:
    """One run's curves; errors in percent, iterations as logged (completed optimizer steps)."""

    label: str
    #: None when the run's config does not say (then it is drawn with the residual nets)
    plain: bool | None
    depth: int | None
    train_iter: np.ndarray
    train_error: np.ndarray
    test_iter: np.ndarray
    test_error: np.ndarray


def read_run(run_dir: str | Path, label: str | None = None) -> ErrorCurves:
    """Curves of the run in `run_dir` (its `metrics.jsonl`, and `config.yaml` for the default label)."""
    run_dir = Path(run_dir)
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no metrics log (is {run_dir} a training output directory?)")
    train: dict[int, float] = {}
    test: dict[int, float] = {}
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{n}: not JSON: {e}") from None
        if "train_error" in record:
            train[int(record["iteration"])] = float(record["train_error"])
        if "eval/top1_err" in record:
            test[int(record["iteration"])] = float(record["eval/top1_err"])
    if not train:
        raise ValueError(f"{path}: no 'train_error' entries (written by tools/pretrain_cls.py)")
    plain, depth, default = None, None, run_dir.name
    config = run_dir / "config.yaml"
    if config.is_file():
        model = (yaml.safe_load(config.read_text()) or {}).get("model", {})
        plain, depth = model.get("plain"), model.get("depth")
        if depth is not None:
            default = f"{'plain' if plain else 'ResNet'}-{depth}"
    ti, te = sorted(train), sorted(test)
    return ErrorCurves(label or default, plain, depth, np.array(ti), np.array([train[i] for i in ti]),
                       np.array(te), np.array([test[i] for i in te]))


def moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over up to `window` points (the first points average what exists so far)."""
    if window <= 1 or len(values) == 0:
        return values
    c = np.cumsum(np.insert(values.astype(float), 0, 0.0))
    idx = np.arange(1, len(values) + 1)
    lo = np.maximum(idx - window, 0)
    return (c[idx] - c[lo]) / (idx - lo)


def plot_error_curves(runs: list[ErrorCurves], out: str | Path, *, smooth: int = 1,
                      title: str | None = None) -> Path:
    """Write a PNG: one panel per kind present (plain, residual), shared error axis, one colour per depth."""
    plt = pyplot()

    if not runs:
        raise ValueError("no runs to plot")
    groups = [("plain", [r for r in runs if r.plain]), ("residual", [r for r in runs if not r.plain])]
    groups = [(name, rs) for name, rs in groups if rs]
    depths = sorted({r.depth if r.depth is not None else -1 for r in runs})
    colours = {d: plt.cm.tab10(i % 10) for i, d in enumerate(depths)}
    fig, axes = plt.subplots(1, len(groups), figsize=(5.5 * len(groups), 4.2), sharey=True, squeeze=False)
    for ax, (name, rs) in zip(axes[0], groups):
        for r in rs:
            colour = colours[r.depth if r.depth is not None else -1]
            ax.plot(r.train_iter, moving_average(r.train_error, smooth), "--", color=colour, linewidth=1)
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

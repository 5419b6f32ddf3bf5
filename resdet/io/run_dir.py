"""The files of a run's output directory: written and read here, and nowhere else.

    config.yaml        the resolved config (`write_config`; `read_config` gives the raw mapping)
    metrics.jsonl      one JSON object per logged step: `{"iteration": int, name: number|null}`
                       (null: a non-finite value). `resdet.engine.metrics_log.MetricsLog` appends
                       `metrics_log_line`s; `read_metrics_log` reads them back
    eval/metrics.json  the last evaluation, in one layout whoever writes it (the trainers,
                       `--eval-only` of tools/train_det.py and tools/pretrain_cls.py,
                       tools/eval_det.py):
                           {"iteration": int,      # training: completed iterations (optional)
                            "checkpoint": str,     # the weights evaluated (optional)
                            "detections": str,     # the results file scored (optional)
                            "metrics": {name: number | null}}
                       names are flat: an evaluator's per-class numbers are "<metric>/<class>"
                       (`flat_metrics`). `write_evaluation`; `read_evaluation` also reads the files
                       written before this layout (see there)
    last_checkpoint    one line: the file name of the newest complete checkpoint beside it
                       (`write_last_checkpoint`, `read_last_checkpoint`)
    model_final.pth    the weights at the end of training (`FINAL`); `model_best.pth` the best
                       evaluation's (`BEST`); `model_{iteration:07d}.pth` periodic ones
                       (`periodic_name`, `periodic_checkpoints`); their contents are
                       `resdet.io.checkpoints`'
    best_metric.json   `{"metric", "value", "iteration"}` of `model_best.pth` (`write_best_metric`)
    class_names.json   `{"class_names": [name, ...]}`: the training set's classes, label k = entry
                       k (`write_class_names`, `read_class_names`); evaluating the run's folder
                       data without its own class list reuses them
    trained_run.json   the record of a finished run that benchmarks reuse instead of training
                       again (`write_trained_run`, `read_trained_run`; `resdet.runs.trained`)
    run.lock           held by the run using the directory (`resdet.io.run_lock`)
A directory "holds a run" once any of these is there (`run_files`); a fresh run refuses such a
directory unless told to continue it (`--resume`) or start over (`--overwrite`: `clear_run`).
TensorBoard events are TensorBoard's.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from resdet.config.loader import save_typed
from resdet.utils.atomic import atomic_write_text

CONFIG = "config.yaml"
METRICS_LOG = "metrics.jsonl"
EVAL_DIR = "eval"
EVAL_METRICS = "metrics.json"
POINTER = "last_checkpoint"
BEST_METRIC = "best_metric.json"
FINAL = "model_final.pth"
BEST = "model_best.pth"
CLASS_NAMES = "class_names.json"
TRAINED_RUN = "trained_run.json"
_PERIODIC = re.compile(r"^model_(\d{7})\.pth$")


# ----------------------------------------------------------------------------- config.yaml
def write_config(cfg: Any, run_dir: str | Path) -> Path:
    """Write the resolved config (a `Config` or `ClsConfig`) as `run_dir/config.yaml`."""
    path = Path(run_dir) / CONFIG
    path.parent.mkdir(parents=True, exist_ok=True)
    save_typed(cfg, path)
    return path


def read_config(run_dir: str | Path) -> dict[str, Any] | None:
    """The mapping in `run_dir/config.yaml` as written (not type-checked), or None without one."""
    path = Path(run_dir) / CONFIG
    if not path.is_file():
        return None
    data = yaml.safe_load(path.read_text())
    return data if isinstance(data, dict) else {}


# ----------------------------------------------------------------------------- metrics.jsonl
def json_safe(values: dict[str, Any]) -> dict[str, Any]:
    """`values` with NaN/inf numbers replaced by None, so files stay strict JSON."""
    return {
        k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in values.items()
    }


def metrics_log_path(run_dir: str | Path) -> Path:
    return Path(run_dir) / METRICS_LOG


def metrics_log_line(iteration: int, values: dict[str, Any]) -> str:
    """One line of `metrics.jsonl` (with its newline)."""
    return json.dumps({"iteration": iteration, **json_safe(values)}) + "\n"


def read_metrics_log(run_dir: str | Path) -> list[dict[str, Any]]:
    """The records of `run_dir/metrics.jsonl`, in file order.

    A malformed last line (a run killed mid-write) is skipped with a warning; a malformed line
    elsewhere, or one without a numeric `iteration`, is an error naming the file and line.
    """
    path = metrics_log_path(run_dir)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no metrics log (is {Path(run_dir)} a training output directory?)"
        )
    lines = path.read_text().splitlines()
    records = []
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            if n == len(lines):
                warnings.warn(f"{path}:{n}: skipping an incomplete last line ({e})", stacklevel=2)
                continue
            raise ValueError(f"{path}:{n}: not JSON: {e}") from None
        iteration = record.get("iteration") if isinstance(record, dict) else None
        if (
            isinstance(iteration, bool)
            or not isinstance(iteration, (int, float))
            or not math.isfinite(iteration)
        ):
            raise ValueError(f"{path}:{n}: expected an object with a numeric field 'iteration'")
        records.append(record)
    return records


def reset_metrics_log(run_dir: str | Path, keep_until: int) -> None:
    """Before a run starts at iteration `keep_until`: keep the records up to it (a resumed run), or
    remove the log (`keep_until == 0`, a fresh run), so the file reads as one uninterrupted run."""
    path = metrics_log_path(run_dir)
    if keep_until == 0 or not path.is_file():
        path.unlink(missing_ok=True)
        return
    kept = [r for r in read_metrics_log(run_dir) if r["iteration"] <= keep_until]
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in kept))


# ----------------------------------------------------------------------------- eval/metrics.json
@dataclass
class Evaluation:
    """The content of `eval/metrics.json` (see the module docstring)."""

    metrics: dict[str, float | None]
    iteration: int | None = None
    checkpoint: str | None = None
    detections: str | None = None
    #: the file it was read from (None when not read)
    path: Path | None = field(default=None, compare=False)


def flat_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """An evaluator's metrics as `{name: float}`: the summary numbers as they are, each class's
    numbers as `"<metric>/<class>"` (classes without ground truth are left out)."""
    out: dict[str, float] = {}
    for key, value in metrics.items():
        if key == "per_class":
            for name, entry in value.items():
                out.update({f"{k}/{name}": float(v) for k, v in entry.items() if v is not None})
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[key] = float(value)
    return out


def eval_dir(run_dir: str | Path) -> Path:
    """Where a run's evaluation goes: `run_dir/eval`."""
    return Path(run_dir) / EVAL_DIR


def write_evaluation(
    directory: str | Path,
    metrics: dict[str, Any],
    *,
    iteration: int | None = None,
    checkpoint: str | Path | None = None,
    detections: str | Path | None = None,
) -> Path:
    """Write `directory/metrics.json` (atomically; `directory` is usually `eval_dir(run_dir)`) and
    return its path. `metrics` may be an evaluator's nested result: it is flattened."""
    record: dict[str, Any] = {}
    for name, value in (
        ("iteration", iteration),
        ("checkpoint", checkpoint),
        ("detections", detections),
    ):
        if value is not None:
            record[name] = value if name == "iteration" else str(value)
    record["metrics"] = json_safe(flat_metrics(metrics))
    path = Path(directory) / EVAL_METRICS
    atomic_write_text(path, json.dumps(record, indent=2) + "\n")
    return path


def _read_json_object(path: Path) -> dict[str, Any]:
    """The JSON object in `path`; anything else is a `ValueError` naming the file."""
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not JSON: {e}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def read_evaluation(directory: str | Path) -> Evaluation | None:
    """`directory/metrics.json` (None when absent), in any layout written so far:
    - this module's `{"iteration"?, "checkpoint"?, "detections"?, "metrics"}`, which is also
      what the trainers (`{"iteration", "metrics"}`) and `--eval-only` (`{"checkpoint",
      "metrics"}`) wrote before it;
    - the evaluator's own result, as tools/eval_det.py wrote it before (`{"AP": ..., "per_class":
      {...}}`, no `metrics` key): read as `metrics`, flattened, with no iteration or checkpoint.
    """
    path = Path(directory) / EVAL_METRICS
    if not path.is_file():
        return None
    data = _read_json_object(path)
    if not isinstance(data.get("metrics"), dict):  # the evaluator's result itself (old eval_det.py)
        return Evaluation(flat_metrics(data), path=path)
    iteration = data.get("iteration")
    if iteration is not None and (
        isinstance(iteration, bool) or not isinstance(iteration, (int, float))
    ):
        raise ValueError(f"{path}: field 'iteration' must be a number, got {iteration!r}")
    metrics = {
        k: None if v is None else float(v)
        for k, v in data["metrics"].items()
        if v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))
    }
    return Evaluation(
        metrics,
        None if iteration is None else int(iteration),
        data.get("checkpoint"),
        data.get("detections"),
        path=path,
    )


def write_best_metric(run_dir: str | Path, best: dict[str, Any]) -> Path:
    """Write `run_dir/best_metric.json`: `{"metric", "value", "iteration"}` of `model_best.pth`."""
    path = Path(run_dir) / BEST_METRIC
    atomic_write_text(path, json.dumps(best, indent=2) + "\n")
    return path


# ----------------------------------------------------------------------------- class_names.json
def write_class_names(run_dir: str | Path, class_names: list[str]) -> Path:
    """Write `run_dir/class_names.json` (atomically): `{"class_names": [...]}` in label order."""
    path = Path(run_dir) / CLASS_NAMES
    atomic_write_text(path, json.dumps({"class_names": list(class_names)}, indent=2) + "\n")
    return path


def read_class_names(run_dir: str | Path) -> list[str] | None:
    """The class names in `run_dir/class_names.json`, or None without that file."""
    path = Path(run_dir) / CLASS_NAMES
    if not path.is_file():
        return None
    names = _read_json_object(path).get("class_names")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ValueError(f'{path}: expected {{"class_names": [name, ...]}}')
    return names


# ----------------------------------------------------------------------------- last_checkpoint
def write_last_checkpoint(run_dir: str | Path, name: str) -> None:
    """Point `run_dir/last_checkpoint` at `name` (atomically: call it once the file is complete)."""
    atomic_write_text(Path(run_dir) / POINTER, name + "\n")


def read_last_checkpoint(run_dir: str | Path) -> Path | None:
    """The checkpoint `run_dir/last_checkpoint` names, or None when there is no pointer."""
    run_dir = Path(run_dir)
    pointer = run_dir / POINTER
    if not pointer.is_file():
        return None
    name = pointer.read_text().strip()
    path = run_dir / name
    if not name or not path.is_file():
        raise FileNotFoundError(f"{pointer} names {name!r}, which does not exist in {run_dir}")
    return path


def periodic_name(iteration: int) -> str:
    """The file name of the periodic checkpoint after `iteration` completed iterations."""
    return f"model_{iteration:07d}.pth"


def periodic_checkpoints(run_dir: str | Path) -> list[Path]:
    """The periodic checkpoints in `run_dir`, oldest first (not `model_final`/`model_best`)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in run_dir.iterdir() if (m := _PERIODIC.match(p.name))]
    return [p for _, p in sorted(found)]


def trained_checkpoint(run_dir: str | Path) -> Path:
    """`model_final.pth` of a run, else the checkpoint its `last_checkpoint` names."""
    final = Path(run_dir) / FINAL
    if final.is_file():
        return final
    last = read_last_checkpoint(run_dir)
    if last is None:
        raise FileNotFoundError(f"{run_dir}: no {FINAL} or {POINTER} to evaluate; pass --weights")
    return last


# ----------------------------------------------------------------------------- trained_run.json
def write_trained_run(run_dir: str | Path, record: dict[str, Any]) -> Path:
    """Write `run_dir/trained_run.json` (atomically, after the run's final evaluation)."""
    return atomic_write_text(Path(run_dir) / TRAINED_RUN, json.dumps(record, indent=2))


def read_trained_run(run_dir: str | Path) -> dict[str, Any] | None:
    """The record `write_trained_run` left in `run_dir`, or None when the run has not finished."""
    path = Path(run_dir) / TRAINED_RUN
    return _read_json_object(path) if path.is_file() else None


# ----------------------------------------------------------------------------- the whole directory
def run_files(run_dir: str | Path) -> list[str]:
    """The names of the run files already in `run_dir` (empty: nothing of a run is there)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    names = (CONFIG, METRICS_LOG, POINTER, BEST_METRIC, FINAL, BEST, CLASS_NAMES, TRAINED_RUN)
    found = [n for n in names if (run_dir / n).exists()]
    found += [p.name for p in periodic_checkpoints(run_dir)]
    if (run_dir / EVAL_DIR).is_dir():
        found.append(EVAL_DIR + "/")
    found += sorted(p.name for p in run_dir.glob("events.out.tfevents.*"))
    return found


def clear_run(run_dir: str | Path) -> None:
    """Remove every run file `run_files` lists (and the evaluation folder); nothing else."""
    run_dir = Path(run_dir)
    for name in run_files(run_dir):
        path = run_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()


def remove_stale_temporaries(run_dir: str | Path) -> list[Path]:
    """Remove the temporary files (`.<name>.<random>.tmp`) that killed atomic writes left in
    `run_dir`; call it while holding the run's lock. Returns what was removed."""
    run_dir = Path(run_dir)
    stale = sorted(run_dir.glob(".*.tmp")) if run_dir.is_dir() else []
    for path in stale:
        path.unlink(missing_ok=True)
    return stale

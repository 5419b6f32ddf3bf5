"""What a training run checks before it writes anything into its output directory.

- The directory is writable and belongs to this run alone (`resdet.io.run_lock`).
- It holds no other run unless this one continues it (``--resume``; with no checkpoint yet the run
  starts fresh, so one command line serves the first launch and every requeue) or starts it over
  (``--overwrite`` removes the old run's files, nothing else).
- Temporary files that killed saves left behind are removed.
- A resumed run is the run its checkpoint recorded: a change of architecture, classes, data or
  optimisation since then is refused, naming the keys; settings that do not change what the
  network sees or how it steps (evaluation, logging, checkpoint cadence, loader workers, paths)
  may change and are recorded in ``config.yaml``; so may ``solver.max_iter``, to train a finished
  run longer (the iterations already taken keep their learning rates; a schedule that depends on
  the length, cosine, follows the new one from here on).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

from resdet.config import ConfigError
from resdet.config.loader import to_dict
from resdet.io.checkpoints import load_checkpoint_file
from resdet.io.run_dir import clear_run, read_last_checkpoint, remove_stale_temporaries, run_files
from resdet.io.run_lock import RunLock
from resdet.utils.atomic import ensure_writable_dir

#: config keys a resumed run may change (patterns over dotted keys)
RESUMABLE_CHANGES = (
    "output_dir",
    "test.*",
    "data.test",
    "data.test.*",
    "data.num_workers",
    "data.root",
    "data.cache_dir",
    "data.skip_bad_images",
    "data.max_bad_images",
    "solver.max_iter",
    "solver.checkpoint_period",
    "solver.keep_last",
    "solver.log_period",
    "solver.dist_timeout_s",
    "solver.max_nonfinite_steps",
)


@contextmanager
def claim_output_dir(
    run_dir: str | Path, *, resume: bool, overwrite: bool, is_main: bool
) -> Iterator[None]:
    """Hold ``run_dir`` for the body of the ``with`` (the main process only; the others run
    under its claim). One-line errors: not writable (`OutputDirError`), another run holds it, it
    holds a run and neither ``resume`` nor ``overwrite`` is set (`ConfigError`)."""
    if not is_main:
        yield
        return
    if resume and overwrite:
        raise ConfigError("--resume continues a run and --overwrite starts over: choose one")
    run_dir = ensure_writable_dir(run_dir, "output_dir")
    with RunLock(run_dir):
        found = run_files(run_dir)
        if found and not resume and not overwrite:
            shown = ", ".join(found[:4]) + (", ..." if len(found) > 4 else "")
            raise ConfigError(
                f"output_dir {run_dir} already holds a run ({shown}); --resume continues it, "
                "--overwrite starts over (removing its files), or choose another output_dir"
            )
        if overwrite and found:
            clear_run(run_dir)
        stale = remove_stale_temporaries(run_dir)
        if stale:
            print(f"removed {len(stale)} temporary file(s) of interrupted saves in {run_dir}")
        yield


def check_resume(cfg: Any, class_names: list[str] | None) -> Path | None:
    """The checkpoint ``--resume`` continues from (None: there is none yet, the run starts fresh),
    after checking it is readable and recorded the same run as ``cfg`` and ``class_names``;
    otherwise one `ConfigError` naming the file and what differs."""
    try:
        path = read_last_checkpoint(cfg.output_dir)
        if path is None:
            return None
        ckpt = load_checkpoint_file(path)
    except (ValueError, FileNotFoundError) as e:
        raise ConfigError(f"--resume: {e}") from None
    recorded = ckpt.get("class_names")
    if class_names is not None and recorded is not None and list(recorded) != list(class_names):
        raise ConfigError(
            f"--resume: {path} was trained on classes {list(recorded)}, but the training set now "
            f"has {list(class_names)}; start a new run (another output_dir, or --overwrite)"
        )
    old, new = _flat(ckpt.get("config") or {}), _flat(to_dict(cfg))
    changed = [
        key
        for key in sorted(old.keys() | new.keys())
        if old.get(key) != new.get(key) and not any(fnmatch(key, p) for p in RESUMABLE_CHANGES)
    ]
    if changed:
        shown = "; ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in changed[:5])
        raise ConfigError(
            f"--resume: {path} was trained with other settings ({shown}"
            f"{'; ...' if len(changed) > 5 else ''}); a resumed run keeps them: undo the change, "
            "or start a new run (another output_dir, or --overwrite)"
        )
    return path


def main_process() -> bool:
    """Whether this is the main process of the launch (rank 0, or no torchrun)."""
    return int(os.environ.get("RANK", "0")) == 0


def _flat(tree: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(tree, dict):
        return {prefix: tree}
    out: dict[str, Any] = {}
    for k, v in tree.items():
        out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
    return out

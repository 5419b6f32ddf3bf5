"""Training checkpoints: atomic files, a `last_checkpoint` pointer, the last k kept.

A checkpoint is a plain dict loadable with `torch.load(..., weights_only=True)`:
    {"format": "resdet", "kind": "detector", "model": state_dict, "optimizer": state_dict,
     "scheduler": state_dict, "scaler": state_dict, "iteration": int (completed iterations),
     "rng": {"python", "numpy", "torch", "cuda"} (rank 0), "rng_ranks": [one such dict per rank],
     "sampler": {"position": batches this rank consumed (one per micro-step)},
     "best": {"metric", "value", "iteration"} | None,
     "config": dict, "pixel_format": dict | None,
     "class_names": [name, ...] (label order) | None}
Periodic files are `model_{iteration:07d}.pth`; `model_final.pth` and `model_best.pth` are never
pruned. The pointer (`last_checkpoint`, see `resdet.io.run_dir`) is rewritten (atomically) only
after the file it names is complete, so a crash at any moment leaves the pointer naming a whole,
loadable checkpoint.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from backbones.weights.load import load_torch_file
from resdet.io.run_dir import read_last_checkpoint, trained_checkpoint, write_last_checkpoint
from resdet.utils.atomic import atomic_torch_save

__all__ = ["Checkpointer", "load_checkpoint_file", "periodic_name", "trained_checkpoint"]

_PERIODIC = re.compile(r"^model_(\d{7})\.pth$")


def periodic_name(iteration: int) -> str:
    return f"model_{iteration:07d}.pth"


def load_checkpoint_file(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint with `weights_only=True` onto the CPU; unsafe pickles are refused."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    ckpt = load_torch_file(path)
    if not isinstance(ckpt, dict) or ckpt.get("format") != "resdet":
        raise ValueError(f"{path}: not a resdet training checkpoint (no 'format': 'resdet' entry)")
    return ckpt


class Checkpointer:
    """Writes and finds checkpoints in `directory`; only the main process writes (`is_main`)."""

    def __init__(self, directory: str | Path, keep_last: int = 3, is_main: bool = True) -> None:
        if keep_last < 0:
            raise ValueError(f"keep_last must be >= 0, got {keep_last}")
        self.directory = Path(directory)
        self.keep_last = keep_last
        self.is_main = is_main

    def save(self, name: str, state: dict[str, Any]) -> Path:
        """Atomically write `state` to `directory/name`, then move the pointer to it, then prune."""
        path = self.directory / name
        if not self.is_main:
            return path
        atomic_torch_save(state, path)
        write_last_checkpoint(self.directory, name)
        self._prune()
        return path

    def last(self) -> Path | None:
        """The checkpoint the pointer names, or None when there is no pointer."""
        return read_last_checkpoint(self.directory)

    def load(self, path: str | Path) -> dict[str, Any]:
        return load_checkpoint_file(path)

    def periodic(self) -> list[Path]:
        """Periodic checkpoints on disk, oldest first."""
        if not self.directory.is_dir():
            return []
        found = [
            (int(m.group(1)), p) for p in self.directory.iterdir() if (m := _PERIODIC.match(p.name))
        ]
        return [p for _, p in sorted(found)]

    def _prune(self) -> None:
        if self.keep_last == 0:
            return
        pointed = self.last()
        files = self.periodic()
        for p in files[: max(0, len(files) - self.keep_last)]:
            if p != pointed:
                p.unlink(missing_ok=True)

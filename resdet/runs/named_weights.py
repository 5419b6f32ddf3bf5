"""Producing named backbone weights (``resdet:<name>``, the table in
:mod:`resdet.io.named_weights`): an explicit step a training run takes before it builds its model.

When the cached file is not there yet, :func:`produce_named_weights` runs the source's
classification pretraining in this process (a one-line explanation, then the trainer's progress
bar) and moves the result into the cache atomically, so an interrupted run leaves no file behind
and the next call starts over.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

from resdet.io.named_weights import cached_path, is_named, named_source
from resdet.utils.seed import get_rng_state, set_rng_state


def produce_named_weights(source: str | None, *, progress: bool = True) -> str | None:
    """Make sure a ``resdet:<name>`` ``source`` is in the cache, producing it when missing (see the
    module docstring); returns what :func:`backbones.weights.load_pretrained` reads: the cached
    file's path for a named source, anything else (a path, ``torchvision:...``, None) unchanged.
    The caller's random state is left as it was."""
    if not is_named(source):
        return source
    path = cached_path(source)
    if not path.is_file():
        _produce(source, path, progress)
    return str(path)


def _produce(source: str, path: Path, progress: bool) -> None:
    """Pretrain the named source into a temporary run directory, then move its final checkpoint to
    ``path`` (same folder, so the rename is atomic)."""
    from resdet.config.classification import load_cls_config
    from resdet.runs.pretraining import pretrain

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise RuntimeError(
            f"{source} is not in the cache yet ({path}); produce it once in a "
            f'single process (e.g. python -c "from resdet.runs.named_weights import '
            f"produce_named_weights; produce_named_weights('{source}')\") before a "
            f"distributed run"
        )
    spec = named_source(source)
    print(
        f"{source}: not in the cache yet, training it now: {spec.description} -> {path}", flush=True
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    states = get_rng_state()
    run_dir = Path(tempfile.mkdtemp(prefix=f".{path.stem}.", dir=path.parent))
    try:
        cfg = load_cls_config(spec.config, [*spec.overrides, f"output_dir={run_dir}"])
        result = pretrain(cfg, progress=progress)
        os.replace(result.checkpoint, path)
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
        set_rng_state(states)
    print(
        f"{source}: top-1 {result.metrics['top1']:.1f}% on {result.num_test_images} test "
        f"images after {result.seconds / 60:.1f} min; saved to {path}",
        file=sys.stdout,
        flush=True,
    )

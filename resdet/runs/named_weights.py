"""Named backbone weights (``resdet:<name>``), produced into the cache on first use.

``model.backbone.weights: resdet:shapes_r18`` names the ResNet-18 classifier that
``configs/cls_shapes.yaml`` pretrains on the generated shapes set (what ``python
tools/pretrain_cls.py`` writes to ``output/cls_shapes/model_final.pth``). :func:`resolve_weights`
turns the name into the file ``$RESDET_CACHE/pretrained/<name>.pth`` (default cache
``~/.cache/resdet``, as for the generated data). When the file is not there yet it runs that
pretraining first, in this process: a one-line explanation, then the trainer's progress bar; the
result is moved into the cache atomically, so an interrupted run leaves no file behind and the
next call starts over. Any other source is returned unchanged.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from resdet.config import CONFIG_DIR
from resdet.utils.paths import cache_root
from resdet.utils.seed import get_rng_state, set_rng_state

PREFIX = "resdet:"


@dataclass(frozen=True)
class NamedSource:
    """How to produce a named source: the classification recipe and overrides to train it with."""

    config: Path
    overrides: tuple[str, ...]
    #: the one line printed before producing it
    description: str


#: the named sources `resolve_weights` knows (tests shrink the overrides to seconds)
NAMED_SOURCES: dict[str, NamedSource] = {
    "shapes_r18": NamedSource(
        config=CONFIG_DIR / "cls_shapes.yaml",
        overrides=(),
        description="ResNet-18 pretrained on the generated shapes classification set "
        "(configs/cls_shapes.yaml; once: minutes on idle CPUs, up to an hour on "
        "busy ones)",
    )
}


def is_named(source: str | os.PathLike | None) -> bool:
    """Whether ``source`` is a ``resdet:<name>`` weight source."""
    return isinstance(source, str) and source.startswith(PREFIX)


def cached_path(source: str) -> Path:
    """Where the named ``source`` lives: ``<cache>/pretrained/<name>.pth``; ``ValueError`` for an
    unknown name, listing the known ones."""
    name = source[len(PREFIX) :]
    if name not in NAMED_SOURCES:
        raise ValueError(
            f"unknown weight source {source!r}; known: "
            f"{', '.join(PREFIX + n for n in NAMED_SOURCES)}"
        )
    return cache_root() / "pretrained" / f"{name}.pth"


def resolve_weights(source: str, *, progress: bool = True) -> str:
    """A weight source -> what :func:`backbones.weights.load_pretrained` reads.

    ``resdet:<name>`` becomes the path of its cached file, produced first when missing (see the
    module docstring; ``progress`` shows the trainer's progress bar); anything else (a path,
    ``torchvision:...``, ``timm:...``) is returned as it is.
    """
    if not is_named(source):
        return source
    path = cached_path(source)
    if not path.is_file():
        _produce(source, path, progress)
    return str(path)


def _produce(source: str, path: Path, progress: bool) -> None:
    """Pretrain the named source into a temporary run directory, then move its final checkpoint to
    ``path`` (same folder, so the rename is atomic). The caller's random state is left as it was."""
    from resdet.config.classification import load_cls_config
    from resdet.runs.pretraining import pretrain

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise RuntimeError(
            f"{source} is not in the cache yet ({path}); produce it once in a "
            f'single process (e.g. python -c "from resdet.runs.named_weights import '
            f"resolve_weights; resolve_weights('{source}')\") before a "
            f"distributed run"
        )
    spec = NAMED_SOURCES[source[len(PREFIX) :]]
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

"""Named backbone weights (``resdet:<name>``): which names exist, how each is made, and the file in
the cache that holds it.

``model.backbone.weights: resdet:shapes_r18`` names the ResNet-18 classifier that
``configs/cls_shapes.yaml`` pretrains on the generated shapes set (what ``python
tools/pretrain_cls.py`` writes to ``output/cls_shapes/model_final.pth``); its file is
``$RESDET_CACHE/pretrained/shapes_r18.pth`` (default cache ``~/.cache/resdet``). Reading it never
trains anything: a training run produces a missing one first, as an explicit step
(:func:`resdet.runs.named_weights.produce_named_weights`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from resdet.config import CONFIG_DIR
from resdet.utils.paths import cache_root

PREFIX = "resdet:"


@dataclass(frozen=True)
class NamedSource:
    """How to produce a named source: the classification recipe and overrides to train it with."""

    config: Path
    overrides: tuple[str, ...]
    #: the one line printed before producing it
    description: str


#: the named sources (tests shrink the overrides to seconds)
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


def named_source(source: str) -> NamedSource:
    """The table entry of ``resdet:<name>``; ``ValueError`` for an unknown name, listing the known
    ones."""
    name = source[len(PREFIX) :]
    if name not in NAMED_SOURCES:
        raise ValueError(
            f"unknown weight source {source!r}; known: "
            f"{', '.join(PREFIX + n for n in NAMED_SOURCES)}"
        )
    return NAMED_SOURCES[name]


def cached_path(source: str) -> Path:
    """Where the named ``source`` lives: ``<cache>/pretrained/<name>.pth`` (``ValueError`` for an
    unknown name)."""
    named_source(source)
    return cache_root() / "pretrained" / f"{source[len(PREFIX) :]}.pth"


def named_weights_file(source: str) -> Path:
    """The cached file of ``source``; ``FileNotFoundError`` in one line when it was not produced
    yet, saying how to produce it."""
    path = cached_path(source)
    if not path.is_file():
        raise FileNotFoundError(
            f"{source} is not in the cache yet ({path}); a training run produces it first "
            f"(python tools/train_det.py configs/demo_shapes.yaml), or "
            f'python -c "from resdet.runs.named_weights import produce_named_weights; '
            f"produce_named_weights('{source}')\""
        )
    return path

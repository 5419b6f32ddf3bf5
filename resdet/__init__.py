"""resdet: configs, model building, data, evaluation and the training engine around
`backbones`/`heads`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["load_config", "build_model", "load_checkpoint"]

if TYPE_CHECKING:  # pragma: no cover
    from resdet.build import build_model, load_checkpoint
    from resdet.config import load_config


def __getattr__(name: str) -> Any:
    # Lazy so that `import resdet.data` does not build the model stack.
    if name == "load_config":
        from resdet.config import load_config

        return load_config
    if name in ("build_model", "load_checkpoint"):
        import resdet.build as build

        return getattr(build, name)
    raise AttributeError(f"module 'resdet' has no attribute {name!r}")

"""timm-style feature metadata (``feature_info``) over any backbone with ``output_specs``."""

from __future__ import annotations

from typing import Any, Sequence

from torch import nn

from backbones.spec import FeatureSpec


class FeatureInfo:
    """timm-style feature metadata over a backbone's ``output_specs``.

    Checks its own invariant on construction: the reduction (stride) never decreases.
    """

    def __init__(self, specs: dict[str, FeatureSpec]) -> None:
        self._names = list(specs)
        self._specs = list(specs.values())
        for a, b in zip(self._specs, self._specs[1:]):
            if b.stride < a.stride:
                raise ValueError(
                    f"feature reductions must not decrease, got "
                    f"{[s.stride for s in self._specs]} for {self._names}"
                )

    def __len__(self) -> int:
        return len(self._specs)

    def _pick(self, values: list[Any], idx: int | Sequence[int] | None) -> Any:
        if idx is None:
            return list(values)
        if isinstance(idx, int):
            return values[idx]
        return [values[i] for i in idx]

    def channels(self, idx: int | Sequence[int] | None = None) -> int | list[int]:
        """Channel count of feature ``idx`` (all features when None)."""
        return self._pick([s.channels for s in self._specs], idx)

    def reduction(self, idx: int | Sequence[int] | None = None) -> int | list[int]:
        """Stride of feature ``idx`` relative to the input (all features when None)."""
        return self._pick([s.stride for s in self._specs], idx)

    def module_name(self, idx: int | Sequence[int] | None = None) -> str | list[str]:
        """Feature name (``res2``, ``p3``, ...) of ``idx`` (all features when None)."""
        return self._pick(self._names, idx)

    def get_dicts(self) -> list[dict[str, Any]]:
        """``[{"module": name, "num_chs": channels, "reduction": stride}, ...]`` as in timm."""
        return [
            {"module": n, "num_chs": s.channels, "reduction": s.stride}
            for n, s in zip(self._names, self._specs)
        ]


def feature_info(backbone: nn.Module) -> FeatureInfo:
    """timm-style :class:`FeatureInfo` for any backbone with ``output_specs``."""
    return FeatureInfo(backbone.output_specs)

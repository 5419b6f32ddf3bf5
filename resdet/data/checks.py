"""What readers check in every annotation: finite numbers, relative file names, boxes clipped
to the image, and the drops they count (one summary warning per file)."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from pathlib import PurePosixPath, PureWindowsPath

import numpy as np

from resdet.data.errors import DatasetError, DatasetWarning


@dataclass(frozen=True)
class DropKind:
    """One reason a reader drops a box: the noun it is counted by and the rule, for the summary."""

    singular: str
    plural: str
    #: the rule, shown in parentheses before the examples ("" for none)
    rule: str = ""


#: boxes with nothing of positive area left inside the image after clipping
CLIPPED = DropKind("box", "boxes", "empty or outside the image after clipping")
#: VOC boxes whose file numbers have `xmax <= xmin` or `ymax <= ymin` (zero extent in the file)
ZERO_AREA = DropKind("zero-area box", "zero-area boxes", "xmax <= xmin or ymax <= ymin in the file")


def near_duplicate(iou: float) -> DropKind:
    """The kind of a box dropped for overlapping an earlier box of its class at IoU > `iou`."""
    return DropKind(
        "near-duplicate box", "near-duplicate boxes", f"IoU > {iou:g} with a box of the same class"
    )


@dataclass
class DropCounter:
    """Counts what a reader dropped, by `DropKind`, to emit one summary warning per file set:
    `"<source>: dropped 1 zero-area box (<rule>; e.g. a.xml object 12), 6 near-duplicate boxes
    (...)"`, kinds in the order first met, at most `max_examples` examples each."""

    counts: dict[DropKind, int] = field(default_factory=dict)
    examples: dict[DropKind, list[str]] = field(default_factory=dict)
    max_examples: int = 3

    def drop(self, where: str, kind: DropKind = CLIPPED) -> None:
        """Count one box of `kind`; `where` names it (file and object)."""
        self.counts[kind] = self.counts.get(kind, 0) + 1
        shown = self.examples.setdefault(kind, [])
        if len(shown) < self.max_examples:
            shown.append(where)

    def message(self, source: str) -> str | None:
        """The summary line for `source`, or None when nothing was dropped."""
        if not self.counts:
            return None
        parts = []
        for kind, n in self.counts.items():
            detail = "; ".join(self.examples[kind])
            detail = f"{kind.rule}; e.g. {detail}" if kind.rule else f"e.g. {detail}"
            parts.append(f"{n} {kind.singular if n == 1 else kind.plural} ({detail})")
        return f"{source}: dropped {', '.join(parts)}"

    def warn(self, source: str) -> None:
        """Emit the summary line as one `DatasetWarning` (nothing when nothing was dropped)."""
        text = self.message(source)
        if text is not None:
            warnings.warn(text, DatasetWarning, stacklevel=3)


def clip_box(
    x1: float, y1: float, x2: float, y2: float, width: int, height: int
) -> tuple[float, ...] | None:
    """Clip an xyxy box to [0, width] x [0, height]; None when nothing of positive area is left."""
    x1, x2 = min(max(x1, 0.0), width), min(max(x2, 0.0), width)
    y1, y2 = min(max(y1, 0.0), height), min(max(y2, 0.0), height)
    if x2 <= x1 or y2 <= y1:
        return None
    return x1, y1, x2, y2


def finite(value: object, where: str, name: str) -> float:
    """`value` as a finite float, or a `DatasetError` naming `where` and the field `name`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DatasetError(f"{where}: field {name!r} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise DatasetError(f"{where}: field {name!r} is not finite ({value!r})")
    return float(value)


def check_relative(file_name: str, where: str) -> None:
    """Refuse absolute file names and `..` components: an annotation may only name
    files below its root."""
    for p in (PurePosixPath(file_name), PureWindowsPath(file_name)):
        if p.is_absolute() or p.drive or p.root or ".." in p.parts:
            raise DatasetError(
                f"{where}: file name {file_name!r} is absolute or contains '..'; "
                "only paths below the image folder are allowed"
            )
    if not file_name:
        raise DatasetError(f"{where}: empty file name")


def boxes_array(boxes: list[tuple[float, ...]]) -> np.ndarray:
    """List of xyxy tuples -> (N, 4) float32."""
    return np.asarray(boxes, dtype=np.float32).reshape(-1, 4)

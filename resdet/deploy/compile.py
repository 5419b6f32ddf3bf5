"""``torch.compile`` of a whole detector, and the graph breaks and recompilations it causes.

Dynamo traces the detector's forward from the image list to the losses or detections: the
preprocessor, the backbone, the RPN and the RoI heads. Operations whose output shape depends on
tensor values (``nonzero`` of score and sampling masks, torchvision's NMS, ``bincount``, the sparse
RoIAlign's ``unique``) and the few host reads (the training resize draw, the input check, the
per-image split of the detections) end a graph; Dynamo runs that operation eagerly and compiles the
code after it as a new graph, so the dense work between them (backbone, heads, decoding, losses)
is compiled and the control flow stays Python. The eager module is unchanged.

:class:`CompileStats` reads Dynamo's process-wide counters (``torch._dynamo.utils.counters``, what
``torch._dynamo.explain`` reports from, and the compilations per frame): the difference of
:meth:`CompileStats.snapshot` after and before a stretch of calls is what that stretch compiled.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import torch
from torch import nn
from torch._dynamo import convert_frame
from torch._dynamo.utils import counters


def compile_detector(
    model: nn.Module, *, backend: str = "inductor", dynamic: bool | None = None
) -> nn.Module:
    """``model`` compiled whole: a module sharing ``model``'s parameters and buffers whose
    ``forward`` is ``model.forward`` under ``torch.compile``.

    ``dynamic``: None compiles the first input shapes statically and, when a later call brings
    other shapes, recompiles once with those sizes symbolic (Dynamo's automatic dynamic shapes);
    True makes sizes symbolic from the first call (a slower first compile, no recompile for new
    image sizes); False specialises every graph to its shapes (a recompile per new size).
    ``backend`` is any ``torch.compile`` backend (``"aot_eager"`` checks the capture without
    code generation).
    """
    return torch.compile(model, backend=backend, dynamic=dynamic)


def _short_reason(reason: str) -> str:
    """Dynamo's graph-break message up to its hint, on one line."""
    text = " ".join(reason.split("Hint:")[0].split())
    return text.replace(" Explanation:", ":")


@dataclass(frozen=True)
class CompileStats:
    """Dynamo's totals in this process: ``graphs`` captured (FX graphs handed to the backend),
    ``graph_breaks`` (places a frame's capture ended before its return), ``recompiles`` (frames
    compiled again because a cached graph's guards, e.g. on an input size, failed), ``frames``
    (Python frames compiled, recompilations included) and ``break_reasons``: each distinct
    graph-break reason with its count, most frequent first."""

    graphs: int = 0
    graph_breaks: int = 0
    recompiles: int = 0
    frames: int = 0
    break_reasons: tuple[tuple[str, int], ...] = ()

    @classmethod
    def snapshot(cls) -> CompileStats:
        """The totals so far. ``torch._dynamo.reset()`` clears the per-frame compile counts the
        recompilations come from: take the snapshots of one stretch after the reset."""
        reasons: Counter[str] = Counter()
        for reason, n in counters["graph_break"].items():
            reasons[_short_reason(reason)] += n
        return cls(
            graphs=counters["stats"]["unique_graphs"],
            graph_breaks=sum(reasons.values()),
            # compilations per frame (code object): every one after a frame's first is a recompile
            recompiles=sum(max(n - 1, 0) for n in convert_frame.FRAME_COMPILE_COUNTER.values()),
            frames=counters["frames"]["ok"],
            break_reasons=tuple(reasons.most_common()),
        )

    def __sub__(self, other: CompileStats) -> CompileStats:
        """What was compiled between snapshot ``other`` and this one."""
        before = dict(other.break_reasons)
        reasons = Counter({r: n - before.get(r, 0) for r, n in self.break_reasons})
        return CompileStats(
            graphs=self.graphs - other.graphs,
            graph_breaks=self.graph_breaks - other.graph_breaks,
            recompiles=self.recompiles - other.recompiles,
            frames=self.frames - other.frames,
            break_reasons=tuple((r, n) for r, n in reasons.most_common() if n > 0),
        )

    def __add__(self, other: CompileStats) -> CompileStats:
        """Two stretches' figures together."""
        reasons = Counter(dict(self.break_reasons))
        reasons.update(dict(other.break_reasons))
        return CompileStats(
            graphs=self.graphs + other.graphs,
            graph_breaks=self.graph_breaks + other.graph_breaks,
            recompiles=self.recompiles + other.recompiles,
            frames=self.frames + other.frames,
            break_reasons=tuple(reasons.most_common()),
        )

    def as_dict(self) -> dict[str, object]:
        """JSON-ready: the counts and ``break_reasons`` as ``{reason: count}``."""
        return {
            "graphs": self.graphs,
            "graph_breaks": self.graph_breaks,
            "recompiles": self.recompiles,
            "frames": self.frames,
            "break_reasons": dict(self.break_reasons),
        }

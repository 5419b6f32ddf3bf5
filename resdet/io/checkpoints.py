"""Checkpoints: what a run writes, and detector weights in and out of their formats (ours,
torchvision's and detectron2's). File names and the pointer are `resdet.io.run_dir`'s.

- :class:`Checkpointer` / :func:`load_checkpoint_file`: training checkpoints, written atomically,
  the ``last_checkpoint`` pointer moved only after the file is complete, the last k kept. One is a
  plain dict loadable with ``torch.load(..., weights_only=True)``::

    {"format": "resdet", "kind": "detector" | "classifier", "model": state_dict,
     "optimizer": state_dict, "scheduler": state_dict, "scaler": state_dict,
     "iteration": int (completed iterations),
     "rng": {"python", "numpy", "torch", "cuda"} (rank 0), "rng_ranks": [one such dict per rank],
     "sampler": {"position": batches this rank consumed (one per micro-step)},
     "best": {"metric", "value", "iteration"} | None,
     "config": dict, "pixel_format": dict | None,
     "class_names": [name, ...] (label order) | None}
- :func:`load_checkpoint` / :func:`load_detector_state`: detector weights (a file, or a state
  dict in memory) into a :class:`heads.meta_arch.rcnn.FasterRCNN`, converting torchvision's and
  detectron2's parameter names, class order and anchor order to ours.
- :func:`load_backbone_weights`: what ``model.backbone.weights`` names into a backbone: anything
  :func:`backbones.weights.load_pretrained` reads, a ``resdet:<name>`` source
  (:mod:`resdet.io.named_weights`), or the ResNet inside one of our detector checkpoints (this
  module knows where a detector keeps it; ``backbones`` does not).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from backbones.fpn import FPN
from backbones.spec import TORCHVISION_PIXELS, PixelFormat
from backbones.weights.load import (
    LoadReport,
    detectron2_state,
    load_state,
    load_torch_file,
    read_pkl,
    read_source,
    sub_state,
)
from heads.meta_arch.rcnn import FasterRCNN
from resdet.io.named_weights import is_named, named_weights_file
from resdet.io.run_dir import periodic_checkpoints, read_last_checkpoint, write_last_checkpoint
from resdet.utils.atomic import atomic_torch_save

__all__ = [
    "Checkpointer",
    "NonFiniteCheckpointError",
    "nonfinite_tensors",
    "load_checkpoint_file",
    "read_checkpoint_file",
    "checkpoint_class_names",
    "load_checkpoint",
    "load_detector_state",
    "load_backbone_weights",
]


def load_backbone_weights(
    backbone: nn.Module, source: str | os.PathLike, **kwargs: Any
) -> LoadReport:
    """Load ``source`` into ``backbone`` (a ResNet, or an FPN over one) and report what was done.

    ``source``: a ``resdet:<name>`` named source (its file in the cache, see
    :mod:`resdet.io.named_weights`; a missing one is a FileNotFoundError), one of our detector
    checkpoints (its ResNet: ``backbone.bottom_up.`` or ``backbone.body.`` for FPN detectors,
    ``backbone.`` plus the RoI head's ``res5`` for C4 ones), or anything
    :func:`backbones.weights.load_pretrained` accepts. ``kwargs`` as that function's.
    """
    path = str(named_weights_file(source)) if is_named(source) else str(source)
    # read once: the detector case needs the state itself, every other case load_state's arguments
    state, fmt, pixels = read_source(path)
    if fmt == "resdet-detector" and kwargs.get("prefix") is None:
        state = _detector_backbone(state, path)
    pixel_format = kwargs.pop("pixel_format", None) or pixels
    return load_state(
        backbone, state, source_format=fmt, pixel_format=pixel_format, source=path, **kwargs
    )


def _detector_backbone(state: dict[str, Any], source: str) -> dict[str, Any]:
    """Our detector checkpoint's state -> its ResNet's state (torchvision names)."""
    # FPN detectors hold the ResNet under backbone.bottom_up., C4 detectors under backbone.
    for prefix in ("backbone.body.", "backbone.bottom_up.", "backbone."):
        body = sub_state(state, prefix)
        if body:
            break
    else:
        raise ValueError(f"{source}: detector checkpoint has no 'backbone.' keys")
    for res5 in ("roi_heads.box_head.res5.", "roi_heads.res5."):
        # detectron2 keeps MoCo's extra head norm inside res5 (`res5.norm.`): not the ResNet's
        blocks = {k: v for k, v in sub_state(state, res5).items() if not k.startswith("norm.")}
        body.update({"layer4." + k: v for k, v in blocks.items()})
    return body


def load_checkpoint(model: FasterRCNN, path: str | os.PathLike) -> str:
    """Load detector weights into ``model``; returns the recognised format.

    Accepted: our checkpoints (``{"format": "resdet", "kind": "detector", "model": ...,
    "pixel_format": ...}``), torchvision detector state dicts (``fasterrcnn_resnet50_fpn`` names;
    its label 0 is background, so class k becomes our label k - 1), and detectron2 detector
    checkpoints (``.pth`` with ``"model"``, or ``.pkl`` read with a numpy-only unpickler). The
    pixel format the checkpoint records must equal ``model.pixel_format``. Every key must match.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found")
    if path.suffix == ".pkl":
        arrays, _, recorded = read_pkl(path)
        state = {k: torch.as_tensor(v) for k, v in arrays.items()}
        return _load_converted(model, "detectron2", state, recorded, str(path))
    return load_detector_state(model, read_checkpoint_file(path), str(path))


def checkpoint_class_names(path: str | os.PathLike) -> list[str] | None:
    """The class names (label order) one of our checkpoints records; None for other formats
    (torchvision's, detectron2's) and checkpoints written before classes were recorded."""
    if Path(path).suffix == ".pkl":
        return None
    obj = read_checkpoint_file(path)
    names = obj.get("class_names") if isinstance(obj, Mapping) else None
    return list(names) if names is not None else None


def read_checkpoint_file(path: str | os.PathLike) -> Any:
    """The object in a torch checkpoint file (not detectron2's ``.pkl``), read with
    ``weights_only=True``: an unsafe pickle or a corrupt or truncated file is a ValueError naming
    the file."""
    try:
        return load_torch_file(path)
    except ValueError:  # unsafe pickle, refused with its reason
        raise
    except Exception as e:  # a corrupt or truncated file
        raise ValueError(f"refusing to load {path}: not a plain tensor checkpoint ({e})") from None


def load_detector_state(
    model: FasterRCNN, obj: Mapping[str, Any], source: str = "<state dict>"
) -> str:
    """:func:`load_checkpoint` for a checkpoint already in memory (e.g. another detector's
    ``state_dict()``); ``source`` names it in errors. Returns the recognised format."""
    kind, state, recorded = _identify(obj, source)
    return _load_converted(model, kind, state, recorded, source)


def _load_converted(
    model: FasterRCNN,
    kind: str,
    state: dict[str, torch.Tensor],
    recorded: PixelFormat | None,
    source: str,
) -> str:
    if recorded is not None and recorded != model.pixel_format:
        raise ValueError(
            f"{source}: the checkpoint expects pixels {recorded}, but the model is "
            f"built for {model.pixel_format} (model.pixel_format in the config)"
        )
    if kind == "torchvision":
        state = _from_torchvision(state, model, source)
    elif kind == "detectron2":
        state = _from_detectron2(state, model, source)
    _load_strict(model, state, source)
    return kind


def _identify(obj: Any, path: str) -> tuple[str, dict[str, torch.Tensor], PixelFormat | None]:
    if not isinstance(obj, Mapping):
        raise ValueError(f"{path}: expected a dict checkpoint, got {type(obj).__name__}")
    if obj.get("format") == "resdet":
        if obj.get("kind") != "detector":
            raise ValueError(
                f"{path}: a resdet {obj.get('kind')!r} checkpoint is not a detector; "
                f"load it with backbones.weights.load_pretrained"
            )
        return "resdet", dict(obj["model"]), PixelFormat.from_dict(obj["pixel_format"])
    state = obj["model"] if isinstance(obj.get("model"), Mapping) else obj
    state = {k.removeprefix("module."): v for k, v in state.items() if isinstance(v, torch.Tensor)}
    if any(k.startswith("proposal_generator.") for k in state):
        return "detectron2", state, None
    if any(k.startswith("rpn.head.") for k in state) and any(
        k.startswith("backbone.body.") for k in state
    ):
        return "torchvision", state, TORCHVISION_PIXELS
    raise ValueError(
        f"{path}: not a resdet, torchvision or detectron2 detector checkpoint "
        f"(keys start {sorted(state)[:3]})"
    )


def _load_strict(model: nn.Module, state: Mapping[str, torch.Tensor], path: str) -> None:
    own = model.state_dict()
    # batch-norm bookkeeping: absent from frozen norms, meaningless for loading
    state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked") or k in own}
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state and state[k].shape != own[k].shape
    ]
    if missing or unexpected or shapes:
        raise ValueError(
            f"{path}: checkpoint does not fit the model; missing {missing[:10]}, "
            f"unexpected {unexpected[:10]}, shape mismatches {shapes[:10]}"
        )
    model.load_state_dict(state)


def _foreground_first(state: dict[str, torch.Tensor], prefix: str) -> None:
    """torchvision predictor (background first, per-class deltas incl. background) -> ours
    (background last, deltas for foreground classes only)."""
    w = state.pop(f"{prefix}cls_score.weight")
    bias = state.pop(f"{prefix}cls_score.bias")
    state[f"{prefix}cls_score.weight"] = torch.cat((w[1:], w[:1]))
    state[f"{prefix}cls_score.bias"] = torch.cat((bias[1:], bias[:1]))
    state[f"{prefix}bbox_pred.weight"] = state[f"{prefix}bbox_pred.weight"][4:]
    state[f"{prefix}bbox_pred.bias"] = state[f"{prefix}bbox_pred.bias"][4:]


_TV_RENAMES = (
    (r"^backbone\.body\.", "backbone.bottom_up."),
    (r"^backbone\.fpn\.inner_blocks\.(\d+)\.(?:0\.)?", r"backbone.lateral_convs.\1.0."),
    (r"^backbone\.fpn\.layer_blocks\.(\d+)\.(?:0\.)?", r"backbone.output_convs.\1.0."),
    (r"^rpn\.head\.conv\.(?:0\.0\.)?", "rpn.head.conv."),
    # MaskRCNNHeads: Sequential of Conv2dNormActivation (0-based), older releases mask_fcn1..
    (
        r"^roi_heads\.mask_head\.(\d+)\.0\.",
        lambda m: f"roi_heads.mask_head.mask_fcn{int(m.group(1)) + 1}.",
    ),
    (r"^roi_heads\.mask_predictor\.conv5_mask\.", "roi_heads.mask_head.deconv."),
    (r"^roi_heads\.mask_predictor\.mask_fcn_logits\.", "roi_heads.mask_head.predictor."),
)


def _from_torchvision(
    state: dict[str, torch.Tensor], model: FasterRCNN, path: str
) -> dict[str, torch.Tensor]:
    if not isinstance(model.backbone, FPN):
        raise ValueError(
            f"{path}: torchvision detector weights need an FPN model (model.arch: fpn)"
        )
    out = {}
    for key, value in state.items():
        for pattern, repl in _TV_RENAMES:
            key = re.sub(pattern, repl, key)
        out[key] = value
    _foreground_first(out, "roi_heads.box_predictor.")
    for name in ("weight", "bias"):  # torchvision's mask logits include the background's
        key = f"roi_heads.mask_head.predictor.{name}"
        if key in out:
            out[key] = out[key][1:]
    return out


def _from_detectron2(
    state: dict[str, torch.Tensor], model: FasterRCNN, path: str
) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    if isinstance(model.backbone, FPN):
        body = detectron2_state(
            {k: v for k, v in state.items() if k.startswith("backbone.bottom_up.")},
            model.backbone.bottom_up,
            path,
        )
        out.update({f"backbone.bottom_up.{k}": v for k, v in body.items()})
        # detectron2 names its FPN convs by level, fpn_lateral<k> for stride 2^k, as we name p<k>
        levels = {name[1:]: i for i, name in enumerate(model.backbone.level_names)}
        for key, value in state.items():
            m = re.match(r"^backbone\.fpn_(lateral|output)(\d)\.(.*)$", key)
            if m:
                kind = "lateral_convs" if m.group(1) == "lateral" else "output_convs"
                out[f"backbone.{kind}.{levels[m.group(2)]}.0.{m.group(3)}"] = value
    else:
        body = detectron2_state(sub_state(state, "backbone."), model.backbone, path)
        out.update({f"backbone.{k}": v for k, v in body.items()})
        head = {
            k[len("roi_heads.") :]: v
            for k, v in state.items()
            if k.startswith("roi_heads.res5.") and not k.startswith("roi_heads.res5.norm.")
        }
        res5 = detectron2_state(head, model.roi_heads.box_head.res5, path)
        out.update({f"roi_heads.box_head.res5.{k[len('layer4.') :]}": v for k, v in res5.items()})
    renames = {
        "proposal_generator.rpn_head.conv.": "rpn.head.conv.",
        "proposal_generator.rpn_head.objectness_logits.": "rpn.head.cls_logits.",
        "proposal_generator.rpn_head.anchor_deltas.": "rpn.head.bbox_pred.",
        "roi_heads.box_head.fc1.": "roi_heads.box_head.fc6.",
        "roi_heads.box_head.fc2.": "roi_heads.box_head.fc7.",
        "roi_heads.box_predictor.": "roi_heads.box_predictor.",
        "roi_heads.res5.norm.": "roi_heads.box_head.norm.",  # MoCo's Res5ROIHeadsExtraNorm
        "roi_heads.mask_head.": "roi_heads.mask_head.",  # mask_fcn1.., deconv, predictor
    }
    for key, value in state.items():
        for old, new in renames.items():
            if key.startswith(old):
                out[new + key[len(old) :]] = value
    _ratio_major_anchors(out, model)
    return out


def _ratio_major_anchors(state: dict[str, torch.Tensor], model: FasterRCNN) -> None:
    """detectron2 orders a location's anchors size-major, ours (torchvision's) ratio-major: permute
    the RPN outputs when a level has several sizes."""
    gen = model.rpn.anchor_generator
    a = gen.num_anchors[0]
    num_ratios = gen.num_ratios[0]
    num_sizes = a // num_ratios
    if num_sizes == 1:
        return
    # ours: index r * S + s ; detectron2: index s * R + r
    perm = torch.arange(a).view(num_sizes, num_ratios).t().reshape(-1)
    for name in ("weight", "bias"):
        key = f"rpn.head.cls_logits.{name}"
        state[key] = state[key][perm]
        key = f"rpn.head.bbox_pred.{name}"
        v = state[key]
        state[key] = v.view(a, 4, *v.shape[1:])[perm].reshape(v.shape)


# ----------------------------------------------------------------------------- training
def load_checkpoint_file(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint with `weights_only=True` onto the CPU; unsafe pickles are refused."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    ckpt = read_checkpoint_file(path)
    if not isinstance(ckpt, dict) or ckpt.get("format") != "resdet":
        raise ValueError(f"{path}: not a resdet training checkpoint (no 'format': 'resdet' entry)")
    return ckpt


class NonFiniteCheckpointError(ValueError):
    """The state to save holds a NaN or an infinity: nothing was written and the pointer was left
    as it was; the message names the file refused (`path`), the tensors (`names`) and the
    checkpoint kept (`kept`, None when there is none)."""

    def __init__(self, path: Path, names: list[str], kept: Path | None) -> None:
        self.path, self.names, self.kept = path, names, kept
        more = f" and {len(names) - 3} more" if len(names) > 3 else ""
        self.listed = f"{', '.join(names[:3])}{more}"
        super().__init__(
            f"refusing to write {path}: non-finite values in {self.listed}; last_checkpoint "
            f"still names {kept if kept is not None else 'no checkpoint'}"
        )


def nonfinite_tensors(state: Any, prefix: str = "") -> list[str]:
    """Dotted names of the floating-point tensors in `state` (nested dicts, lists, tuples) that hold
    a NaN or an infinity; one host sync per device."""
    found: list[tuple[str, torch.Tensor]] = []

    def walk(obj: Any, name: str) -> None:
        if isinstance(obj, torch.Tensor):
            if (obj.is_floating_point() or obj.is_complex()) and obj.numel():
                found.append((name, obj))
        elif isinstance(obj, Mapping):
            for k, v in obj.items():
                walk(v, f"{name}.{k}" if name else str(k))
        elif isinstance(obj, (list, tuple)):
            for i, v in enumerate(obj):
                walk(v, f"{name}.{i}" if name else str(i))

    walk(state, prefix)
    by_device: dict[torch.device, list[tuple[str, torch.Tensor]]] = {}
    for name, t in found:
        by_device.setdefault(t.device, []).append((name, t))
    bad = []
    for items in by_device.values():
        flags = torch.stack([torch.isfinite(t.detach()).all() for _, t in items]).cpu().tolist()
        bad += [name for (name, _), ok in zip(items, flags) if not ok]
    return bad


class Checkpointer:
    """Writes and finds checkpoints in `directory`; only the main process writes (`is_main`).

    A state holding a NaN or an infinity is never written (`NonFiniteCheckpointError`, raised on
    every process, which all check their own state): the previous checkpoint stays the resume point.
    """

    def __init__(self, directory: str | Path, keep_last: int = 3, is_main: bool = True) -> None:
        if keep_last < 0:
            raise ValueError(f"keep_last must be >= 0, got {keep_last}")
        self.directory = Path(directory)
        self.keep_last = keep_last
        self.is_main = is_main

    def save(self, name: str, state: dict[str, Any]) -> Path:
        """Check that every tensor of `state` is finite, atomically write it to `directory/name`,
        then move the pointer to it, then prune."""
        path = self.directory / name
        bad = nonfinite_tensors(state)
        if bad:
            try:
                kept = self.last()
            except FileNotFoundError:
                kept = None
            raise NonFiniteCheckpointError(path, bad, kept)
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
        return periodic_checkpoints(self.directory)

    def _prune(self) -> None:
        if self.keep_last == 0:
            return
        pointed = self.last()
        files = self.periodic()
        for p in files[: max(0, len(files) - self.keep_last)]:
            if p != pointed:
                p.unlink(missing_ok=True)

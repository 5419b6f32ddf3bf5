"""Load pretrained weights into a ResNet from any supported release, recording its pixel format.

Accepted sources of :func:`load_pretrained`:

- ``"torchvision:<arch>[.<weights>]"``, e.g. ``torchvision:resnet50`` (weights ``IMAGENET1K_V1``
  unless named, e.g. ``torchvision:resnet50.IMAGENET1K_V2``): read from the torch.hub cache
  (``<torch.hub.get_dir()>/checkpoints/<file>``), downloaded there first when online.
- ``"timm:<name>"``: ``timm.create_model(name, pretrained=True)`` (needs the Hugging Face hub or
  its local cache); the pixel format comes from the model's pretrained config.
- A path to a torch file (``.pth``, ``.pt``, ...; read with ``torch.load(weights_only=True)``) or a
  ``.safetensors`` file holding a torchvision/timm-named state dict, optionally wrapped as
  ``{"state_dict": ...}`` or ``{"model": ...}`` and/or with DDP's ``module.`` prefix.
- A path to a ``.pkl`` (read with a restricted unpickler: numpy arrays and plain containers only):
  the MSRA/Detectron release with caffe names (``conv1_w``, ``res_conv1_bn_s``,
  ``res2_0_branch2a_w``, ``res2_0_branch1_bn_b``, ``fc1000_w``; plain or wrapped in ``{"blobs":
  ...}`` / ``{"model": ...}``; ``*_momentum`` solver blobs ignored), or a detectron2 checkpoint with
  detectron2 names (``stem.conv1.weight``, ``res2.0.conv1.norm.weight``, ``res2.0.shortcut.*``,
  optionally under ``backbone.bottom_up.``). Caffe batch norms hold only scale and bias; they are
  loaded with ``running_mean = 0`` and ``running_var = 1 - eps`` so the function is the same.
- A resdet checkpoint: ``{"format": "resdet", "kind": "backbone" | "classifier", "model":
  state_dict, "pixel_format": PixelFormat.to_dict(), ...}``. A ``"detector"`` checkpoint loads only
  with ``prefix`` (e.g. ``"backbone.bottom_up."``): where a detector keeps its backbone is the
  detector's business, and :func:`resdet.io.checkpoints.load_backbone_weights` knows it.
- A checkpoint of the pytorch_resnet_cifar10 reproduction (``resnet20-12fca82f.th``, ...):
  ``{"state_dict": {"module.conv1.weight", ..., "module.linear.weight"}, "best_prec1": float}``,
  RGB 0..1 pixels normalised by the ImageNet mean/std. Its option-A shortcuts put the zero channels
  on both sides of the subsampled input, so a :func:`backbones.resnet.cifar_resnet` built with the
  default ``pad_placement="end"`` is switched to ``"both"`` (``LoadReport.pad_placement``): the
  loaded net computes the reference's function.
- A checkpoint of self-supervised training, its layout identified from its keys
  (:mod:`backbones.weights.ssl_layouts`): MoCo v1/v2 (``{"state_dict": {"module.encoder_q.*",
  "module.encoder_k.*", "module.queue", ...}, "epoch", "arch", "optimizer"}``; the query encoder
  is taken), MoCo v3 (``module.base_encoder.*``, ``module.momentum_encoder.*``,
  ``module.predictor.*``), DINO (``{"student": ..., "teacher": ...}`` with ``[module.]backbone.*``
  and ``[module.]head.*`` keys; the teacher is taken, the student with
  ``prefix="student.backbone."``), SwAV (bare names plus ``projection_head.*``, ``prototypes.*``)
  and BYOL-style (bare names plus ``projector.*``, ``predictor.*``, ``online_projector.*``...).
  Projection heads, predictors and prototypes are dropped (``LoadReport.dropped``), the other
  encoder and buffers ignored; the report's ``source_format`` names the layout (``moco_v2``,
  ``dino(teacher)``...). All expect torchvision's RGB 0..1 mean/std pixels. A state dict with no
  ResNet names, bare or under a known layout's prefix, is an error listing its top-level keys.

``prefix`` selects and strips the keys of a sub-module in any source (e.g. ``"backbone.body."``).
Keys saved from an :class:`backbones.fpn.FPN` (``bottom_up.*``) load its ResNet; the FPN's own
convs are reported as skipped. detectron2-named ``.pkl`` files are read as RGB torchvision
pixels when their ``__author__`` is ``"torchvision"`` and as caffe pixels otherwise.

Reading files is :mod:`backbones.weights.files`' job, renaming other releases' names
:mod:`backbones.weights.names`'; this module assigns the result and reports what it did.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import torch
from torch import Tensor, nn

from backbones.spec import PixelFormat
from backbones.weights.files import SOURCE_FORMATS, load_torch_file, read_pkl, read_source
from backbones.weights.names import (
    caffe_state,
    check_caffe_target,
    cifar_reference_state,
    detectron2_state,
    format_keys,
    sub_state,
)
from backbones.weights.ssl_layouts import (
    SSL_LAYOUTS,
    has_resnet_keys,
    identify_layout,
    split_layout,
)

__all__ = [
    "LoadReport",
    "load_pretrained",
    "load_state",
    "load_torch_file",
    "read_pkl",
    "read_source",
    "sub_state",
    "detectron2_state",
]

_CLASSIFIER = "fc."
_STAGE_MODULES = ("layer1", "layer2", "layer3", "layer4", "fc")


@dataclass
class LoadReport:
    """What :func:`load_pretrained` did.

    ``loaded``: model keys set from the source. ``skipped``: source keys of stages or a classifier
    the model does not build, or outside ``prefix``. ``classifier_not_loaded``: classifier keys
    left at their initial values (missing in the source, or another class count).
    ``ignored``: ``num_batches_tracked`` entries the model keeps no counter for, non-tensor
    entries, and a self-supervised checkpoint's other networks and buffers (MoCo's momentum
    encoder and queue, DINO's student). ``dropped``: a self-supervised checkpoint's head tensors
    (projection heads, predictors, prototypes, an ``fc`` that is not a classifier of the model's
    shape). Keys are the source's, after ``prefix``. (Caffe ``*_momentum`` solver blobs are
    dropped while reading the ``.pkl``.)
    """

    source: str
    source_format: str
    pixel_format: PixelFormat
    loaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    classifier_not_loaded: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    #: the option-A zero-channel placement set on the model because the source needs it, or None
    pad_placement: str | None = None


def load_pretrained(
    model: nn.Module,
    source: str | os.PathLike,
    *,
    allow_missing_classifier: bool = True,
    prefix: str | None = None,
    pixel_format: PixelFormat | None = None,
) -> LoadReport:
    """Copy the weights of ``source`` (see the module docstring) into ``model`` and return a report.

    ``model`` is a ResNet from :mod:`backbones.resnet`, or an :class:`backbones.fpn.FPN` whose
    ``bottom_up`` receives the weights. Keys of stages or a classifier the model does not build
    are skipped; any other missing or unexpected key or shape mismatch raises ``ValueError``
    listing them. With ``allow_missing_classifier`` the classifier may be absent from the source
    or have another class count, and is then left as initialised. ``model.pixel_format`` is set
    from the source, or to ``pixel_format`` when given.
    """
    state, fmt, pixels = read_source(str(source))
    if fmt == "resdet-detector" and prefix is None:
        raise ValueError(
            f"{source} is a resdet detector checkpoint: pass prefix= (the detector's "
            f"backbone keys, e.g. 'backbone.bottom_up.'), or load it with "
            f"resdet.io.checkpoints.load_backbone_weights, which knows the layout"
        )
    return load_state(
        model,
        state,
        source_format=fmt,
        pixel_format=pixel_format or pixels,
        source=str(source),
        allow_missing_classifier=allow_missing_classifier,
        prefix=prefix,
    )


def load_state(
    model: nn.Module,
    state: Mapping[str, Any],
    *,
    source_format: str,
    pixel_format: PixelFormat,
    source: str = "<state dict>",
    allow_missing_classifier: bool = True,
    prefix: str | None = None,
) -> LoadReport:
    """:func:`load_pretrained` for a state dict already in memory.

    ``state``: parameter name -> tensor (or numpy array), named as ``source_format`` (a tag of
    :data:`backbones.weights.files.SOURCE_FORMATS`) names them; ``pixel_format``: the input the
    weights expect; ``source``: how errors and the report name it.
    """
    target = model.bottom_up if hasattr(model, "bottom_up") else model
    state = dict(state)
    if prefix is not None:
        state = sub_state(state, prefix)
        if not state:
            raise ValueError(f"{source}: no key starts with prefix {prefix!r}")
    if any(k.startswith("bottom_up.") for k in state):  # saved from an FPN: keep its body
        skipped = [k for k in state if not k.startswith("bottom_up.")]
        state = sub_state(state, "bottom_up.")
    else:
        skipped = []
    report = LoadReport(
        source=source,
        source_format=source_format.removeprefix("resdet-"),
        pixel_format=pixel_format,
        skipped=skipped,
    )
    if source_format == "caffe":
        check_caffe_target(target, source)
        state = caffe_state(state, target, source)
    elif source_format == "detectron2":
        state = detectron2_state(state, target, source)
    elif source_format == "state_dict":
        layout = identify_layout(state)
        if layout is not None:
            state, report.dropped, report.ignored = split_layout(state, layout, target)
            report.source_format = layout.name
        elif not has_resnet_keys(state):
            raise ValueError(_unknown_layout(state, source))
    elif source_format == "pytorch_resnet_cifar10":
        state = cifar_reference_state(state)
        # its option-A shortcuts pad on both sides: the same weights, the reference's function
        if any(getattr(m, "shortcut", None) == "pad" for m in target.modules()):
            report.pad_placement = "both"
    _assign(target, state, report, allow_missing_classifier)
    if report.pad_placement is not None:
        target.set_pad_placement(report.pad_placement)
    target.pixel_format = report.pixel_format
    return report


def _unknown_layout(state: Mapping[str, Any], source: str) -> str:
    """The error for a state dict in which no ResNet names were found."""
    counts: dict[str, int] = {}
    for key in state:
        top = key.split(".")[0]
        counts[top] = counts.get(top, 0) + 1
    found = [f"{top}.* ({n})" if n > 1 else top for top, n in counts.items()]
    known = [f for f in SOURCE_FORMATS if f != "state_dict"] + [x.name for x in SSL_LAYOUTS]
    return (
        f"{source}: unknown checkpoint layout, no ResNet parameter names (conv1.weight, "
        f"layer1.0.conv1.weight, ...) bare or under a known prefix; top-level keys: "
        f"{format_keys(found)}. Known formats: {', '.join(known)}. To load a sub-module's keys, "
        f"pass prefix= (e.g. prefix='backbone.body.')"
    )


# ------------------------------------------------------------------------------- assignment


def _assign(
    target: nn.Module, source: dict[str, Any], report: LoadReport, allow_missing_classifier: bool
) -> None:
    current = target.state_dict()
    built = {name for name, _ in target.named_children()}
    new: dict[str, Tensor] = {}
    unexpected, mismatched, mismatched_keys = [], [], set()
    for key, value in source.items():
        tensor = (
            torch.from_numpy(np.ascontiguousarray(value))
            if isinstance(value, np.ndarray)
            else value
        )
        if not isinstance(tensor, Tensor):
            report.ignored.append(key)
        elif key.endswith("num_batches_tracked"):
            if key in current:
                new[key] = tensor
            else:
                report.ignored.append(key)
        elif key not in current:
            top = key.split(".")[0]
            if top in _STAGE_MODULES and top not in built:
                report.skipped.append(key)
            else:
                unexpected.append(key)
        elif tensor.shape != current[key].shape:
            if allow_missing_classifier and key.startswith(_CLASSIFIER):
                report.classifier_not_loaded.append(key)
            else:
                mismatched_keys.add(key)
                mismatched.append(
                    f"{key}: checkpoint {tuple(tensor.shape)} vs model {tuple(current[key].shape)}"
                )
        else:
            new[key] = tensor
    missing = [
        k
        for k in current
        if k not in new
        and not k.endswith("num_batches_tracked")
        and k not in report.classifier_not_loaded
        and k not in mismatched_keys
    ]
    if allow_missing_classifier:
        report.classifier_not_loaded += [k for k in missing if k.startswith(_CLASSIFIER)]
        missing = [k for k in missing if not k.startswith(_CLASSIFIER)]
    problems = []
    if missing:
        problems.append(f"missing keys ({len(missing)}): {format_keys(missing)}")
    if unexpected:
        problems.append(f"unexpected keys ({len(unexpected)}): {format_keys(unexpected)}")
    if mismatched:
        problems.append(f"shape mismatches ({len(mismatched)}): {format_keys(mismatched)}")
    if problems:
        raise ValueError(
            f"cannot load {report.source} into {type(target).__name__}: " + "; ".join(problems)
        )
    target.load_state_dict({**current, **new}, strict=True)
    report.loaded = sorted(new)

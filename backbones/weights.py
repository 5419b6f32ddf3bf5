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
- A resdet checkpoint: ``{"format": "resdet", "kind": "backbone" | "classifier" | "detector",
  "model": state_dict, "pixel_format": PixelFormat.to_dict(), ...}``. For ``"detector"`` the
  backbone lives under ``backbone.body.``, ``backbone.bottom_up.`` (FPN) or ``backbone.`` (C4) and a C4 detector's res5
  under ``roi_heads.box_head.res5.`` (or ``roi_heads.res5.``).

``prefix`` selects and strips the keys of a sub-module in any source (e.g. ``"backbone.body."``).
Keys saved from an :class:`backbones.fpn.FPN` (``bottom_up.*``) load its ResNet; the FPN's own
convs are reported as skipped. detectron2-named ``.pkl`` files are read as RGB torchvision
pixels when their ``__author__`` is ``"torchvision"`` and as caffe pixels otherwise.
"""
from __future__ import annotations

import importlib
import importlib.util
import io
import os
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch import Tensor, nn

from backbones.resnet import Bottleneck
from backbones.spec import CAFFE_PIXELS, TORCHVISION_PIXELS, PixelFormat

_CLASSIFIER = "fc."
_STAGE_MODULES = ("layer1", "layer2", "layer3", "layer4", "fc")
_LIST_LIMIT = 20


@dataclass
class LoadReport:
    """What :func:`load_pretrained` did.

    ``loaded``: model keys set from the source. ``skipped``: source keys of stages or a classifier
    the model does not build, or outside ``prefix``. ``classifier_not_loaded``: classifier keys
    left at their initial values (missing in the source, or another class count).
    ``ignored``: ``num_batches_tracked`` entries the model keeps no counter for, and non-tensor
    entries. (Caffe ``*_momentum`` solver blobs are dropped while reading the ``.pkl``.)
    """

    source: str
    source_format: str
    pixel_format: PixelFormat
    loaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    classifier_not_loaded: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)


def load_pretrained(model: nn.Module, source: str | os.PathLike, *,
                    allow_missing_classifier: bool = True, prefix: str | None = None,
                    pixel_format: PixelFormat | None = None) -> LoadReport:
    """Copy the weights of ``source`` (see the module docstring) into ``model`` and return a report.

    ``model`` is a ResNet from :mod:`backbones.resnet`, or an :class:`backbones.fpn.FPN` whose
    ``bottom_up`` receives the weights. Keys of stages or a classifier the model does not build
    are skipped; any other missing or unexpected key or shape mismatch raises ``ValueError``
    listing them. With ``allow_missing_classifier`` the classifier may be absent from the source
    or have another class count, and is then left as initialised. ``model.pixel_format`` is set
    from the source, or to ``pixel_format`` when given.
    """
    target = model.bottom_up if hasattr(model, "bottom_up") else model
    state, fmt, pixels = _read_source(str(source))
    if fmt == "resdet-detector" and prefix is None:
        state = _detector_backbone(state, str(source))
    if prefix is not None:
        state = sub_state(state, prefix)
        if not state:
            raise ValueError(f"{source}: no key starts with prefix {prefix!r}")
    if any(k.startswith("bottom_up.") for k in state):  # saved from an FPN: keep its body
        skipped = [k for k in state if not k.startswith("bottom_up.")]
        state = sub_state(state, "bottom_up.")
    else:
        skipped = []
    if fmt == "caffe":
        _check_caffe_target(target, str(source))
        state = _caffe_state(state, target, str(source))
    elif fmt == "detectron2":
        state = detectron2_state(state, target, str(source))
    report = LoadReport(source=str(source), source_format=fmt.removeprefix("resdet-"),
                        pixel_format=pixel_format or pixels, skipped=skipped)
    _assign(target, state, report, allow_missing_classifier)
    target.pixel_format = report.pixel_format
    return report


# --------------------------------------------------------------------------- reading sources

def _read_source(source: str) -> tuple[dict[str, Any], str, PixelFormat]:
    """-> (flat state dict with torchvision-like or caffe names, format tag, pixel format)."""
    if source.startswith("torchvision:"):
        return _strip_module(_unwrap(load_torch_file(_torchvision_file(source)))), "torchvision", \
            TORCHVISION_PIXELS
    if source.startswith("timm:"):
        return _timm_state(source[len("timm:"):])
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {source!r} not found (and not a 'torchvision:' or "
                                f"'timm:' name)")
    if path.suffix == ".pkl":
        return read_pkl(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        return _strip_module(load_file(str(path))), "state_dict", TORCHVISION_PIXELS
    obj = load_torch_file(path)
    if isinstance(obj, Mapping) and obj.get("format") == "resdet":
        for key in ("kind", "model", "pixel_format"):
            if key not in obj:
                raise ValueError(f"{path}: resdet checkpoint lacks the {key!r} entry")
        if obj["kind"] not in ("backbone", "classifier", "detector"):
            raise ValueError(f"{path}: unknown resdet checkpoint kind {obj['kind']!r}; allowed: "
                             f"backbone, classifier, detector")
        return dict(obj["model"]), f"resdet-{obj['kind']}", \
            PixelFormat.from_dict(obj["pixel_format"])
    return _strip_module(_unwrap(obj)), "state_dict", TORCHVISION_PIXELS


def sub_state(state: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """The entries of ``state`` whose key starts with ``prefix``, keyed without it."""
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def load_torch_file(path: str | os.PathLike) -> Any:
    """``torch.load`` onto the CPU with ``weights_only=True``: tensors and plain containers only; a file
    that needs unsafe unpickling raises ``ValueError`` naming it."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise ValueError(f"refusing to load {path}: it needs unsafe unpickling (arbitrary Python "
                         f"objects), only tensors and plain containers are accepted. {e}") from e


def _unwrap(obj: Any) -> dict[str, Any]:
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model"):
            if key in obj and isinstance(obj[key], Mapping):
                return dict(obj[key])
        return dict(obj)
    raise ValueError(f"expected a state dict (a mapping of names to tensors), got {type(obj)}")


def _strip_module(state: Mapping[str, Any]) -> dict[str, Any]:
    if state and all(k.startswith("module.") for k in state):
        return sub_state(state, "module.")
    return dict(state)


def _torchvision_file(source: str) -> Path:
    import torchvision.models as tvm

    name = source[len("torchvision:"):]
    arch, _, tag = name.partition(".")
    try:
        enum = tvm.get_model_weights(arch)
    except (ValueError, KeyError) as e:
        raise ValueError(f"unknown torchvision model {arch!r} in {source!r}") from e
    tag = tag or "IMAGENET1K_V1"
    if tag not in enum.__members__:
        raise ValueError(f"unknown weights {tag!r} for torchvision {arch}; allowed: "
                         f"{', '.join(enum.__members__)}")
    url = enum[tag].url
    path = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            torch.hub.download_url_to_file(url, str(path), progress=False)
        except Exception as e:  # any network failure: name what to fetch and where to put it
            raise RuntimeError(f"cannot download {url} ({e}); offline, download it elsewhere and "
                               f"place it at {path}") from e
    return path


def _timm_state(name: str) -> tuple[dict[str, Any], str, PixelFormat]:
    import timm

    if not timm.is_model(name.partition(".")[0]):
        raise ValueError(f"unknown timm model {name!r}")
    try:
        net = timm.create_model(name, pretrained=True)
    except Exception as e:  # hub unreachable or file absent from the local cache
        raise RuntimeError(f"cannot fetch timm weights {name!r} ({e}); offline, download the "
                           f"checkpoint elsewhere and pass its path instead") from e
    cfg = net.pretrained_cfg
    pixels = PixelFormat("RGB", 1.0, tuple(cfg.get("mean", TORCHVISION_PIXELS.mean)),
                         tuple(cfg.get("std", TORCHVISION_PIXELS.std)))
    return net.state_dict(), "timm", pixels


# ----------------------------------------------------------------------------- .pkl files

_PKL_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("collections", "OrderedDict"),
    ("_codecs", "encode"),
}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays inside builtin containers; refuses every other global."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _PKL_ALLOWED:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed")
        if module.startswith("numpy.core") and importlib.util.find_spec("numpy._core"):
            module = "numpy._core" + module[len("numpy.core"):]
        return getattr(importlib.import_module(module), name)


def read_pkl(path: Path) -> tuple[dict[str, Any], str, PixelFormat]:
    """Read an MSRA/detectron2 ``.pkl`` with an unpickler that admits only numpy arrays and builtins.

    Returns ``(arrays by name, naming scheme, recorded pixel format)``.
    """
    try:
        obj = _NumpyOnlyUnpickler(io.BytesIO(path.read_bytes()), encoding="latin1").load()
    except pickle.UnpicklingError as e:
        raise ValueError(f"refusing to load {path}: only numpy arrays in plain containers are "
                         f"accepted in .pkl weights ({e})") from e
    if not isinstance(obj, Mapping):
        raise ValueError(f"{path}: expected a dict of arrays, got {type(obj).__name__}")
    author = obj.get("__author__")
    for key in ("blobs", "model"):
        if isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    state = {k: v for k, v in obj.items() if isinstance(v, np.ndarray)}
    if any(k in state for k in ("conv1_w", "res_conv1_bn_s")):
        return state, "caffe", CAFFE_PIXELS
    if author == "torchvision":
        return state, "detectron2", TORCHVISION_PIXELS
    return state, "detectron2", CAFFE_PIXELS


_CAFFE_BLOCK = re.compile(r"res(\d)_(\d+)_branch(1|2a|2b|2c)(_bn)?_([wbs])$")
_CAFFE_BRANCH = {"1": ("downsample.0", "downsample.1"), "2a": ("conv1", "bn1"),
                 "2b": ("conv2", "bn2"), "2c": ("conv3", "bn3")}
_CAFFE_STEM = {"conv1_w": "conv1.weight", "res_conv1_bn_s": "bn1.weight",
               "res_conv1_bn_b": "bn1.bias", "fc1000_w": "fc.weight", "fc1000_b": "fc.bias"}


def _caffe_name(name: str) -> str | None:
    """MSRA caffe blob name -> torchvision parameter name (None when not a ResNet weight)."""
    if name in _CAFFE_STEM:
        return _CAFFE_STEM[name]
    m = _CAFFE_BLOCK.match(name)
    if m is None:
        return None
    stage, block, branch, bn, kind = m.groups()
    conv, norm = _CAFFE_BRANCH[branch]
    if bn:
        if kind == "w":
            return None
        return f"layer{int(stage) - 1}.{block}.{norm}.{'weight' if kind == 's' else 'bias'}"
    return f"layer{int(stage) - 1}.{block}.{conv}.{'weight' if kind == 'w' else 'bias'}"


def _check_caffe_target(target: nn.Module, source: str) -> None:
    if getattr(target, "norm", "BN") == "GN":
        raise ValueError(f"{source}: caffe batch-norm weights cannot be loaded into a GN network")
    if getattr(target, "block", None) is Bottleneck and not getattr(target, "stride_in_1x1", False):
        raise ValueError(f"{source}: MSRA/caffe bottleneck weights were trained with the stride "
                         f"in the 1x1 conv; build the model with stride_in_1x1=True")


def _bn_stats(target: nn.Module, norm_name: str) -> dict[str, Tensor]:
    """Identity statistics for a scale/bias-only norm: running_var = 1 - eps cancels the eps."""
    module = target.get_submodule(norm_name)
    n = module.weight.shape[0]
    return {f"{norm_name}.running_mean": torch.zeros(n),
            f"{norm_name}.running_var": torch.full((n,), 1.0 - module.eps)}


def _with_identity_stats(state: dict[str, Any], target: nn.Module) -> dict[str, Any]:
    """Add identity running statistics for every norm whose scale the state sets."""
    model_keys = target.state_dict().keys()
    for key in [k for k in state if k.endswith(".weight")]:
        norm = key[:-len(".weight")]
        if f"{norm}.running_mean" in model_keys and f"{norm}.running_mean" not in state:
            state.update(_bn_stats(target, norm))
    return state


def _caffe_state(blobs: dict[str, Any], target: nn.Module, source: str) -> dict[str, Any]:
    state: dict[str, Any] = {}
    unknown = []
    for name, value in blobs.items():
        if name.endswith("_momentum"):
            continue
        new = _caffe_name(name)
        if new is None:
            unknown.append(name)
        else:
            state[new] = value
    if unknown:
        raise ValueError(f"{source}: unknown caffe blobs: {_fmt(unknown)}")
    return _with_identity_stats(state, target)


_D2_RENAMES = ((r"^stem\.conv1\.norm\.", "bn1."), (r"^stem\.conv1\.", "conv1."),
               (r"^res(\d)\.", lambda m: f"layer{int(m.group(1)) - 1}."),
               (r"\.shortcut\.norm\.", ".downsample.1."), (r"\.shortcut\.", ".downsample.0."),
               (r"\.conv(\d)\.norm\.", r".bn\1."), (r"^linear\.", "fc."))


def detectron2_state(state: dict[str, Any], target: nn.Module, source: str) -> dict[str, Any]:
    """Rename detectron2 ResNet keys (``stem.conv1``, ``res2.0.conv1.norm``...) to torchvision's."""
    if any(k.startswith("backbone.bottom_up.") for k in state):
        state = sub_state(state, "backbone.bottom_up.")
    out = {}
    for name, value in state.items():
        for pattern, repl in _D2_RENAMES:
            name = re.sub(pattern, repl, name)
        out[name] = value
    has_stats = any(k.endswith("running_mean") for k in out)
    return out if has_stats else _with_identity_stats(out, target)


def _detector_backbone(state: dict[str, Any], source: str) -> dict[str, Any]:
    # FPN detectors hold the ResNet under backbone.bottom_up., C4 detectors under backbone.
    for prefix in ("backbone.body.", "backbone.bottom_up.", "backbone."):
        body = sub_state(state, prefix)
        if body:
            break
    else:
        raise ValueError(f"{source}: detector checkpoint has no 'backbone.' keys")
    for res5 in ("roi_heads.box_head.res5.", "roi_heads.res5."):
        body.update({"layer4." + k: v for k, v in sub_state(state, res5).items()})
    return body


# ------------------------------------------------------------------------------- assignment

def _fmt(keys: list[str]) -> str:
    more = f" ... and {len(keys) - _LIST_LIMIT} more" if len(keys) > _LIST_LIMIT else ""
    return ", ".join(keys[:_LIST_LIMIT]) + more


def _assign(target: nn.Module, source: dict[str, Any], report: LoadReport,
            allow_missing_classifier: bool) -> None:
    current = target.state_dict()
    built = {name for name, _ in target.named_children()}
    new: dict[str, Tensor] = {}
    unexpected, mismatched, mismatched_keys = [], [], set()
    for key, value in source.items():
        tensor = torch.from_numpy(np.ascontiguousarray(value)) if isinstance(value, np.ndarray) \
            else value
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
                mismatched.append(f"{key}: checkpoint {tuple(tensor.shape)} vs model "
                                  f"{tuple(current[key].shape)}")
        else:
            new[key] = tensor
    missing = [k for k in current if k not in new and not k.endswith("num_batches_tracked")
               and k not in report.classifier_not_loaded and k not in mismatched_keys]
    if allow_missing_classifier:
        report.classifier_not_loaded += [k for k in missing if k.startswith(_CLASSIFIER)]
        missing = [k for k in missing if not k.startswith(_CLASSIFIER)]
    problems = []
    if missing:
        problems.append(f"missing keys ({len(missing)}): {_fmt(missing)}")
    if unexpected:
        problems.append(f"unexpected keys ({len(unexpected)}): {_fmt(unexpected)}")
    if mismatched:
        problems.append(f"shape mismatches ({len(mismatched)}): {_fmt(mismatched)}")
    if problems:
        raise ValueError(f"cannot load {report.source} into {type(target).__name__}: "
                         + "; ".join(problems))
    target.load_state_dict({**current, **new}, strict=True)
    report.loaded = sorted(new)

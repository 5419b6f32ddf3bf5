"""Fetching and safely reading the files pretrained backbone weights come in.

:func:`read_source` turns a weight source (``torchvision:<arch>``, ``timm:<name>``, or a path to a
``.pth``/``.pt``/``.th``, ``.safetensors`` or ``.pkl`` file) into a flat state dict, a tag naming
its naming scheme and the pixel format the weights expect. Torch files are read with
``torch.load(weights_only=True)`` onto the CPU (:func:`load_torch_file`); ``.pkl`` files with an
unpickler that admits only numpy arrays in plain containers (:func:`read_pkl`). A torch file's
state dict is unwrapped from ``{"state_dict": ...}`` / ``{"model": ...}`` (DINO's ``student`` and
``teacher`` dicts are flattened under those names) and loses a DDP ``module.`` prefix. Renaming to
our parameter names is :mod:`backbones.weights.names`' job, telling a self-supervised layout's
backbone from its heads :mod:`backbones.weights.ssl_layouts`', assigning
:mod:`backbones.weights.load`'.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import io
import os
import pickle
import struct
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from backbones.spec import CAFFE_PIXELS, TORCHVISION_PIXELS, PixelFormat
from backbones.weights.names import sub_state

#: naming-scheme tags :func:`read_source` returns (``resdet-<kind>`` for resdet checkpoints); the
#: layout of a ``"state_dict"`` (plain, or one of
#: :data:`backbones.weights.ssl_layouts.SSL_LAYOUTS`) is identified from its keys when it is loaded
SOURCE_FORMATS = (
    "torchvision",
    "timm",
    "state_dict",
    "caffe",
    "detectron2",
    "pytorch_resnet_cifar10",
    "resdet-backbone",
    "resdet-classifier",
    "resdet-detector",
)
#: what ``torch.load`` / an unpickler raise on a file that is truncated, corrupt or of another kind
#: (a missing file stays ``FileNotFoundError``)
_CORRUPT = (RuntimeError, EOFError, KeyError, ValueError, OSError, struct.error, IndexError)


class WeightsFileError(ValueError):
    """A weights or checkpoint file cannot be used: truncated, corrupt, not a checkpoint, needing
    unsafe unpickling, or holding no state dict. The message names the file; command lines report
    it in one line (``resdet.utils.cli.run_tool``)."""


#: the two networks of a DINO checkpoint (``{"student": ..., "teacher": ..., "epoch": ...}``)
_DINO_PARTS = ("student", "teacher")


def read_source(source: str) -> tuple[dict[str, Any], str, PixelFormat]:
    """-> (flat state dict, naming-scheme tag (one of :data:`SOURCE_FORMATS`), pixel format).

    Raises ``FileNotFoundError`` for a missing path and :class:`WeightsFileError` (a ``ValueError``)
    naming the file for one that is truncated or corrupt, needs unsafe unpickling or holds no state
    dict.
    """
    if source.startswith("torchvision:"):
        return (
            _strip_module(_unwrap(load_torch_file(_torchvision_file(source)))),
            "torchvision",
            TORCHVISION_PIXELS,
        )
    if source.startswith("timm:"):
        return _timm_state(source[len("timm:") :])
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(
            f"checkpoint {source!r} not found (and not a 'torchvision:' or 'timm:' name)"
        )
    if path.suffix == ".pkl":
        return read_pkl(path)
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            state = load_file(str(path))
        except (SafetensorError, *_CORRUPT) as e:
            raise WeightsFileError(
                f"refusing to load {path}: not a readable safetensors file ({_one_line(e)})"
            ) from None
        return _strip_module(state), "state_dict", TORCHVISION_PIXELS
    obj = load_torch_file(path)
    if _is_cifar_reference(obj):
        return _strip_module(obj["state_dict"]), "pytorch_resnet_cifar10", TORCHVISION_PIXELS
    if isinstance(obj, Mapping) and obj.get("format") == "resdet":
        for key in ("kind", "model", "pixel_format"):
            if key not in obj:
                raise WeightsFileError(f"{path}: resdet checkpoint lacks the {key!r} entry")
        if obj["kind"] not in ("backbone", "classifier", "detector"):
            raise WeightsFileError(
                f"{path}: unknown resdet checkpoint kind {obj['kind']!r}; allowed: "
                f"backbone, classifier, detector"
            )
        return (
            dict(obj["model"]),
            f"resdet-{obj['kind']}",
            PixelFormat.from_dict(obj["pixel_format"]),
        )
    try:
        return _strip_module(_unwrap(obj)), "state_dict", TORCHVISION_PIXELS
    except ValueError as e:
        raise WeightsFileError(f"{path}: {e}") from None


def load_torch_file(path: str | os.PathLike) -> Any:
    """``torch.load`` onto the CPU (``map_location="cpu"``: tensors saved on a GPU load on a machine
    without one) with ``weights_only=True``: tensors and plain containers only, and
    ``argparse.Namespace`` (the ``args`` entry of DINO's and other training scripts' full
    checkpoints: a bag of attributes, nothing executed); a file that needs unsafe unpickling, or is
    truncated, corrupt or not a torch file, raises :class:`WeightsFileError` naming it."""
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise WeightsFileError(
            f"refusing to load {path}: it needs unsafe unpickling (arbitrary Python "
            f"objects), only tensors and plain containers are accepted. {e}"
        ) from e
    except FileNotFoundError:
        raise
    except _CORRUPT as e:
        empty = isinstance(path, (str, os.PathLike)) and os.path.getsize(path) == 0
        raise WeightsFileError(
            f"refusing to load {path}: "
            + (
                "empty file (0 bytes)"
                if empty
                else "not a readable torch checkpoint (truncated, corrupt or another kind of "
                f"file: {type(e).__name__}: {_one_line(e)})"
            )
        ) from None


def _one_line(e: BaseException, limit: int = 200) -> str:
    """`e`'s message on one line, at most `limit` characters."""
    text = " ".join(str(e).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _is_cifar_reference(obj: Any) -> bool:
    """A checkpoint of the pytorch_resnet_cifar10 reproduction: ``{"state_dict": {"module.conv1.
    weight", ..., "module.linear.weight", ...}, "best_prec1": float}`` (RGB 0..1 pixels normalised
    by the ImageNet mean/std)."""
    if not isinstance(obj, Mapping) or "best_prec1" not in obj:
        return False
    state = obj.get("state_dict")
    return isinstance(state, Mapping) and any(
        k.removeprefix("module.") == "linear.weight" for k in state
    )


def _unwrap(obj: Any) -> dict[str, Any]:
    """The state dict inside ``obj``: its ``"state_dict"`` or ``"model"`` entry, DINO's
    ``"student"`` and ``"teacher"`` dicts flattened to ``student.<key>`` / ``teacher.<key>`` (each
    without its DDP ``module.`` prefix; the rest of a DINO checkpoint dropped), or ``obj``
    itself."""
    if isinstance(obj, Mapping):
        if all(isinstance(obj.get(part), Mapping) for part in _DINO_PARTS):
            return {
                f"{part}.{key}": value
                for part in _DINO_PARTS
                for key, value in _strip_module(obj[part]).items()
            }
        for key in ("state_dict", "model"):
            if key in obj and isinstance(obj[key], Mapping):
                return dict(obj[key])
        return dict(obj)
    raise ValueError(f"expected a state dict (a mapping of names to tensors), got {type(obj)}")


def _strip_module(state: Mapping[str, Any]) -> dict[str, Any]:
    if state and all(k.startswith("module.") for k in state):
        return sub_state(state, "module.")
    return dict(state)


def torchvision_location(source: str) -> tuple[str, Path]:
    """`torchvision:<arch>[.<weights tag>]` -> (download URL, the torch.hub cache file it is read
    from). Unknown architectures or tags are a `ValueError` listing the allowed tags."""
    import torchvision.models as tvm

    name = source[len("torchvision:") :]
    arch, _, tag = name.partition(".")
    try:
        enum = tvm.get_model_weights(arch)
    except (ValueError, KeyError) as e:
        raise ValueError(f"unknown torchvision model {arch!r} in {source!r}") from e
    tag = tag or "IMAGENET1K_V1"
    if tag not in enum.__members__:
        raise ValueError(
            f"unknown weights {tag!r} for torchvision {arch}; allowed: "
            f"{', '.join(enum.__members__)}"
        )
    url = enum[tag].url
    return url, Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def _torchvision_file(source: str) -> Path:
    url, path = torchvision_location(source)
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            torch.hub.download_url_to_file(url, str(path), progress=False)
        except Exception as e:  # any network failure: name what to fetch and where to put it
            raise RuntimeError(
                f"cannot download {url} ({e}); offline, download it elsewhere and "
                f"place it at {path}"
            ) from e
    return path


def _timm_state(name: str) -> tuple[dict[str, Any], str, PixelFormat]:
    import timm

    if not timm.is_model(name.partition(".")[0]):
        raise ValueError(f"unknown timm model {name!r}")
    try:
        net = timm.create_model(name, pretrained=True)
    except Exception as e:  # hub unreachable or file absent from the local cache
        raise RuntimeError(
            f"cannot fetch timm weights {name!r} ({e}); offline, download the "
            f"checkpoint elsewhere and pass its path instead"
        ) from e
    cfg = net.pretrained_cfg
    pixels = PixelFormat(
        "RGB",
        1.0,
        tuple(cfg.get("mean", TORCHVISION_PIXELS.mean)),
        tuple(cfg.get("std", TORCHVISION_PIXELS.std)),
    )
    return net.state_dict(), "timm", pixels


# ----------------------------------------------------------------------------- .pkl files

_PKL_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("collections", "OrderedDict"),
    ("_codecs", "encode"),
}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays inside builtin containers; refuses every other global."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _PKL_ALLOWED:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed")
        if module.startswith("numpy.core") and importlib.util.find_spec("numpy._core"):
            module = "numpy._core" + module[len("numpy.core") :]
        return getattr(importlib.import_module(module), name)


def read_pkl(path: Path) -> tuple[dict[str, Any], str, PixelFormat]:
    """Read an MSRA/detectron2 ``.pkl`` with an unpickler admitting only numpy arrays and builtins.

    Returns ``(arrays by name, naming scheme, recorded pixel format)``.
    """
    data = path.read_bytes()
    try:
        obj = _NumpyOnlyUnpickler(io.BytesIO(data), encoding="latin1").load()
    except pickle.UnpicklingError as e:
        raise WeightsFileError(
            f"refusing to load {path}: only numpy arrays in plain containers are "
            f"accepted in .pkl weights ({e})"
        ) from e
    except _CORRUPT as e:  # a truncated or garbled pickle stream
        raise WeightsFileError(
            f"refusing to load {path}: not a readable .pkl file (truncated or corrupt: "
            f"{type(e).__name__}: {_one_line(e)})"
        ) from None
    if not isinstance(obj, Mapping):
        raise WeightsFileError(f"{path}: expected a dict of arrays, got {type(obj).__name__}")
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

"""Renaming other releases' backbone parameter names to ours (torchvision's ResNet names).

- MSRA/caffe blobs (``conv1_w``, ``res_conv1_bn_s``, ``res2_0_branch2a_w``, ...):
  :func:`caffe_state`; their batch norms hold only scale and bias and get identity statistics.
- detectron2 names (``stem.conv1``, ``res2.0.conv1.norm``, ``res2.0.shortcut``, ...):
  :func:`detectron2_state`.
- The pytorch_resnet_cifar10 reproduction (``linear.*`` classifier): :func:`cifar_reference_state`.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

import torch
from torch import Tensor, nn

from backbones.resnet import Bottleneck

_LIST_LIMIT = 20


def format_keys(keys: list[str]) -> str:
    """The first keys of ``keys`` comma-separated, with how many more were left out."""
    more = f" ... and {len(keys) - _LIST_LIMIT} more" if len(keys) > _LIST_LIMIT else ""
    return ", ".join(keys[:_LIST_LIMIT]) + more


def sub_state(state: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """The entries of ``state`` whose key starts with ``prefix``, keyed without it."""
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


_CAFFE_BLOCK = re.compile(r"res(\d)_(\d+)_branch(1|2a|2b|2c)(_bn)?_([wbs])$")
_CAFFE_BRANCH = {
    "1": ("downsample.0", "downsample.1"),
    "2a": ("conv1", "bn1"),
    "2b": ("conv2", "bn2"),
    "2c": ("conv3", "bn3"),
}
_CAFFE_STEM = {
    "conv1_w": "conv1.weight",
    "res_conv1_bn_s": "bn1.weight",
    "res_conv1_bn_b": "bn1.bias",
    "fc1000_w": "fc.weight",
    "fc1000_b": "fc.bias",
}


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


def check_caffe_target(target: nn.Module, source: str) -> None:
    if getattr(target, "norm", "BN") == "GN":
        raise ValueError(f"{source}: caffe batch-norm weights cannot be loaded into a GN network")
    if getattr(target, "block", None) is Bottleneck and not getattr(target, "stride_in_1x1", False):
        raise ValueError(
            f"{source}: MSRA/caffe bottleneck weights were trained with the stride "
            f"in the 1x1 conv; build the model with stride_in_1x1=True"
        )


def _bn_stats(target: nn.Module, norm_name: str) -> dict[str, Tensor]:
    """Identity statistics for a scale/bias-only norm: running_var = 1 - eps cancels the eps."""
    module = target.get_submodule(norm_name)
    n = module.weight.shape[0]
    return {
        f"{norm_name}.running_mean": torch.zeros(n),
        f"{norm_name}.running_var": torch.full((n,), 1.0 - module.eps),
    }


def _with_identity_stats(state: dict[str, Any], target: nn.Module) -> dict[str, Any]:
    """Add identity running statistics for every norm whose scale the state sets."""
    model_keys = target.state_dict().keys()
    for key in [k for k in state if k.endswith(".weight")]:
        norm = key[: -len(".weight")]
        if f"{norm}.running_mean" in model_keys and f"{norm}.running_mean" not in state:
            state.update(_bn_stats(target, norm))
    return state


def caffe_state(blobs: dict[str, Any], target: nn.Module, source: str) -> dict[str, Any]:
    """MSRA caffe blobs -> torchvision names, with identity statistics for every norm."""
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
        raise ValueError(f"{source}: unknown caffe blobs: {format_keys(unknown)}")
    return _with_identity_stats(state, target)


_D2_RENAMES = (
    (r"^stem\.conv1\.norm\.", "bn1."),
    (r"^stem\.conv1\.", "conv1."),
    (r"^res(\d)\.", lambda m: f"layer{int(m.group(1)) - 1}."),
    (r"\.shortcut\.norm\.", ".downsample.1."),
    (r"\.shortcut\.", ".downsample.0."),
    (r"\.conv(\d)\.norm\.", r".bn\1."),
    (r"^linear\.", "fc."),
)


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


def cifar_reference_state(state: dict[str, Any]) -> dict[str, Any]:
    """pytorch_resnet_cifar10 names -> ours: its classifier ``linear.*`` is our ``fc.*``; the rest
    (``conv1``, ``bn1``, ``layer{1,2,3}.{i}.{conv1,bn1,conv2,bn2}``) already match."""
    return {
        ("fc." + k[len("linear.") :] if k.startswith("linear.") else k): v for k, v in state.items()
    }

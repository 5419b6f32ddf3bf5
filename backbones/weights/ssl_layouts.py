"""Checkpoint layouts of the self-supervised literature: which keys are the ResNet, which are not.

Keys are as :func:`backbones.weights.files.read_source` leaves them: unwrapped from
``{"state_dict": ...}``, a DDP ``module.`` prefix on every key removed, and DINO's ``student`` /
``teacher`` dicts flattened to ``student.<key>`` / ``teacher.<key>`` (each without ``module.``).

- ``moco_v2``: the backbone is ``encoder_q.*``; its ``fc.0``/``fc.2`` MLP is dropped, the
  momentum encoder ``encoder_k.*`` and the ``queue``/``queue_ptr`` buffers are ignored.
- ``moco_v1``: the same, with a linear ``encoder_q.fc`` projection.
- ``moco_v3``: ``base_encoder.*``; its ``fc.*`` projection MLP and ``predictor.*`` are dropped,
  ``momentum_encoder.*`` is ignored.
- ``dino(teacher)``: ``teacher.backbone.*`` (DINO's released weights are the teacher's);
  ``teacher.head.*`` is dropped, ``student.*`` ignored.
- ``swav``: bare names; ``projection_head.*`` and ``prototypes.*`` are dropped.
- ``byol``: bare names; ``projector.*``, ``predictor.*``, ``online_projector.*`` and
  ``online_predictor.*`` are dropped.

A layout is identified from the keys alone (:func:`identify_layout`), never from the file name.
In every layout the backbone's ``fc.*`` is a head unless it is a 1000-way linear classifier whose
shape the target's own classifier has (:func:`split_layout`): a detection backbone, built without
``num_classes``, never receives it. The DINO student is read by passing
``prefix="student.backbone."`` to :func:`backbones.weights.load_pretrained`. All of these
checkpoints expect torchvision's pixels (RGB 0..1, ImageNet mean/std).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping

from torch import nn

from backbones.weights.names import sub_state

#: a torchvision ResNet parameter or buffer name (stem or a residual block)
_RESNET_KEY = re.compile(r"^(conv1\.weight$|bn1\.|layer\d\.\d+\.)")
_IMAGENET_CLASSES = 1000


@dataclass(frozen=True)
class SSLLayout:
    """One layout: ``name`` (the report's ``source_format``), ``encoder`` (prefix of the backbone
    taken; ``""`` for bare dicts), ``markers`` (key prefixes of which one must occur), ``heads``
    (prefixes of head tensors dropped) and ``others`` (prefixes of other networks and buffers
    ignored). Prefixes are matched against whole keys."""

    name: str
    encoder: str
    markers: tuple[str, ...]
    heads: tuple[str, ...] = ()
    others: tuple[str, ...] = ()


_SWAV_HEADS = ("projection_head.", "prototypes.")
_BYOL_HEADS = ("projector.", "predictor.", "online_projector.", "online_predictor.")

#: the known layouts, in the order they are tried (MoCo v2's MLP before MoCo v1's linear head)
SSL_LAYOUTS = (
    SSLLayout("moco_v2", "encoder_q.", ("encoder_q.fc.0.",), others=("encoder_k.", "queue")),
    SSLLayout("moco_v1", "encoder_q.", ("encoder_q.",), others=("encoder_k.", "queue")),
    SSLLayout(
        "moco_v3",
        "base_encoder.",
        ("base_encoder.",),
        heads=("predictor.",),
        others=("momentum_encoder.",),
    ),
    SSLLayout(
        "dino(teacher)",
        "teacher.backbone.",
        ("teacher.backbone.",),
        heads=("teacher.head.",),
        others=("student.",),
    ),
    SSLLayout("swav", "", _SWAV_HEADS, heads=_SWAV_HEADS),
    SSLLayout("byol", "", _BYOL_HEADS, heads=_BYOL_HEADS),
)


def has_resnet_keys(state: Mapping[str, Any]) -> bool:
    """Whether any key of ``state`` is a torchvision ResNet name (``conv1.weight``, ``bn1.*``,
    ``layer<i>.<j>.*``)."""
    return any(_RESNET_KEY.match(k) for k in state)


def identify_layout(state: Mapping[str, Any]) -> SSLLayout | None:
    """The first of :data:`SSL_LAYOUTS` whose marker occurs in ``state`` and whose encoder prefix
    holds ResNet names; ``None`` for any other state (e.g. a plain torchvision state dict)."""
    for layout in SSL_LAYOUTS:
        if any(k.startswith(layout.markers) for k in state) and has_resnet_keys(
            sub_state(state, layout.encoder)
        ):
            return layout
    return None


def split_layout(
    state: Mapping[str, Any], layout: SSLLayout, target: nn.Module
) -> tuple[dict[str, Any], list[str], list[str]]:
    """``state`` in ``layout`` -> (backbone state in torchvision names, dropped head keys, ignored
    keys), the two lists with ``state``'s own names.

    Keys outside the encoder, the heads and the other networks stay in the backbone state as
    they are, so loading it reports them as unexpected.
    """
    backbone: dict[str, Any] = {}
    dropped: list[str] = []
    ignored: list[str] = []
    for key, value in state.items():
        if key.startswith(layout.heads):
            dropped.append(key)
        elif key.startswith(layout.others):
            ignored.append(key)
        elif key.startswith(layout.encoder):
            backbone[key[len(layout.encoder) :]] = value
        else:
            backbone[key] = value
    fc = [k for k in backbone if k.startswith("fc.")]
    if fc and not _usable_classifier({k: backbone[k] for k in fc}, target):
        dropped += [layout.encoder + k for k in fc]
        backbone = {k: v for k, v in backbone.items() if k not in fc}
    return backbone, dropped, ignored


def _usable_classifier(fc: Mapping[str, Any], target: nn.Module) -> bool:
    """A 1000-way linear ``fc.weight`` (and ``fc.bias``) whose shape the target's classifier has."""
    if set(fc) - {"fc.weight", "fc.bias"} or "fc.weight" not in fc:
        return False
    weight = fc["fc.weight"]
    own = target.state_dict().get("fc.weight")
    return (
        weight.ndim == 2
        and weight.shape[0] == _IMAGENET_CLASSES
        and own is not None
        and tuple(own.shape) == tuple(weight.shape)
    )

"""detectron2 config keys -> resdet backbone arguments, and the pixel settings weights expect.

Pure functions over a detectron2 ``CfgNode`` (attribute access only): this module does not import
detectron2, so it is tested without it. :mod:`backbones.interop.detectron2` uses it to build
backbones.
"""

from __future__ import annotations

from typing import Any

from backbones.norm import NORMS
from backbones.spec import PixelFormat


def detectron2_pixel_settings(pixel_format: PixelFormat) -> dict[str, Any]:
    """The detectron2 ``INPUT.FORMAT``, ``MODEL.PIXEL_MEAN`` and ``MODEL.PIXEL_STD`` that give a
    backbone the input its weights were trained on.

    detectron2 feeds ``(image - PIXEL_MEAN) / PIXEL_STD`` with the image in 0..255 in
    ``INPUT.FORMAT`` order; ``pixel_format`` wants ``(image_0_1 * scale - mean) / std``, so both
    mean and std are multiplied by ``255 / scale``. Apply with
    ``cfg.merge_from_list([x for kv in settings.items() for x in kv])``.
    """
    k = 255.0 / pixel_format.scale
    return {
        "INPUT.FORMAT": pixel_format.channel_order,
        "MODEL.PIXEL_MEAN": [round(m * k, 4) for m in pixel_format.mean],
        "MODEL.PIXEL_STD": [round(s * k, 4) for s in pixel_format.std],
    }


def check_pixel_settings(cfg: Any, pixel_format: PixelFormat, source: str) -> None:
    """Raise ValueError, naming every key that differs and the value it needs, when ``cfg``'s
    input format, pixel mean or pixel std disagree with what the weights from ``source`` expect."""
    want = detectron2_pixel_settings(pixel_format)
    have = {
        "INPUT.FORMAT": cfg.INPUT.FORMAT,
        "MODEL.PIXEL_MEAN": list(cfg.MODEL.PIXEL_MEAN),
        "MODEL.PIXEL_STD": list(cfg.MODEL.PIXEL_STD),
    }
    wrong = []
    for key, value in want.items():
        got = have[key]
        same = got == value if isinstance(value, str) else _close(got, value)
        if not same:
            wrong.append(f"{key}={got} (needs {value})")
    if wrong:
        raise ValueError(
            f"the weights {source} expect other input pixels than the config gives: "
            f"{'; '.join(wrong)}; set them with "
            f"backbones.interop.detectron2_config.detectron2_pixel_settings(pixel_format)"
        )


def _close(a: list[float], b: list[float]) -> bool:
    return len(a) == len(b) and all(abs(x - y) <= 1e-3 * max(1.0, abs(y)) for x, y in zip(a, b))


def resnet_kwargs(cfg: Any, input_channels: int = 3) -> dict[str, Any]:
    """``backbones.resnet.ResNet`` keyword arguments from detectron2's ``MODEL.RESNETS.*`` and
    ``MODEL.BACKBONE.FREEZE_AT``; a setting resdet does not build (ResNeXt groups, deformable
    stages, another stem width, no norm) is a ValueError naming the key."""
    r = cfg.MODEL.RESNETS
    depth = int(r.DEPTH)
    if input_channels != 3:
        raise ValueError(f"resdet ResNets take 3 input channels, got input_shape {input_channels}")
    _require(r.NUM_GROUPS == 1, "MODEL.RESNETS.NUM_GROUPS", r.NUM_GROUPS, "1 (no ResNeXt)")
    _require(r.WIDTH_PER_GROUP == 64, "MODEL.RESNETS.WIDTH_PER_GROUP", r.WIDTH_PER_GROUP, "64")
    _require(r.STEM_OUT_CHANNELS == 64, "MODEL.RESNETS.STEM_OUT_CHANNELS", r.STEM_OUT_CHANNELS,
             "64")  # fmt: skip
    res2 = 64 if depth in (18, 34) else 256
    _require(r.RES2_OUT_CHANNELS == res2, "MODEL.RESNETS.RES2_OUT_CHANNELS", r.RES2_OUT_CHANNELS,
             f"{res2} for depth {depth}")  # fmt: skip
    deform = list(getattr(r, "DEFORM_ON_PER_STAGE", [False] * 4))
    _require(not any(deform), "MODEL.RESNETS.DEFORM_ON_PER_STAGE", deform, "all False")
    _require(r.NORM in NORMS, "MODEL.RESNETS.NORM", repr(r.NORM), f"one of {', '.join(NORMS)}")
    return {
        "depth": depth,
        "out_features": tuple(r.OUT_FEATURES),
        "norm": r.NORM,
        "freeze_at": int(cfg.MODEL.BACKBONE.FREEZE_AT),
        "stride_in_1x1": bool(r.STRIDE_IN_1X1),
        "res5_dilation": int(r.RES5_DILATION),
    }


def fpn_kwargs(cfg: Any) -> dict[str, Any]:
    """``backbones.fpn.FPN`` keyword arguments from detectron2's ``MODEL.FPN.*`` (the
    ``LastLevelMaxPool`` top block of ``build_resnet_fpn_backbone``)."""
    f = cfg.MODEL.FPN
    _require(f.FUSE_TYPE == "sum", "MODEL.FPN.FUSE_TYPE", repr(f.FUSE_TYPE), "'sum'")
    return {
        "in_features": tuple(f.IN_FEATURES),
        "out_channels": int(f.OUT_CHANNELS),
        "norm": f.NORM,
        "top_block": "maxpool",
    }


def _require(ok: bool, key: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ValueError(f"{key}={value} is not supported by resdet backbones; allowed: {allowed}")

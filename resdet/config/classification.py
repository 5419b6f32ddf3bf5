"""Classification-pretraining config: `load_cls_config(path, overrides)` -> `ClsConfig`.

A separate top-level config (the detection `Config` stays untouched) that shares the strict
loader, `_base_` inheritance, `key.sub=value` overrides and the `solver:`/`test:` sections with
detection recipes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from backbones.norm import NORMS
from resdet.config.model import Shortcut
from resdet.config.run import RunConfig, load_run_config, save_run_config
from resdet.config.solver import SolverConfig, TestConfig

__all__ = [
    "ClsConfig",
    "ClsDataConfig",
    "ClsModelConfig",
    "ClsSolverConfig",
    "ClsTestConfig",
    "load_cls_config",
    "save_cls_config",
]

#: a classifier trains its norms, so FrozenBN is not a choice
ClsNorm = Literal[tuple(n for n in NORMS if n != "FrozenBN")]

#: folder of each dataset format under the datasets root, when `data.path` is not given
DEFAULT_PATHS = {"cifar10": "cifar-10-batches-bin", "imagenet_folder": "imagenet"}


@dataclass
class ClsModelConfig:
    #: "imagenet": `ResNet(depth)` (7x7 stem, 4 stages); "cifar": `cifar_resnet(depth)` (6n+2,
    #: 3 stages)
    arch: Literal["imagenet", "cifar"] = "imagenet"
    depth: int = 18
    #: the plain twin: same layers, no shortcuts
    plain: bool = False
    shortcut: Shortcut = "B"
    #: bottlenecks only: stride on the first 1x1 (MSRA release) instead of the 3x3 (torchvision)
    stride_in_1x1: bool = False
    norm: ClsNorm = "BN"
    zero_init_residual: bool = False
    #: start from these weights (a path, "torchvision:<name>", "timm:<name>"); null = from scratch
    weights: str | None = None
    #: run the classifier channels-last (NHWC): batches (training, test) and weights in that layout
    channels_last: bool = False

    def __post_init__(self) -> None:
        if self.arch == "cifar" and (self.depth < 8 or (self.depth - 2) % 6):
            raise ValueError(
                f"model.depth: the CIFAR nets have depth 6n+2 (20, 32, 44, 56, 110, "
                f"...), got {self.depth}"
            )


@dataclass
class ClsDataConfig:
    #: "shapes": the synthetic shapes classification set, generated on first use into the cache
    #: ($RESDET_CACHE, else ~/.cache/resdet); "cifar10": the official binary release or class
    #: folders `train/<class>/*.jpg` + `test/<class>/*.jpg` (detected; decoded once, cached, kept in
    #: memory); "imagenet_folder": `train/<wnid>/*.JPEG` + `val/`
    format: Literal["shapes", "cifar10", "imagenet_folder"] = "shapes"
    #: datasets root; null = $RESDET_DATASETS, else `datasets/`
    root: str | None = None
    #: the dataset folder: under `root` when `root` is set, else as written (relative to the
    #: working directory, or absolute); null = the format's usual name under the datasets root.
    #: For "shapes", a folder already holding `train/` and `val/`; null = generate into the cache
    path: str | None = None
    #: cifar10 also has `train45k` / `val5k`, the paper's held-out split
    #: (`resdet.classification.cifar`)
    train_split: str = "train"
    test_split: str = "val"
    #: for a flat `val/` folder: lines `<image> <wnid|index>`; null = look for `<split>_labels.txt`
    labels_file: str | None = None
    #: "imagenet": short side in `short_side`, random `crop_size` crop, flip;
    #: "cifar": `pad` zero pixels each side, random `crop_size` crop, flip
    augment: Literal["imagenet", "cifar"] = "imagenet"
    crop_size: int = 224
    short_side: tuple[int, int] = (256, 480)
    #: test images: short side resized to this, then the centre crop (imagenet augment only)
    test_short_side: int = 256
    pad: int = 4
    #: the shapes set (format "shapes"): images per class in train and val, image side in pixels
    shapes_train_per_class: int = 800
    shapes_val_per_class: int = 200
    shapes_image_size: int = 64
    num_workers: int = 2

    def __post_init__(self) -> None:
        if self.crop_size < 1 or self.pad < 0 or self.num_workers < 0:
            raise ValueError("data.crop_size must be >= 1, data.pad and data.num_workers >= 0")
        lo, hi = self.short_side
        if self.augment == "imagenet" and not self.crop_size <= lo <= hi:
            raise ValueError(
                f"data.short_side {list(self.short_side)} must be increasing and "
                f"start at or above data.crop_size={self.crop_size}"
            )
        if self.format == "cifar10" and (self.augment, self.crop_size) != ("cifar", 32):
            raise ValueError(
                f"data.format=cifar10 trains with data.augment=cifar and "
                f"data.crop_size=32 (got {self.augment}, {self.crop_size})"
            )
        if self.augment == "imagenet" and self.test_short_side < self.crop_size:
            raise ValueError(f"data.test_short_side={self.test_short_side} is below data.crop_size")


@dataclass
class ClsSolverConfig(SolverConfig):
    #: "linear": the rate ramps from `warmup_factor * lr` to `lr` over `warmup_iters` (engine
    #: default); "constant": it stays at `warmup_factor * lr` for `warmup_iters`, then jumps to `lr`
    #: (the paper's ResNet-110 warm-up: 0.01 for about 400 iterations, then 0.1)
    warmup_method: Literal["linear", "constant"] = "linear"


@dataclass
class ClsTestConfig(TestConfig):
    ims_per_batch: int = 256
    #: average the logits of the 10 crops (corners, centre, their mirror images); imagenet augment
    ten_crop: bool = False


@dataclass
class ClsConfig(RunConfig):
    """A classification pretraining run: `model`, `data`, `solver`, `test`, plus `output_dir` and
    `seed`."""

    output_dir: str = "output/cls"
    model: ClsModelConfig = field(default_factory=ClsModelConfig)
    data: ClsDataConfig = field(default_factory=ClsDataConfig)
    solver: ClsSolverConfig = field(default_factory=ClsSolverConfig)
    test: ClsTestConfig = field(default_factory=ClsTestConfig)


def load_cls_config(path: str | Path, overrides: list[str] | None = None) -> ClsConfig:
    """`resdet.config.run.load_run_config` for a `ClsConfig`."""
    return load_run_config(ClsConfig, path, overrides)


def save_cls_config(cfg: ClsConfig, path: str | Path) -> None:
    """Write the resolved config as YAML that `load_cls_config` reads back to an equal config."""
    save_run_config(cfg, path)

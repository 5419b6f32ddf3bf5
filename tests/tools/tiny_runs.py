"""Config overrides that shrink configs/demo_shapes.yaml to seconds for the tool tests."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

#: narrow FPN and box head: a few thousand parameters above the backbone
NARROW_HEADS = ["model.fpn.out_channels=16", "model.roi_heads.fc_dim=32"]
#: two images a step, constant learning rate, no data-loader processes
SHORT_SCHEDULE = [
    "solver.ims_per_batch=2",
    "solver.steps=[]",
    "solver.warmup_iters=0",
    "data.num_workers=0",
]


def shapes(split: str, num_images: int, seed: int, image_size: int = 64) -> str:
    """A generated shapes set as a `data.train=`/`data.test=` list value."""
    key = "train" if split == "train" else "test"
    return (
        f"data.{key}=[{{format: shapes, split: {split}, num_images: {num_images}, "
        f"image_size: {image_size}, seed: {seed}}}]"
    )


def input_size(pixels: int) -> list[str]:
    """Train and test images resized to `pixels` on both sides."""
    return [
        f"model.input.min_size_train=[{pixels}]",
        f"model.input.max_size_train={pixels}",
        f"model.input.min_size_test={pixels}",
        f"model.input.max_size_test={pixels}",
    ]


#: configs/cls_shapes.yaml shrunk to seconds (16-px shapes, batch 10, no workers, no warm-up);
#: the schedule (`solver.max_iter`, `solver.steps`, `test.eval_period`) is each test's own
TINY_CLS = [
    "data.shapes_train_per_class=4",
    "data.shapes_val_per_class=2",
    "data.shapes_image_size=16",
    "data.short_side=[16,20]",
    "data.crop_size=16",
    "data.test_short_side=16",
    "data.num_workers=0",
    "solver.ims_per_batch=10",
    "solver.warmup_iters=0",
    "solver.log_period=1",
    "solver.checkpoint_period=2",
    "test.ims_per_batch=10",
]


#: configs/demo_shapes.yaml shrunk to seconds: 48..64-px images seen at 32 px, narrow heads, batch
#: 2, no workers, a random-init backbone (the demo's pretrained one is made by
#: tools/pretrain_cls.py)
TINY_DET = [
    shapes("train", 6, seed=3),
    shapes("val", 2, seed=3),
    *input_size(32),
    *NARROW_HEADS,
    *SHORT_SCHEDULE,
    "model.rpn.batch_size_per_image=32",
    "model.roi_heads.batch_size_per_image=32",
    "solver.base_lr=0.01",
    "solver.log_period=1",
    "solver.checkpoint_period=2",
    "test.eval_period=0",
    "model.backbone.weights=null",
    "model.backbone.norm=BN",
    "model.backbone.freeze_at=1",
]


def save_detector(model: nn.Module, path: Path, class_names: list[str] | None = None) -> Path:
    """`model` saved as the trainer saves a detector at iteration 0 (with `class_names` when
    given)."""
    ckpt = {
        "format": "resdet",
        "kind": "detector",
        "model": model.state_dict(),
        "iteration": 0,
        "pixel_format": model.pixel_format.to_dict(),
    }
    if class_names is not None:
        ckpt["class_names"] = class_names
    torch.save(ckpt, path)
    return path

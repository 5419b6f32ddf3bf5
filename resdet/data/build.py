"""From the `data:` config to datasets and DataLoaders.

`build_detection_dataset(cfg.data, "train")` -> `DetectionDataset` with random flip;
`build_detection_dataset(cfg.data, "test")` -> one without transforms or filtering.
Nothing is resized here: the detector resizes (`model.input`), so images keep their decoded size and
test-time predictions come back in the original image's pixels.
`build_train_loader` yields `(images, targets)` batches forever (see `GroupedBatchSampler`);
`build_test_loader` yields each rank's shard once, one image per batch.
"""

from __future__ import annotations

from typing import Literal

from torch.utils.data import DataLoader

from resdet.config.data import DataConfig
from resdet.data.catalog import load_source
from resdet.data.collate import collate_detection
from resdet.data.dataset import DetectionDataset
from resdet.data.errors import DatasetError
from resdet.data.samplers import (
    GroupedBatchSampler,
    InferenceSampler,
    SeededBatchSampler,
    SeededItems,
    aspect_groups,
    ignore_stop_signals,
    loader_generator,
)
from resdet.data.transforms import Compose, RandomHorizontalFlip


def build_transforms(data: DataConfig, split: Literal["train", "test"]) -> Compose:
    """Train: horizontal flip with `data.flip_prob`; test: identity."""
    if split == "train":
        return Compose([RandomHorizontalFlip(data.flip_prob)])
    return Compose([])


def build_detection_dataset(
    data: DataConfig,
    split: Literal["train", "test"],
    *,
    check_files: bool = True,
    folder_class_names: list[str] | None = None,
    masks: bool = False,
) -> DetectionDataset:
    """Read and concatenate `data.train` or `data.test`. `check_files=False` skips the image-exists
    check (evaluating a results file needs annotations only). `folder_class_names`: the classes of
    voc_folder entries that list none (see `resdet.data.catalog.load_source`). `masks`: targets
    carry instance masks (a Mask R-CNN's training set; COCO-format entries only)."""
    entries = data.train if split == "train" else data.test
    if not entries:
        raise DatasetError(f"data.{split} lists no dataset")
    sources = [
        load_source(
            e,
            data.root,
            data.cache_dir,
            duplicate_iou=data.duplicate_iou,
            folder_class_names=folder_class_names,
            masks=masks,
        )
        for e in entries
    ]
    return DetectionDataset(
        sources,
        build_transforms(data, split),
        train=split == "train",
        filter_empty=data.filter_empty,
        use_difficult=data.use_difficult,
        skip_bad_images=data.skip_bad_images,
        max_bad_images=data.max_bad_images,
        check_files=check_files,
        masks=masks,
    )


def build_train_loader(
    dataset: DetectionDataset,
    data: DataConfig,
    ims_per_batch: int,
    *,
    seed: int,
    rank: int = 0,
    world_size: int = 1,
    start_iter: int = 0,
) -> DataLoader:
    """Infinite loader of this rank's `ims_per_batch // world_size` images per step,
    resuming at `start_iter`. Each image's random flip is drawn from (`seed`, its global sample
    position) (`resdet.data.samplers.SeededItems`), so a resumed run sees the same flips as an
    uninterrupted one whatever `data.num_workers` is. Workers ignore SIGINT/SIGTERM (the trainer
    handles them)."""
    groups = (
        aspect_groups(dataset.records.heights.tolist(), dataset.records.widths.tolist())
        if data.aspect_grouping
        else [0] * len(dataset)
    )
    sampler = GroupedBatchSampler(
        groups, ims_per_batch, seed=seed, rank=rank, world_size=world_size, start_iter=start_iter
    )
    return DataLoader(
        SeededItems(dataset),
        batch_sampler=SeededBatchSampler(sampler),
        num_workers=data.num_workers,
        collate_fn=collate_detection,
        generator=loader_generator(seed, rank, start_iter),
        persistent_workers=data.num_workers > 0,
        worker_init_fn=ignore_stop_signals if data.num_workers > 0 else None,
    )


def build_test_loader(
    dataset: DetectionDataset, data: DataConfig, *, rank: int = 0, world_size: int = 1
) -> DataLoader:
    """This rank's contiguous shard of `dataset`, in order, one image per batch."""
    return DataLoader(
        dataset,
        batch_size=1,
        sampler=InferenceSampler(len(dataset), rank, world_size),
        num_workers=data.num_workers,
        collate_fn=collate_detection,
    )

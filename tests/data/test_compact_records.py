"""Compact records (`resdet.data.compact`) against the list of `ImageRecord`s the readers made
before (`legacy_records`, a frozen copy): the same records, the same masks, the same items."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from legacy_records import LegacyDataset, legacy_load_coco
from PIL import Image

from resdet.data.coco import load_coco
from resdet.data.compact import FLOAT64, CompactRecords, RecordsView
from resdet.data.dataset import DetectionDataset
from resdet.data.masks import rasterize
from resdet.data.records import ImageRecord
from resdet.data.samplers import aspect_groups, sample_seed, seeded_random_state
from resdet.data.transforms import RandomHorizontalFlip

SETS = {
    "tiny_coco_train": ("tiny_coco/annotations/instances_train2017.json", "tiny_coco/train2017"),
    "tiny_coco_val": ("tiny_coco/annotations/instances_val2017.json", "tiny_coco/val2017"),
    "val2014_100": ("coco_val2014_100/instances_val2014_100.json", None),
}


def images_for(ann_file: Path, folder: Path) -> Path:
    """Flat-colour JPEGs of the sizes `ann_file` states (a file set without pixels)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(json.loads(ann_file.read_text())["images"]):
        Image.new("RGB", (img["width"], img["height"]), (i % 256, 80, 160)).save(
            folder / img["file_name"]
        )
    return folder


def dataset_files(shared_data, tmp_path, name: str) -> tuple[Path, Path]:
    ann, images = SETS[name]
    ann_file = shared_data(ann)
    if images is None:
        return ann_file, images_for(ann_file, tmp_path / "images")
    return ann_file, shared_data(images)


def assert_records_equal(a: ImageRecord, b: ImageRecord) -> None:
    assert (a.file_name, a.image_id, a.height, a.width) == (
        b.file_name,
        b.image_id,
        b.height,
        b.width,
    )
    for field in ("boxes", "labels", "difficult", "crowd_boxes"):
        x, y = getattr(a, field), getattr(b, field)
        assert x.dtype == y.dtype and x.shape == y.shape and np.array_equal(x, y), field
    assert (a.segmentations is None) == (b.segmentations is None)
    for s, t in zip(a.segmentations or [], b.segmentations or [], strict=True):
        if isinstance(s, dict):
            assert s == t
        else:  # polygons: the same float64 values, bit for bit
            assert len(s) == len(t)
            for p, q in zip(s, t):
                p, q = np.asarray(p, np.float64), np.asarray(q, np.float64)
                assert p.shape == q.shape and (p.view(np.int64) == q.view(np.int64)).all()


@pytest.mark.filterwarnings("ignore:.*have no box to train on")
@pytest.mark.parametrize("name", list(SETS))
def test_items_equal_the_list_records_path(shared_data, tmp_path, name):
    """Every item (image tensor and every target field, masks included) of a training dataset
    with random flips equals the one built from the list records, sample by sample under the
    seeds the training loader uses; so do the aspect groups the sampler draws batches from."""
    ann_file, image_dir = dataset_files(shared_data, tmp_path, name)
    old_source = legacy_load_coco(ann_file, image_dir, masks=True)
    # mapped from the records cache (the first call writes it, the second maps it)
    load_coco(ann_file, image_dir, masks=True, cache=True, cache_dir=tmp_path / "cache")
    new_source = load_coco(
        ann_file, image_dir, masks=True, cache=True, cache_dir=tmp_path / "cache"
    )
    assert new_source.records.origin is not None
    assert new_source.class_names == old_source.class_names
    assert new_source.category_ids == old_source.category_ids
    assert len(new_source.records) == len(old_source.records)
    for a, b in zip(old_source.records, new_source.records, strict=True):
        assert_records_equal(a, b)

    flip = RandomHorizontalFlip(0.5)
    old = LegacyDataset([old_source], flip, train=True, masks=True)
    new = DetectionDataset([new_source], flip, train=True, masks=True)
    assert len(old) == len(new) > 40
    assert aspect_groups([r.height for r in old.records], [r.width for r in old.records]) == (
        aspect_groups(new.records.heights.tolist(), new.records.widths.tolist())
    )
    flipped = 0
    for i in range(len(old)):
        with seeded_random_state(sample_seed(0, i)):
            image_a, target_a = old[i]
        with seeded_random_state(sample_seed(0, i)):
            image_b, target_b = new[i]
        assert torch.equal(image_a, image_b)
        assert (
            target_a.keys()
            == target_b.keys()
            == {"boxes", "labels", "image_id", "orig_size", "file_name", "masks"}
        )
        for key, value in target_a.items():
            if isinstance(value, torch.Tensor):
                assert value.dtype == target_b[key].dtype and torch.equal(value, target_b[key])
            else:
                assert value == target_b[key]
        unflipped = new._train_boxes(new.records[i])[0]
        flipped += int(not np.array_equal(target_b["boxes"].numpy(), unflipped))
    assert 0 < flipped < len(new)


def test_val2014_masks_and_polygons_equal_the_list_records(shared_data):
    """All 830 annotations of coco_val2014_100: rasterised masks identical, and the polygons
    the float64 values the JSON parser gave, bit for bit (2 decimals: stored as scaled int32)."""
    path = shared_data("coco_val2014_100/instances_val2014_100.json")
    old = legacy_load_coco(path, "/images", masks=True).records
    new = load_coco(path, "/images", masks=True, cache=False).records
    assert isinstance(new, CompactRecords) and (new.part_code == 2).all()
    n = 0
    for a, b in zip(old, new, strict=True):
        assert_records_equal(a, b)
        np.testing.assert_array_equal(
            rasterize(a.segmentations, a.height, a.width),
            rasterize(b.segmentations, b.height, b.width),
        )
        n += len(b.segmentations)
    assert n == 830


def records_of_every_kind() -> list[ImageRecord]:
    """Text ids, no boxes, crowd boxes, difficult flags, compressed and uncompressed RLE,
    polygons with integers, 2 decimals and full float64 precision."""

    def rec(i, boxes, segs, crowd=()):
        n = len(boxes)
        return ImageRecord(
            file_name=f"/data/é{i}.jpg",
            image_id=f"img_{i}",
            height=40 + i,
            width=60,
            boxes=np.asarray(boxes, np.float32).reshape(-1, 4),
            labels=np.arange(n, dtype=np.int64),
            difficult=np.arange(n) % 2 == 1,
            crowd_boxes=np.asarray(crowd, np.float32).reshape(-1, 4),
            segmentations=segs,
        )

    return [
        rec(0, [[1, 2, 3, 4], [5.5, 6, 7, 8]], [[[1.0, 2.0, 5.0, 2.0, 3.0, 4.0]], [[0.1] * 6]]),
        rec(1, [], [], crowd=[[0, 0, 5, 5]]),
        rec(
            2,
            [[0, 0, 9, 9], [1, 1, 2, 2], [3, 3, 4, 4]],
            [
                {"size": [42, 60], "counts": "PPYo1"},
                {"size": [42, 60], "counts": [10, 5, 42 * 60 - 15]},
                [[1 / 3, 2.0, 5.25, 2.0, 3.0, 4.0], [7.0, 8.0, 9.0, 8.0, 9.0, 9.5]],
            ],
        ),
    ]


def test_round_trip_of_every_field_and_kind():
    records = records_of_every_kind()
    store = CompactRecords.from_records(records)
    assert store.id_kind == "str" and store.masks and len(store) == 3
    assert sorted(store.part_code.tolist()) == [0, 1, 1, FLOAT64]
    store.validate()
    for a, b in zip(records, store, strict=True):
        assert_records_equal(a, b)
    assert_records_equal(records[-1], store[-1])
    assert [r.image_id for r in store[1:]] == ["img_1", "img_2"]
    with pytest.raises(IndexError):
        store[3]
    # a record is the caller's to change: the store is not
    r = store[0]
    r.boxes[:] = 0
    assert store[0].boxes.any()
    again = pickle.loads(pickle.dumps(store))
    for a, b in zip(store, again, strict=True):
        assert_records_equal(a, b)
    boxes_only = CompactRecords.from_records(records, masks=False)
    assert boxes_only[2].segmentations is None and not hasattr(boxes_only, "seg_kind")


def test_a_view_orders_several_stores():
    records = records_of_every_kind()
    a = CompactRecords.from_records(records)
    b = CompactRecords.from_records(records[:1])
    view = RecordsView([a, b], np.array([3, 0, 2]))
    assert len(view) == 3 and [r.image_id for r in view] == ["img_0", "img_0", "img_2"]
    assert view[0].file_name == b[0].file_name and view[-1].height == 42
    assert view.heights.tolist() == [40, 40, 42] and list(view.file_names())[2] == "/data/é2.jpg"
    assert [r.image_id for r in view[1:]] == ["img_0", "img_2"]
    with pytest.raises(IndexError):
        RecordsView([a], np.array([3]))

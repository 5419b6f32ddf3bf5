"""DetectionDataset and the catalog: bad-input policy rows that need image files, names, items."""

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from coco_records import coco_annotation
from PIL import Image

from resdet.config.data import DataConfig
from resdet.data import (
    BadImageError,
    DatasetError,
    DatasetWarning,
    DetectionDataset,
    build_detection_dataset,
    build_train_loader,
    load_source,
)
from resdet.utils.paths import dataset_root


def write_coco(
    root: Path,
    images: list[tuple[str, int, int]],
    annotations: list[dict],
    name: str = "ann.json",
    make_files: bool = True,
) -> Path:
    """images: (file_name, height, width); files are real JPEGs unless make_files is False."""
    (root / "img").mkdir(parents=True, exist_ok=True)
    recs = []
    for i, (file_name, h, w) in enumerate(images, 1):
        recs.append({"id": i, "file_name": file_name, "height": h, "width": w})
        if make_files:
            Image.fromarray(np.full((h, w, 3), 17 * i, np.uint8)).save(root / "img" / file_name)
    path = root / name
    path.write_text(
        json.dumps(
            {
                "images": recs,
                "annotations": annotations,
                "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
            }
        )
    )
    return path


def ann(aid, image, bbox=(2, 2, 10, 8), crowd=0, cat=1):
    return coco_annotation(aid, image, bbox, cat, crowd, area=80.0)


def source(tmp_path, images, annotations, make_files=True):
    path = write_coco(tmp_path, images, annotations, make_files=make_files)
    return load_source(
        {"format": "coco", "ann_file": str(path), "image_dir": str(tmp_path / "img")}
    )


def test_item_format(tmp_path):
    src = source(tmp_path, [("a.jpg", 20, 30)], [ann(1, 1, (2, 3, 10, 8), cat=2)])
    image, target = DetectionDataset([src], train=True)[0]
    assert image.shape == (3, 20, 30) and image.dtype == torch.float32
    assert torch.allclose(image, torch.full_like(image, 17 / 255), atol=3 / 255)
    assert target["boxes"].dtype == torch.float32 and target["boxes"].tolist() == [[2, 3, 12, 11]]
    assert target["labels"].dtype == torch.int64 and target["labels"].tolist() == [1]
    assert target["image_id"] == 1 and target["orig_size"] == (20, 30)


def test_crowd_only_and_dropped_only_images_leave_training_counted(tmp_path):
    with pytest.warns(DatasetWarning, match="dropped 1 box"):
        src = source(
            tmp_path,
            [("a.jpg", 20, 30), ("b.jpg", 20, 30), ("c.jpg", 20, 30), ("d.jpg", 20, 30)],
            [ann(1, 1), ann(2, 2, crowd=1), ann(3, 3, bbox=(40, 40, 5, 5))],
        )
    with pytest.warns(
        DatasetWarning, match=r"3 of 4 images have no box to train on.*1 with only crowd"
    ):
        train = DetectionDataset([src], train=True)
    assert [r.image_id for r in train.records] == [1]
    assert len(DetectionDataset([src], train=True, filter_empty=False)) == 4
    assert len(DetectionDataset([src], train=False)) == 4  # the test set keeps every image


def test_empty_after_filtering_is_an_error(tmp_path):
    src = source(tmp_path, [("a.jpg", 20, 30)], [ann(1, 1, crowd=1)])
    with pytest.raises(DatasetError, match="empty after filtering"), warnings.catch_warnings():
        warnings.simplefilter("ignore", DatasetWarning)
        DetectionDataset([src], train=True)


def test_missing_files_listed_in_one_error_before_training(tmp_path):
    src = source(
        tmp_path,
        [("a.jpg", 20, 30), ("b.jpg", 20, 30), ("c.jpg", 20, 30)],
        [ann(1, 1), ann(2, 2), ann(3, 3)],
    )
    (tmp_path / "img/a.jpg").unlink()
    (tmp_path / "img/c.jpg").unlink()
    with pytest.raises(DatasetError, match="2 image file") as err:
        DetectionDataset([src], train=True)
    assert str(tmp_path / "img/a.jpg") in str(err.value) and str(tmp_path / "img/c.jpg") in str(
        err.value
    )
    assert "b.jpg" not in str(err.value)
    assert (
        len(DetectionDataset([src], train=True, check_files=False)) == 3
    )  # evaluation needs no pixels


@pytest.mark.parametrize("content", [b"", b"GIF89a not really", "truncated"])
def test_bad_image_error_or_skip_with_limit(tmp_path, content):
    src = source(
        tmp_path,
        [("a.jpg", 20, 30), ("b.jpg", 20, 30), ("c.jpg", 20, 30)],
        [ann(1, 1), ann(2, 2), ann(3, 3)],
    )
    bad = tmp_path / "img/b.jpg"
    bad.write_bytes(bad.read_bytes()[:200] if content == "truncated" else content)
    with pytest.raises(BadImageError, match="b.jpg"):
        DetectionDataset([src], train=True)[1]
    ds = DetectionDataset([src], train=True, skip_bad_images=True, max_bad_images=1)
    with pytest.warns(DatasetWarning, match="skipping bad image.*b.jpg"):
        _, target = ds[1]
    assert target["image_id"] == 3 and ds.bad_images == 1  # replaced by the next image, and counted
    with pytest.raises(BadImageError, match="max_bad_images=1"):
        ds[1]


def test_decoded_size_must_match_the_annotation(tmp_path):
    # the file says 30x30 for a 20x30 image (records are read-only views: no editing them)
    src = source(tmp_path, [("a.jpg", 30, 30)], [ann(1, 1)], make_files=False)
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(tmp_path / "img/a.jpg")
    with pytest.raises(BadImageError, match="a.jpg.*20x30.*30x30"):
        DetectionDataset([src], train=True)[0]


def test_concatenating_different_class_lists_is_an_error(tmp_path):
    a = source(tmp_path, [("a.jpg", 20, 30)], [ann(1, 1)])
    b = load_source(
        {"format": "shapes", "split": "val", "num_images": 2, "image_size": 64},
        cache_dir=str(tmp_path / "cache"),
    )
    with pytest.raises(DatasetError, match="class lists differ"):
        DetectionDataset([a, b], train=True)


def test_names_resolve_under_the_root(tmp_path, monkeypatch):
    (tmp_path / "coco/annotations").mkdir(parents=True)
    write_coco(
        tmp_path / "coco",
        [("x.jpg", 10, 10)],
        [ann(1, 1)],
        name="annotations/instances_val2017.json",
        make_files=False,
    )
    monkeypatch.delenv("RESDET_DATASETS", raising=False)
    assert dataset_root(None) == Path("datasets")
    monkeypatch.setenv("RESDET_DATASETS", str(tmp_path))
    assert dataset_root(None) == tmp_path and dataset_root("/explicit") == Path("/explicit")
    src = load_source("coco_2017_val")
    assert (
        src.records[0].file_name == str(tmp_path / "coco/val2017/x.jpg")
        and src.name == "coco_2017_val"
    )
    with pytest.raises(DatasetError, match="unknown dataset name 'coco_2017_tset'"):
        load_source("coco_2017_tset")
    with pytest.raises(DatasetError, match="unknown key 'split'"):
        load_source({"format": "coco", "ann_file": "a", "image_dir": "b", "split": "x"})
    with pytest.raises(DatasetError, match="missing key 'image_dir'"):
        load_source({"format": "coco", "ann_file": "a"})
    with pytest.raises(DatasetError, match="format"):
        load_source({"format": "yolo"})


def test_shapes_entry_from_config(tmp_path):
    data = DataConfig(
        train=[
            {"format": "shapes", "split": "train", "num_images": 6, "image_size": 64, "seed": 1}
        ],
        test=[{"format": "shapes", "split": "val", "num_images": 3, "image_size": 64, "seed": 1}],
        cache_dir=str(tmp_path),
    )
    train, test = build_detection_dataset(data, "train"), build_detection_dataset(data, "test")
    assert train.class_names == ["circle", "rectangle", "triangle", "star", "cross"]
    assert len(train) == 6 and len(test) == 3
    # no data-side resize: images arrive at their decoded size (the detector resizes)
    image, target = train[0]
    assert tuple(image.shape[1:]) == target["orig_size"] and len(target["boxes"]) >= 1
    image, target = test[0]
    assert tuple(image.shape[1:]) == target["orig_size"]


def test_train_loader_batches_group_and_resume(tmp_path):
    data = DataConfig(
        train=[
            {"format": "shapes", "split": "train", "num_images": 10, "image_size": 64, "seed": 5}
        ],
        cache_dir=str(tmp_path),
        num_workers=0,
    )
    dataset = build_detection_dataset(data, "train")

    def ids(loader, n):
        out = []
        for _, (images, targets) in zip(range(n), loader):
            assert len(images) == len(targets)
            assert all(
                tuple(i.shape[1:]) == t["orig_size"] for i, t in zip(images, targets)
            )  # not resized
            assert (
                len({t["orig_size"][1] >= t["orig_size"][0] for t in targets}) == 1
            )  # one orientation
            out.append([t["image_id"] for t in targets])
        return out

    full = ids(build_train_loader(dataset, data, 4, seed=1), 6)
    assert ids(build_train_loader(dataset, data, 4, seed=1, start_iter=4), 2) == full[4:]
    ranks = [
        ids(build_train_loader(dataset, data, 4, seed=1, rank=r, world_size=2), 6) for r in (0, 1)
    ]
    assert [a + b for a, b in zip(*ranks)] == full

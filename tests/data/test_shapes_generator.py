"""Synthetic shapes: COCO and VOC outputs agree through both readers; deterministic; cached."""

import json

import numpy as np

from resdet.data.coco import load_coco
from resdet.data.image_io import read_image
from resdet.data.shapes import (
    SHAPE_CLASSES,
    ensure_shapes_classification,
    ensure_shapes_detection,
    generate_shapes,
)
from resdet.data.voc import load_voc


def test_coco_and_voc_outputs_load_identically(tmp_path):
    out = generate_shapes(tmp_path / "s", "train", num_images=12, image_size=96, seed=0)
    coco = load_coco(out / "annotations.json", out / "JPEGImages")
    voc = load_voc(out, "train", class_names=SHAPE_CLASSES)
    assert coco.class_names == voc.class_names == SHAPE_CLASSES
    assert len(coco.records) == len(voc.records) == 12
    for c, v in zip(coco.records, voc.records):
        assert c.file_name == v.file_name and (c.height, c.width) == (v.height, v.width)
        np.testing.assert_array_equal(c.boxes, v.boxes)
        np.testing.assert_array_equal(c.labels, v.labels)
        assert 1 <= len(c.boxes) <= 5 and not v.difficult.any()
        assert read_image(c.file_name).shape == (c.height, c.width, 3)
        assert (c.boxes[:, 2:] > c.boxes[:, :2]).all() and (c.boxes[:, 2] <= c.width).all()
    labels = np.concatenate([r.labels for r in coco.records])
    assert len(set(labels.tolist())) >= 4  # several classes
    assert {r.width >= r.height for r in coco.records} == {True, False}  # both aspect groups


def test_shapes_have_pixels_inside_their_boxes(tmp_path):
    out = generate_shapes(tmp_path / "s", "val", num_images=6, image_size=96, seed=2)
    for r in load_coco(out / "annotations.json", out / "JPEGImages").records:
        img = read_image(r.file_name).astype(np.float32)
        for x1, y1, x2, y2 in r.boxes.astype(int):
            inside = img[y1:y2, x1:x2]
            # a filled shape makes the box interior far less like the plain textured
            # background around it
            assert inside.size and np.abs(inside - np.median(img, axis=(0, 1))).mean() > 5


def test_deterministic_from_the_seed(tmp_path):
    a = generate_shapes(tmp_path / "a", "train", 5, 64, seed=3)
    b = generate_shapes(tmp_path / "b", "train", 5, 64, seed=3)
    c = generate_shapes(tmp_path / "c", "train", 5, 64, seed=4)
    assert (a / "annotations.json").read_bytes() == (b / "annotations.json").read_bytes()
    assert (a / "JPEGImages/000003.jpg").read_bytes() == (b / "JPEGImages/000003.jpg").read_bytes()
    assert (a / "annotations.json").read_bytes() != (c / "annotations.json").read_bytes()


def test_cache_generates_once_per_argument_set(tmp_path, monkeypatch):
    monkeypatch.setenv("RESDET_CACHE", str(tmp_path))
    first = ensure_shapes_detection("val", 3, 64, seed=1)
    stamp = (first / "annotations.json").stat().st_mtime_ns
    assert ensure_shapes_detection("val", 3, 64, seed=1) == first
    assert (first / "annotations.json").stat().st_mtime_ns == stamp
    assert first.parent == tmp_path / "shapes"
    other = ensure_shapes_detection("train", 3, 64, seed=1)
    assert other != first and json.loads((other / "annotations.json").read_text())["images"]
    assert sorted(p.name for p in (tmp_path / "shapes").iterdir()) == sorted(
        [first.name, other.name]
    )  # no temp left


def test_classification_variant_layout(tmp_path):
    root = ensure_shapes_classification(3, 2, image_size=48, seed=0, cache_dir=tmp_path)
    for split, n in (("train", 3), ("val", 2)):
        assert sorted(p.name for p in (root / split).iterdir()) == sorted(SHAPE_CLASSES)
        for cls in SHAPE_CLASSES:
            files = sorted((root / split / cls).glob("*.jpg"))
            assert len(files) == n and read_image(files[0]).shape == (48, 48, 3)

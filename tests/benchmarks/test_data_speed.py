"""resdet.benchmarks.data_speed: the detection loader and the CIFAR stream are timed on tiny data
(CIFAR through tools/bench_data.py's test too); the COCO-like generator and the records memory
measurement at small size."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from resdet.benchmarks.data_speed import (
    cifar_batches,
    detection_loader_rate,
    first_step_seconds,
    measure_in_subprocess,
    pipeline_rate,
    shapes_training_set,
    training_rate,
    write_coco_like,
)
from resdet.classification.cifar import load_cifar
from resdet.data.coco import load_coco
from resdet.data.image_io import read_image
from tests.classification.test_cifar_memory import write_folders


def test_detection_loader_rate(tmp_path):
    dataset, data = shapes_training_set(
        num_images=4, image_size=64, workers=0, cache_dir=str(tmp_path)
    )
    assert len(dataset) == 4 and data.num_workers == 0
    assert detection_loader_rate(dataset, data, batch_size=2, batches=3) > 0


def test_cifar_pipeline_then_training_from_one_stream(tmp_path):
    write_folders(tmp_path / "cifar", per_class=2)
    data = load_cifar(tmp_path / "cifar", "train", cache_dir=str(tmp_path / "cache"))
    device = torch.device("cpu")
    batches = cifar_batches(data, 4, device)
    assert pipeline_rate(batches, 2, device) > 0
    assert training_rate(batches, depth=8, steps=1, batch_size=4, device=device) > 0


def test_coco_like_file_is_seeded_and_coco_shaped(tmp_path, shared_data):
    jpegs = shared_data("tiny_coco/train2017")
    a = write_coco_like(tmp_path / "a", images=400, seed=3, jpeg_dir=jpegs)
    b = write_coco_like(tmp_path / "b", images=400, seed=3, jpeg_dir=jpegs)
    assert a.read_bytes() == b.read_bytes()
    data = json.loads(a.read_text())
    anns = data["annotations"]
    assert len(data["images"]) == 400 and 6.5 < len(anns) / 400 < 8.1
    assert len({c["id"] for c in data["categories"]}) == 80
    crowd = [x for x in anns if x["iscrowd"]]
    assert 0 < len(crowd) < 0.03 * len(anns)
    points = [sum(len(p) for p in x["segmentation"]) / 2 for x in anns if not x["iscrowd"]]
    assert 20 < np.mean(points) < 30
    for img in data["images"][:20]:  # symlinks to real JPEGs of the stated size
        link = a.parent / "images" / img["file_name"]
        assert link.is_symlink()
        assert read_image(str(link)).shape[:2] == (img["height"], img["width"])
    for x in crowd:
        img = data["images"][x["image_id"] - 1]
        assert sum(x["segmentation"]["counts"]) == img["height"] * img["width"]
    src = load_coco(a, a.parent / "images", masks=True, cache=False)
    assert sum(len(r.boxes) for r in src.records) == len(anns) - len(crowd)


def test_records_in_workers_grow_by_far_less_than_python_lists(tmp_path):
    """One measuring process per layout: the compact records cost the forked workers next to
    nothing; the same records as Python lists cost them pages (the problem this layout solves)."""
    ann = write_coco_like(tmp_path / "coco", images=1500, seed=0)
    args = dict(
        ann_file=str(ann),
        image_dir=str(ann.parent / "images"),
        masks=True,
        cache_dir=str(tmp_path / "cache"),
        workers=2,
    )
    cold = measure_in_subprocess(**args)
    warm = measure_in_subprocess(**args)
    lists = measure_in_subprocess(layout="lists", **args)
    assert cold["images"] == warm["images"] == lists["images"] > 1400
    # 1,500 images: about 20 MB a worker as lists, under 1 MB (noise) as compact records
    assert max(warm["worker_growth"]) < 4e6 and warm["held_anon"] < 5e6
    assert min(lists["worker_growth"]) > 10e6
    assert warm["worker_touched"] == lists["worker_touched"]


def test_first_step_of_train_det_cold_then_warm(tmp_path):
    """tools/train_det.py on a generated COCO-like file reaches its first step, and the time to it
    is measured."""
    ann = write_coco_like(tmp_path / "coco", images=60, seed=0, jpeg_dir=None)
    root = Path(__file__).resolve().parents[2]
    args = (
        root / "tools" / "train_det.py",
        root / "configs" / "demo_shapes.yaml",
        ann,
        ann.parent / "images",
        tmp_path / "cache",
    )
    cold = first_step_seconds(*args, tmp_path / "run")
    assert cold > 0 and (tmp_path / "run" / "metrics.jsonl").read_text().strip()

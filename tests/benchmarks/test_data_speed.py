"""resdet.benchmarks.data_speed: the detection loader and the CIFAR stream are timed on tiny data
(CIFAR through tools/bench_data.py's test too)."""

from __future__ import annotations

import torch

from resdet.benchmarks.data_speed import (
    cifar_batches,
    detection_loader_rate,
    pipeline_rate,
    shapes_training_set,
    training_rate,
)
from resdet.classification.cifar import load_cifar
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

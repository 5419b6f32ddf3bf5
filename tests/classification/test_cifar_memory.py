"""CIFAR in memory: layout detection, the folder reader and its cache, held-out split, batched
augmentation and the in-memory train/test batches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from resdet.classification.cifar import (
    CifarFormatError,
    CifarSplit,
    cifar_layout,
    held_out_mask,
    load_cifar,
)
from resdet.classification.loader import InMemoryTestBatches, InMemoryTrainBatches
from resdet.classification.transforms import pad_crop_flip

SHARED_CIFAR = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "cifar10_jpeg"


def write_folders(root: Path, per_class: int = 3, classes=("cat", "airplane", "dog")) -> dict:
    """PNG (lossless) class folders;
    returns {split: [(array HWC, class name), ...]} in file order."""
    rng = np.random.default_rng(0)
    content = {}
    for split in ("train", "test"):
        content[split] = []
        for name in sorted(classes):
            (root / split / name).mkdir(parents=True)
            for i in range(per_class):
                pixels = rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / name / f"{i:04d}.png")
                content[split].append((pixels, name))
    return content


def test_folder_layout_reads_every_image_in_sorted_class_order(tmp_path):
    content = write_folders(tmp_path / "cifar")
    assert cifar_layout(tmp_path / "cifar") == "folders"
    data = load_cifar(tmp_path / "cifar", "train", cache_dir=tmp_path / "cache", progress=False)
    assert data.classes == ["airplane", "cat", "dog"]
    assert data.images.dtype == torch.uint8 and data.images.shape == (9, 3, 32, 32)
    for i, (pixels, name) in enumerate(content["train"]):
        assert torch.equal(data.images[i].permute(1, 2, 0), torch.from_numpy(pixels))
        assert data.classes[int(data.labels[i])] == name


def test_folder_split_is_cached_by_content(tmp_path, monkeypatch):
    write_folders(tmp_path / "cifar")
    first = load_cifar(tmp_path / "cifar", "test", cache_dir=tmp_path / "cache", progress=False)
    assert len(list((tmp_path / "cache" / "cifar").glob("*.pt"))) == 1

    def no_decode(path):
        raise AssertionError(f"decoded {path} although the cache holds the split")

    monkeypatch.setattr("resdet.classification.cifar.read_image", no_decode)
    again = load_cifar(tmp_path / "cifar", "test", cache_dir=tmp_path / "cache", progress=False)
    assert torch.equal(again.images, first.images) and torch.equal(again.labels, first.labels)
    # a changed file changes the key: decoded afresh (and here refused by the stub)
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(
        tmp_path / "cifar" / "test" / "cat" / "0009.png"
    )
    with pytest.raises(AssertionError, match="decoded"):
        load_cifar(tmp_path / "cifar", "test", cache_dir=tmp_path / "cache", progress=False)


def test_neither_layout_names_the_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(CifarFormatError, match=r"empty: neither CIFAR layout"):
        load_cifar(tmp_path / "empty", "train")
    with pytest.raises(CifarFormatError, match=r"nowhere: CIFAR folder not found"):
        load_cifar(tmp_path / "nowhere", "train")


def test_image_of_another_size_is_named(tmp_path):
    write_folders(tmp_path / "cifar")
    Image.fromarray(np.zeros((30, 32, 3), np.uint8)).save(
        tmp_path / "cifar" / "train" / "dog" / "0001.png"
    )
    with pytest.raises(CifarFormatError, match=r"dog/0001\.png: image is 32x30"):
        load_cifar(tmp_path / "cifar", "train", cache_dir=tmp_path / "cache", progress=False)


def test_held_out_split_is_the_last_images_of_each_class():
    labels = torch.tensor([0, 1, 0, 1, 0, 1, 0, 1])
    mask = held_out_mask(labels, 2, per_class=2)
    assert mask.tolist() == [False, False, False, False, True, True, True, True]
    with pytest.raises(CifarFormatError, match="too few"):
        held_out_mask(labels, 2, per_class=4)


def test_pad_crop_flip_equals_cropping_each_image_by_hand():
    torch.manual_seed(0)
    images = torch.randint(0, 256, (64, 3, 8, 6), dtype=torch.uint8)
    pad = 2
    out = pad_crop_flip(images, pad, torch.Generator().manual_seed(3))
    # replay the generator's draws in the documented order: row offsets, column offsets, flips
    g = torch.Generator().manual_seed(3)
    dy = torch.randint(0, 2 * pad + 1, (64, 1), generator=g)[:, 0]
    dx = torch.randint(0, 2 * pad + 1, (64, 1), generator=g)[:, 0]
    flip = (torch.rand((64, 1), generator=g) < 0.5)[:, 0]
    padded = np.pad(images.numpy(), ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    for i in range(64):
        crop = padded[i, :, dy[i] : dy[i] + 8, dx[i] : dx[i] + 6]
        expected = crop[:, :, ::-1] if flip[i] else crop
        assert np.array_equal(out[i].numpy(), expected)
    assert out.dtype == torch.uint8
    assert 0 < int(flip.sum()) < 64 and len(set(dy.tolist())) == 2 * pad + 1  # all offsets drawn


def test_in_memory_batches_resume_exactly_and_shard_the_test_set():
    data = CifarSplit(
        torch.randint(0, 256, (50, 3, 32, 32), dtype=torch.uint8),
        torch.arange(50) % 10,
        [str(i) for i in range(10)],
    )
    stream = iter(InMemoryTrainBatches(data, 8, pad=4, seed=1))
    batches = [next(stream) for _ in range(9)]  # past one epoch (50 images)
    resumed = next(iter(InMemoryTrainBatches(data, 8, pad=4, seed=1, start_batch=7)))
    assert torch.equal(resumed[0][0], batches[7][0][0])
    assert torch.equal(resumed[1][0]["labels"], batches[7][1][0]["labels"])
    assert not torch.equal(batches[0][0][0], batches[1][0][0])
    shards = [list(InMemoryTestBatches(data, 7, rank=r, world_size=3)) for r in range(3)]
    labels = torch.cat([y for shard in shards for _, y in shard])
    assert labels.tolist() == data.labels.tolist()


@pytest.mark.skipif(
    not SHARED_CIFAR.is_dir(), reason="../shared/data/cifar10_jpeg not beside the checkout"
)
def test_real_cifar_jpeg_test_split(tmp_path):
    data = load_cifar(SHARED_CIFAR, "test", cache_dir=tmp_path, progress=False)
    assert data.classes == [
        "airplane",
        "automobile",
        "bird",
        "cat",
        "deer",
        "dog",
        "frog",
        "horse",
        "ship",
        "truck",
    ]
    assert data.images.shape == (10000, 3, 32, 32)
    assert torch.bincount(data.labels).tolist() == [1000] * 10

"""CIFAR-10 binary reader on files written in the official `cifar-10-batches-bin` layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from resdet.classification.cifar import CifarFormatError, cifar_layout, load_cifar

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def write_batch(path: Path, images_hwc: np.ndarray, labels: np.ndarray) -> None:
    """Each record: label byte, then the 1024 R, 1024 G, 1024 B bytes of the image, row-major."""
    with open(path, "wb") as f:
        for img, label in zip(images_hwc, labels):
            f.write(bytes([int(label)]))
            for c in range(3):
                f.write(img[:, :, c].tobytes(order="C"))


@pytest.fixture
def cifar_root(tmp_path: Path) -> tuple[Path, dict[str, tuple[np.ndarray, np.ndarray]]]:
    root = tmp_path / "cifar-10-batches-bin"
    root.mkdir()
    # the real file ends with blank lines
    (root / "batches.meta.txt").write_text("\n".join(CLASSES) + "\n\n")
    rng = np.random.default_rng(0)
    content = {}
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        images = rng.integers(0, 256, size=(3, 32, 32, 3), dtype=np.uint8)
        labels = rng.integers(0, 10, size=3)
        write_batch(root / name, images, labels)
        content[name] = (images, labels)
    return root, content


def test_reads_official_layout(cifar_root):
    root, content = cifar_root
    assert cifar_layout(root) == "binary"
    train = load_cifar(root, "train")
    test = load_cifar(root, "test")
    assert train.classes == CLASSES
    assert len(train) == 15 and len(test) == 3
    # record 4 of the train split is record 1 of data_batch_2
    images, labels = content["data_batch_2.bin"]
    assert train.images.dtype == torch.uint8 and train.images.shape == (15, 3, 32, 32)
    assert torch.equal(train.images[4].permute(1, 2, 0), torch.from_numpy(images[1]))
    assert train.labels[4] == labels[1]
    images, labels = content["test_batch.bin"]
    assert test.labels.tolist() == labels.tolist()
    assert torch.equal(test.images[2].permute(1, 2, 0), torch.from_numpy(images[2]))


def test_wrong_record_size_names_file_and_count(cifar_root):
    root, _ = cifar_root
    with open(root / "data_batch_3.bin", "ab") as f:
        f.write(b"\x00" * 100)
    with pytest.raises(CifarFormatError, match=r"data_batch_3\.bin.*3 full records and 100 bytes"):
        load_cifar(root, "train")
    load_cifar(root, "test")  # the other split is unaffected


def test_bad_label_names_record(cifar_root):
    root, _ = cifar_root
    raw = bytearray((root / "test_batch.bin").read_bytes())
    raw[2 * 3073] = 10
    (root / "test_batch.bin").write_bytes(bytes(raw))
    with pytest.raises(CifarFormatError, match=r"test_batch\.bin: record 2: label 10"):
        load_cifar(root, "test")


def test_missing_files_are_named(cifar_root):
    root, _ = cifar_root
    (root / "data_batch_5.bin").unlink()
    with pytest.raises(CifarFormatError, match=r"data_batch_5\.bin: missing"):
        load_cifar(root, "train")
    (root / "batches.meta.txt").unlink()
    with pytest.raises(CifarFormatError, match=r"batches\.meta\.txt: missing"):
        load_cifar(root, "test")

"""ImageNet-layout folder reader on folders generated in the official layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from resdet.classification.imagenet_folder import ImageFolderDataset, ImageFolderError
from resdet.data.image_io import BadImageError

# deliberately not in sorted order on disk creation; labels follow the sorted wnids
WNIDS = ["n02085620", "n01440764", "n01443537"]
COLOURS = {"n01440764": (250, 10, 10), "n01443537": (10, 250, 10), "n02085620": (10, 10, 250)}


def save(path: Path, colour: tuple[int, int, int], size=(20, 12), mode="RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.new("RGB", size, colour)
    if mode != "RGB":
        img = img.convert(mode)
    img.save(path, format="JPEG", quality=95)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    for wnid in WNIDS:
        for k in range(2):
            save(tmp_path / "train" / wnid / f"{wnid}_{k}.JPEG", COLOURS[wnid])
    return tmp_path


def mean_colour(image: torch.Tensor) -> np.ndarray:
    return image.float().mean(dim=(1, 2)).numpy()


def test_train_class_folders(root):
    ds = ImageFolderDataset(root, "train")
    assert ds.classes == sorted(WNIDS)
    assert len(ds) == 6
    for i in range(len(ds)):
        image, label = ds[i]
        assert image.dtype == torch.uint8 and image.shape == (3, 12, 20)
        np.testing.assert_allclose(mean_colour(image), COLOURS[ds.classes[label]], atol=6)


def test_val_class_folders_use_train_class_list(root):
    # val only holds two of the three classes: its labels must still index the train list
    save(root / "val" / "n02085620" / "ILSVRC2012_val_00000001.JPEG", COLOURS["n02085620"])
    save(root / "val" / "n01443537" / "ILSVRC2012_val_00000002.JPEG", COLOURS["n01443537"])
    ds = ImageFolderDataset(root, "val")
    assert sorted(ds.targets) == [1, 2]


def test_val_flat_with_labels_file(root):
    save(root / "val" / "ILSVRC2012_val_00000001.JPEG", COLOURS["n02085620"])
    save(root / "val" / "ILSVRC2012_val_00000002.JPEG", COLOURS["n01440764"], mode="L")
    (root / "val_labels.txt").write_text(
        "ILSVRC2012_val_00000001.JPEG n02085620\nILSVRC2012_val_00000002.JPEG 0\n"
    )
    ds = ImageFolderDataset(root, "val")
    assert ds.targets == [2, 0]
    grey, _ = ds[1]
    assert grey.shape[0] == 3  # grey JPEGs are converted to RGB


def test_val_flat_with_kaggle_solution_csv(root):
    save(root / "val" / "ILSVRC2012_val_00000001.JPEG", COLOURS["n01443537"])
    csv = root / "LOC_val_solution.csv"
    csv.write_text(
        "ImageId,PredictionString\nILSVRC2012_val_00000001,n01443537 1 2 30 40 n01443537 5 6 7 8 \n"
    )
    assert ImageFolderDataset(root, "val").targets == [1]
    assert ImageFolderDataset(root, "val", labels_file=csv).targets == [1]


def test_empty_class_folder_is_named(root):
    (root / "train" / "n09999999").mkdir()
    with pytest.raises(ImageFolderError, match=r"n09999999: empty class folder"):
        ImageFolderDataset(root, "train")


def test_flat_val_errors(root):
    save(root / "val" / "ILSVRC2012_val_00000001.JPEG", COLOURS["n01443537"])
    save(root / "val" / "ILSVRC2012_val_00000002.JPEG", COLOURS["n01443537"])
    with pytest.raises(ImageFolderError, match="needs a labels file"):
        ImageFolderDataset(root, "val")
    (root / "val_labels.txt").write_text("ILSVRC2012_val_00000001.JPEG n01443537\n")
    with pytest.raises(
        ImageFolderError, match=r"no label for image .*ILSVRC2012_val_00000002\.JPEG"
    ):
        ImageFolderDataset(root, "val")
    (root / "val_labels.txt").write_text("ILSVRC2012_val_00000001.JPEG n01443537\nfoo n00000000\n")
    with pytest.raises(ImageFolderError, match=r"val_labels\.txt:2: class 'n00000000'"):
        ImageFolderDataset(root, "val")


def test_val_class_not_in_train(root):
    save(root / "val" / "n07777777" / "a.JPEG", COLOURS["n01443537"])
    with pytest.raises(ImageFolderError, match="n07777777: class folder not among the 3 classes"):
        ImageFolderDataset(root, "val")


def test_corrupt_image_is_named(root):
    (root / "train" / "n01440764" / "broken.JPEG").write_bytes(b"not a jpeg")
    ds = ImageFolderDataset(root, "train")
    with pytest.raises(BadImageError, match=r"broken\.JPEG: not an image file"):
        ds[0]

"""Flat labelled folders (`format: voc_folder`) built from BCCD's own files: matching by stem and
by `<filename>`, unlabelled images, missing images, grayscale and CMYK files, boxes outside the
image, class names collected and reused, splits."""

from __future__ import annotations

import shutil
import warnings
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from resdet.config import config_from_dict
from resdet.data import DatasetError, DatasetWarning, DetectionDataset, load_source
from resdet.data.voc import load_voc
from resdet.io.run_dir import read_class_names, write_class_names
from resdet.runs.detection import check_datasets_present, load_datasets

STEMS = [f"BloodImage_{i:05d}" for i in range(12)]
BCCD_CLASSES = ["RBC", "WBC", "Platelets"]


def edit_xml(path: Path, change) -> None:
    tree = ET.parse(path)
    change(tree.getroot())
    tree.write(path)


def set_box(obj: ET.Element, **values: int) -> None:
    for tag, value in values.items():
        obj.find(f"bndbox/{tag}").text = str(value)


def make_folder(bccd: Path, root: Path, stems: list[str] = STEMS) -> tuple[Path, Path]:
    """BCCD's images in `root/images`, their XMLs in `root/labels`, with the defects of a real
    labelling folder (see the comments)."""
    images, labels = root / "images", root / "labels"
    images.mkdir(parents=True)
    labels.mkdir()
    for stem in stems:
        shutil.copy(bccd / "JPEGImages" / f"{stem}.jpg", images)
        shutil.copy(bccd / "Annotations" / f"{stem}.xml", labels)
    if stems is not STEMS:
        return images, labels
    for stem in STEMS[10:]:  # not labelled yet
        (labels / f"{stem}.xml").unlink()
    Image.open(images / f"{STEMS[1]}.jpg").convert("L").save(images / f"{STEMS[1]}.jpg")
    Image.open(images / f"{STEMS[2]}.jpg").convert("CMYK").save(images / f"{STEMS[2]}.jpg")

    def outside(ann: ET.Element) -> None:  # object 0 partly outside, object 1 fully outside
        objects = ann.findall("object")
        set_box(objects[0], xmax=700)
        set_box(objects[1], xmin=650, xmax=700)

    edit_xml(labels / f"{STEMS[3]}.xml", outside)
    # renamed after labelling: <filename> is stale, the XML's stem names the image
    edit_xml(labels / f"{STEMS[4]}.xml", lambda a: setattr(a.find("filename"), "text", "old.jpg"))
    # an XML renamed on its own: no image has its stem, its <filename> names the image
    (labels / f"{STEMS[5]}.xml").rename(labels / "renamed_5.xml")
    return images, labels


@pytest.fixture
def folder(shared_data, tmp_path) -> tuple[Path, Path]:
    return make_folder(shared_data("BCCD"), tmp_path)


def entry(images: Path, labels: Path, **more) -> dict:
    return {"format": "voc_folder", "image_dir": str(images), "ann_dir": str(labels), **more}


def load(images: Path, labels: Path, **more):
    """The source and the text of each warning, in order."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DatasetWarning)
        src = load_source(entry(images, labels, **more))
    return src, [str(w.message) for w in caught if issubclass(w.category, DatasetWarning)]


def test_folder_matches_by_stem_then_filename_and_reads_boxes_as_voc(folder, shared_data):
    images, labels = folder
    bccd = shared_data("BCCD")
    src, messages = load(images, labels)
    assert src.class_names == ["Platelets", "RBC", "WBC"] and src.class_names_from_data
    assert src.protocol == "voc" and src.category_ids == [1, 2, 3]
    ids = [r.image_id for r in src.records]
    assert ids == [*STEMS[:5], *STEMS[6:10], "renamed_5"]
    files = {r.image_id: Path(r.file_name) for r in src.records}
    assert files[STEMS[4]] == images / f"{STEMS[4]}.jpg"  # the stem wins over <filename>
    assert files["renamed_5"] == images / f"{STEMS[5]}.jpg"  # <filename> when no stem matches
    assert messages == [
        f"{images}: 2 image(s) without an annotation file in {labels} are left out:"
        f"\n  {STEMS[10]}.jpg\n  {STEMS[11]}.jpg",
        "labels (all): dropped 1 box (empty or outside the image after clipping; "
        f"e.g. {STEMS[3]}.xml object 1)",
    ]
    # the same boxes as the VOC reader gives for the untouched files, and object 0 of STEMS[3]
    # clipped at the image's right edge
    voc = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DatasetWarning)
        for split in ("trainval", "test"):
            voc.update({r.image_id: r for r in load_voc(bccd, split, BCCD_CLASSES).records})
    for r in src.records:
        ref = voc[STEMS[5] if r.image_id == "renamed_5" else r.image_id]
        names = [src.class_names[k] for k in r.labels]
        if r.image_id == STEMS[3]:
            assert r.boxes[0, 2] == 640 and len(r.boxes) == len(ref.boxes) - 1
            np.testing.assert_array_equal(r.boxes[1:], ref.boxes[2:])
            assert names == [BCCD_CLASSES[k] for k in ref.labels[[0, *range(2, len(ref.labels))]]]
        else:
            np.testing.assert_array_equal(r.boxes, ref.boxes)
            assert names == [BCCD_CLASSES[k] for k in ref.labels]


def test_grayscale_and_cmyk_files_decode_to_rgb_with_targets(folder):
    images, labels = folder
    assert Image.open(images / f"{STEMS[1]}.jpg").mode == "L"
    assert Image.open(images / f"{STEMS[2]}.jpg").mode == "CMYK"
    src, _ = load(images, labels)
    dataset = DetectionDataset([src], train=True)
    ids = [r.image_id for r in dataset.records]
    for stem in STEMS[1:3]:
        image, target = dataset[ids.index(stem)]
        assert tuple(image.shape) == (3, 480, 640) and 0.0 <= image.min() <= image.max() <= 1.0
        assert len(target["boxes"]) == len(target["labels"]) > 0
    gray, _ = dataset[ids.index(STEMS[1])]
    assert np.array_equal(gray[0], gray[1]) and np.array_equal(gray[1], gray[2])


def test_annotations_without_image_are_one_error_listing_them(folder):
    images, labels = folder
    ghosts = [f"ghost_{i:02d}" for i in range(25)]
    for g in ghosts:
        shutil.copy(labels / f"{STEMS[0]}.xml", labels / f"{g}.xml")
        edit_xml(labels / f"{g}.xml", lambda a: setattr(a.find("filename"), "text", "gone.jpg"))
    with pytest.raises(DatasetError) as err:
        load(images, labels)
    text = str(err.value)
    assert text.startswith(f"{labels}: 25 annotation file(s) without an image in {images}")
    assert all(f"\n  {g}.xml" in text for g in ghosts[:20]) and "ghost_20" not in text
    assert text.endswith("\n  ... and 5 more")


def test_split_parts_are_disjoint_complementary_and_deterministic(folder):
    images, labels = folder
    labelled = {r.image_id for r in load(images, labels)[0].records}

    def part(name: str, seed: int = 0) -> list[str]:
        split = {"fraction": 0.8, "seed": seed, "part": name}
        return [r.image_id for r in load(images, labels, split=split)[0].records]

    train, test = part("train"), part("test")
    assert len(train) == 8 and len(test) == 2
    assert not set(train) & set(test) and set(train) | set(test) == labelled
    assert train == part("train") and test == part("test")
    assert part("test", seed=1) != test
    src, _ = load(images, labels, split={"fraction": 0.8, "part": "test"})  # seed defaults to 0
    assert [r.image_id for r in src.records] == test
    assert src.class_names == ["Platelets", "RBC", "WBC"]  # the whole folder's classes


def test_split_file_selects_stems(folder, tmp_path):
    images, labels = folder
    split_file = tmp_path / "val.txt"
    split_file.write_text(f"{STEMS[7]}\n\nrenamed_5\n")
    src, messages = load(images, labels, split_file=str(split_file))
    assert [r.image_id for r in src.records] == [STEMS[7], "renamed_5"] and messages == []
    split_file.write_text(f"{STEMS[7]}\n{STEMS[10]}\n")
    with pytest.raises(
        DatasetError, match=rf"(?s)1 stem\(s\) without an annotation file.*{STEMS[10]}"
    ):
        load(images, labels, split_file=str(split_file))


@pytest.mark.parametrize(
    "more,needle",
    [
        ({"split": {"fraction": 0.8, "part": "val"}}, "split.part must be 'train' or 'test'"),
        ({"split": {"fraction": 0.8, "part": "train", "sede": 1}}, "split: unknown key 'sede'"),
        ({"split": {"fraction": 0.8}}, "split: missing key 'part'"),
        ({"split": {"fraction": 1.0, "part": "train"}}, "split.fraction must be a number in"),
        ({"split": {"fraction": 0.5, "part": "train", "seed": "a"}}, "split.seed"),
        ({"split": [0.8], "split_file": "x.txt"}, "split_file or split, not both"),
        ({"splits": "x.txt"}, "unknown key 'splits'"),
        ({"class_names": "RBC"}, "class_names must be a list"),
    ],
)
def test_bad_entries_name_the_entry_and_the_key(tmp_path, more, needle):
    with pytest.raises(DatasetError) as err:
        load_source(entry(tmp_path, tmp_path, **more))
    assert needle in str(err.value) and "dataset entry {'format': 'voc_folder'" in str(err.value)


def test_given_class_names_refuse_other_classes(folder):
    images, labels = folder
    with pytest.raises(DatasetError) as err:
        load(images, labels, class_names=["RBC", "WBC"])
    assert (
        f"{STEMS[3]}.xml: object 16: field <name> 'Platelets' is not one of the 2 classes"
        in str(err.value)
    )
    src, _ = load(images, labels, class_names=BCCD_CLASSES)
    assert src.class_names == BCCD_CLASSES and not src.class_names_from_data


def test_test_entry_gets_the_training_set_classes(shared_data, tmp_path):
    bccd = shared_data("BCCD")
    train_dir = make_folder(bccd, tmp_path / "train", STEMS[:4])  # 00003 has a Platelet
    test_dir = make_folder(bccd, tmp_path / "test", STEMS[7:9])  # RBC and WBC only
    out = tmp_path / "out"
    cfg = config_from_dict(
        {"data": {"train": [entry(*train_dir)], "test": [entry(*test_dir)]}, "output_dir": str(out)}
    )
    assert load_source(entry(*test_dir)).class_names == ["RBC", "WBC"]  # on its own
    datasets = load_datasets(cfg)
    assert datasets.train.class_names == datasets.test.class_names == ["Platelets", "RBC", "WBC"]
    # evaluating later (no training set): the names the run wrote into its output directory
    assert load_datasets(cfg, train=False).test.class_names == ["RBC", "WBC"]
    write_class_names(out, datasets.train.class_names)
    assert read_class_names(out) == ["Platelets", "RBC", "WBC"]
    assert load_datasets(cfg, train=False).test.class_names == ["Platelets", "RBC", "WBC"]


@pytest.mark.parametrize("missing", ["images", "labels"])
def test_missing_folders_are_one_line_naming_the_path(tmp_path, missing):
    present = "labels" if missing == "images" else "images"
    (tmp_path / present).mkdir()
    cfg = config_from_dict({"data": {"train": [entry(tmp_path / "images", tmp_path / "labels")]}})
    with pytest.raises(DatasetError) as err:
        check_datasets_present(cfg)
    text = str(err.value)
    assert "\n" not in text and f"expected folder {tmp_path / missing} " in text

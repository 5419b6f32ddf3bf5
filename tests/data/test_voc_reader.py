"""VOC reader on real VOC2007/2012 files (hand-checked against the XML) and on broken trees."""

import warnings
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.ops import box_iou

from resdet.config.data import DataConfig
from resdet.data import DatasetError, DatasetWarning, build_detection_dataset, load_source
from resdet.data.voc import VOC_CLASSES, load_voc


def by_id(source):
    return {r.image_id: r for r in source.records}


def test_voc_mini_records_match_the_xml(shared_data):
    recs = by_id(
        load_source(
            {
                "format": "voc",
                "root": str(shared_data("voc_mini") / "VOCdevkit/VOC2007"),
                "split": "trainval",
            }
        )
    )
    assert sorted(recs) == ["000001", "000002", "000003", "000004", "000005"]
    r4 = recs["000004"]
    assert (r4.height, r4.width) == (406, 500)
    assert [VOC_CLASSES[k] for k in r4.labels] == ["car"] * 7 and not r4.difficult.any()
    # XML (xmin, ymin, xmax, ymax) = (13, 311, 84, 362) and (362, 330, 500, 389): loaded as (x-1,
    # y-1, x, y); xmax == width (500) stays inside the image.
    np.testing.assert_array_equal(r4.boxes[:2], [[12, 310, 84, 362], [361, 329, 500, 389]])
    np.testing.assert_array_equal(r4.boxes[-1], [83, 322, 121, 350])
    r5 = recs["000005"]
    assert [VOC_CLASSES[k] for k in r5.labels] == ["chair"] * 5
    assert r5.difficult.tolist() == [False, False, True, False, True]
    np.testing.assert_array_equal(
        r5.boxes,
        [
            [262, 210, 324, 339],
            [164, 263, 253, 372],
            [4, 243, 67, 374],
            [240, 193, 295, 299],
            [276, 185, 312, 220],
        ],
    )
    assert r5.boxes.dtype == np.float32 and r5.labels.dtype == np.int64


def test_parts_are_not_objects(shared_data):
    recs = by_id(load_voc(shared_data("voc_mini") / "VOCdevkit/VOC2012", "trainval"))
    r = recs["2007_000027"]  # one person with head/hand/foot <part> boxes inside
    assert [VOC_CLASSES[k] for k in r.labels] == ["person"]
    np.testing.assert_array_equal(r.boxes, [[173, 100, 349, 351]])
    assert (r.height, r.width) == (500, 486)


def test_both_years_by_name_concatenate(shared_data, monkeypatch):
    monkeypatch.setenv("RESDET_DATASETS", str(shared_data("voc_mini")))
    data = DataConfig(train=["voc_2007_trainval", "voc_2012_trainval"], test=["voc_2007_test"])
    with warnings.catch_warnings():
        warnings.simplefilter("error", DatasetWarning)  # nothing is dropped from these files
        train = build_detection_dataset(data, "train")
    assert len(train) == 10 and train.class_names == VOC_CLASSES
    assert [s.name for s in train.sources] == ["voc_2007_trainval", "voc_2012_trainval"]
    test = build_detection_dataset(data, "test")
    assert [r.image_id for r in test.records] == ["000001", "000002", "000003", "000004", "000005"]
    # training targets leave the two difficult chairs of 000005 out; the loaded image
    # is real, not resized
    i = [r.image_id for r in train.records].index("000005")
    image, target = train[i]
    assert target["labels"].tolist() == [8, 8, 8] and target["orig_size"] == (375, 500)
    assert image.dtype.is_floating_point and tuple(image.shape) == (3, 375, 500)
    assert 0.0 <= image.min() and image.max() <= 1.0


def make_voc(root: Path, xmls: dict[str, str], split: str = "train") -> Path:
    (root / "Annotations").mkdir(parents=True)
    (root / "ImageSets/Main").mkdir(parents=True)
    for image_id, body in xmls.items():
        (root / "Annotations" / f"{image_id}.xml").write_text(body)
    (root / "ImageSets/Main" / f"{split}.txt").write_text("".join(f"{i}\n" for i in xmls))
    return root


def xml(
    *objects: str, size: str = "<size><width>100</width><height>80</height><depth>3</depth></size>"
) -> str:
    return f"<annotation>{size}{''.join(objects)}</annotation>"


def obj(name: str = "dog", box=(11, 21, 50, 60), difficult: str = "0") -> str:
    x1, y1, x2, y2 = box
    return (
        f"<object><name>{name}</name><difficult>{difficult}</difficult><bndbox><xmin>{x1}</xmin>"
        f"<ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>"
    )


def test_zero_area_and_outside_boxes_dropped_with_one_warning(tmp_path):
    root = make_voc(
        tmp_path / "VOC",
        {
            "a": xml(obj(), obj(box=(40, 10, 30, 20)), obj(box=(200, 10, 300, 20))),
            "b": xml(obj(box=(6, 5, 5, 30))),  # xmax < xmin
            "c": xml(obj(box=(5, 5, 5, 30)), obj(box=(5, 5, 6, 30))),  # xmax == xmin: a line
        },
    )
    with pytest.warns(DatasetWarning) as record:
        src = load_voc(root, "train")
    assert len(record) == 1
    assert str(record[0].message) == (
        "VOC (train): dropped 3 zero-area boxes (xmax <= xmin or ymax <= ymin in the file; "
        "e.g. a.xml object 1; b.xml object 0; c.xml object 0), 1 box (empty or outside the image "
        "after clipping; e.g. a.xml object 2)"
    )
    recs = by_id(src)
    np.testing.assert_array_equal(recs["a"].boxes, [[10, 20, 50, 60]])
    assert len(recs["b"].boxes) == 0
    # xmin=5, xmax=6 is two pixels wide in VOC's inclusive convention: loaded as [4, 6)
    np.testing.assert_array_equal(recs["c"].boxes, [[4, 4, 6, 30]])


def test_near_duplicates_drop_the_later_box_of_a_same_class_pair(tmp_path):
    near = (12, 21, 50, 60)  # IoU with the default (11, 21, 50, 60): 38/39 = 0.974
    root = make_voc(
        tmp_path / "VOC",
        {"a": xml(obj(), obj(box=near), obj(name="cat", box=near), obj(box=(11, 21, 50, 30)))},
    )
    with pytest.warns(DatasetWarning) as record:
        src = load_voc(root, "train")
    assert len(record) == 1
    assert str(record[0].message) == (
        "VOC (train): dropped 1 near-duplicate box (IoU > 0.9 with a box of the same class; "
        "e.g. a.xml object 1 (same as object 0))"
    )
    r = src.records[0]
    assert [VOC_CLASSES[k] for k in r.labels] == ["dog", "cat", "dog"]
    np.testing.assert_array_equal(r.boxes[:2], [[10, 20, 50, 60], [11, 20, 50, 60]])
    # a threshold above the pair's IoU, or None (the devkit's behaviour), keeps all four
    for iou in (0.98, None):
        with warnings.catch_warnings():
            warnings.simplefilter("error", DatasetWarning)
            assert len(load_voc(root, "train", duplicate_iou=iou).records[0].boxes) == 4


@pytest.mark.parametrize(
    "body,needles",
    [
        (xml(obj(name="unicorn")), ["bad.xml", "object 0", "<name>", "unicorn"]),
        (xml(obj(box=("nan", 1, 5, 5))), ["bad.xml", "object 0", "<xmin>", "not finite"]),
        (xml(obj(box=(1, 1, "inf", 5))), ["bad.xml", "object 0", "<xmax>"]),
        (xml(obj(box=(1, 1, "ten", 5))), ["bad.xml", "object 0", "<xmax>"]),
        ("<annotation><size>", ["bad.xml", "malformed XML"]),
        (xml(obj(), size=""), ["bad.xml", "<size>"]),
    ],
)
def test_bad_xml_names_file_record_and_field(tmp_path, body, needles):
    root = make_voc(tmp_path / "VOC", {"bad": body})
    with pytest.raises(DatasetError) as err:
        load_voc(root, "train")
    for needle in needles:
        assert needle in str(err.value)


def test_split_entries_with_paths_are_refused(tmp_path):
    root = make_voc(tmp_path / "VOC", {"ok": xml(obj())})
    (root / "ImageSets/Main/train.txt").write_text("ok\n../../etc/passwd\n")
    with pytest.raises(DatasetError, match=r"train.txt:2.*'\.\.'"):
        load_voc(root, "train")
    (root / "ImageSets/Main/train.txt").write_text("/abs/file\n")
    with pytest.raises(DatasetError, match="absolute"):
        load_voc(root, "train")


BCCD_CLASSES = ["RBC", "WBC", "Platelets"]


def test_bccd_zero_area_and_near_duplicate_boxes_are_dropped_and_counted(shared_data):
    entry = {"format": "voc", "root": "BCCD", "split": "trainval", "class_names": BCCD_CLASSES}
    root = str(shared_data("BCCD").parent)
    with pytest.warns(DatasetWarning) as record:
        src = load_source(entry, root)
    assert len(record) == 1
    message = str(record[0].message)
    assert message.startswith("BCCD (trainval): dropped 6 near-duplicate boxes (IoU > 0.9 with")
    assert message.endswith(
        "2 zero-area boxes (xmax <= xmin or ymax <= ymin in the file; "
        "e.g. BloodImage_00338.xml object 12; BloodImage_00343.xml object 3)"
    )
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        devkit = load_source(entry, root, duplicate_iou=None)  # only the zero-area boxes go
    kept, every = by_id(src), by_id(devkit)
    fewer = {i: len(every[i].boxes) - len(kept[i].boxes) for i in every}
    duplicated = ["00020", "00100", "00104", "00251", "00331", "00403"]
    assert {i for i, n in fewer.items() if n} == {f"BloodImage_{i}" for i in duplicated}
    assert set(fewer.values()) == {0, 1}
    for i in duplicated:  # the box left out overlaps one that is kept, of its class, at IoU > 0.9
        a, b = every[f"BloodImage_{i}"], kept[f"BloodImage_{i}"]
        gone = [k for k, box in enumerate(a.boxes.tolist()) if box not in b.boxes.tolist()]
        assert len(gone) == 1
        box = torch.from_numpy(a.boxes[gone])
        iou = box_iou(box, torch.from_numpy(b.boxes))[0]
        assert (iou > 0.9)[torch.from_numpy(b.labels) == int(a.labels[gone[0]])].any()
    # the zero-area RBCs (504, 337)-(504, 337) and (181, 329)-(181, 329) are in neither load
    for image_id, point in (("BloodImage_00338", 504), ("BloodImage_00343", 181)):
        xml_path = shared_data("BCCD") / "Annotations" / f"{image_id}.xml"
        objects = ET.parse(xml_path).findall("object")
        assert len(objects) - len(every[image_id].boxes) == 1
        assert not (every[image_id].boxes[:, 2] == point).any()
    assert sum(len(r.boxes) for r in devkit.records) - sum(len(r.boxes) for r in src.records) == 6

    test_entry = {**entry, "split": "test"}
    with pytest.warns(
        DatasetWarning,
        match=r"^BCCD \(test\): dropped 1 near-duplicate box .*"
        r"BloodImage_00284\.xml",
    ):
        load_source(test_entry, root)

"""VOC reader on real VOC2007/2012 files (hand-checked against the XML) and on broken trees."""

import warnings
from pathlib import Path

import numpy as np
import pytest

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


def test_degenerate_and_outside_boxes_dropped_with_one_warning(tmp_path):
    root = make_voc(
        tmp_path / "VOC",
        {
            "a": xml(obj(), obj(box=(40, 10, 30, 20)), obj(box=(200, 10, 300, 20))),
            "b": xml(obj(box=(6, 5, 5, 30))),  # xmin = xmax + 1: zero width
            "c": xml(obj(box=(5, 5, 5, 30))),
        },
    )  # xmin = xmax: one pixel wide
    with pytest.warns(DatasetWarning, match=r"dropped 3 box") as record:
        src = load_voc(root, "train")
    assert len(record) == 1
    recs = by_id(src)
    np.testing.assert_array_equal(recs["a"].boxes, [[10, 20, 50, 60]])
    assert len(recs["b"].boxes) == 0
    np.testing.assert_array_equal(recs["c"].boxes, [[4, 4, 5, 30]])


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

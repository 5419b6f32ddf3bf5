"""COCO reader on the real 100-image val2014 annotations and on broken files."""

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from coco_records import coco_annotation

from resdet.data import DatasetError, DatasetWarning
from resdet.data.coco import load_coco


def test_val2014_100_labels_boxes_and_crowd(shared_data):
    ann = shared_data("coco_val2014_100/instances_val2014_100.json")
    raw = json.loads(ann.read_text())
    with warnings.catch_warnings():
        warnings.simplefilter("error", DatasetWarning)  # no box of this file is outside its image
        src = load_coco(ann, "/images")
    assert len(src.records) == 100 and len(src.class_names) == 80
    # category ids are not 1..80: contiguous labels map back to them in sorted order
    assert (
        src.category_ids == sorted(c["id"] for c in raw["categories"])
        and src.category_ids[-1] == 90
    )
    assert src.class_names[0] == "person" and src.class_names[-1] == "toothbrush"
    assert (
        sum(len(r.boxes) for r in src.records) == 830
        and sum(len(r.crowd_boxes) for r in src.records) == 9
    )
    rec = {r.image_id: r for r in src.records}[74]
    assert rec.file_name == "/images/COCO_val2014_000000000074.jpg" and (rec.height, rec.width) == (
        426,
        640,
    )
    # annotation 1774: category 18 (dog), bbox [61.87, 276.25, 296.42, 103.18] -> xyxy
    row = [i for i, k in enumerate(rec.labels) if src.category_ids[k] == 18]
    assert src.class_names[rec.labels[row[0]]] == "dog"
    np.testing.assert_allclose(rec.boxes[row[0]], [61.87, 276.25, 358.29, 379.43], rtol=1e-6)
    for r in src.records:  # crowd regions never appear among the boxes trained on
        crowd = {tuple(np.round(b, 2)) for b in r.crowd_boxes}
        assert not crowd & {tuple(np.round(b, 2)) for b in r.boxes}


def coco(
    tmp_path: Path, annotations, images=None, categories=None, text: str | None = None
) -> Path:
    path = tmp_path / "ann.json"
    data = {
        "images": images or [{"id": 1, "file_name": "a.jpg", "height": 50, "width": 80}],
        "annotations": annotations,
        "categories": categories or [{"id": 3, "name": "cat"}, {"id": 7, "name": "dog"}],
    }
    path.write_text(text if text is not None else json.dumps(data))
    return path


def ann(aid: int = 1, bbox=(10, 10, 20, 20), cat: int = 7, image: int = 1, crowd: int = 0) -> dict:
    return coco_annotation(aid, image, bbox, cat, crowd, area=1.0)


def test_clip_drop_and_one_summary_warning(tmp_path):
    path = coco(
        tmp_path,
        [
            ann(1, (70, 40, 30, 30)),  # clipped to the image: (70, 40, 80, 50)
            ann(2, (90, 10, 5, 5)),  # fully outside
            ann(3, (10, 10, 0, 5)),  # zero width
            ann(4, (10, 10, -5, 5)),  # negative width
            ann(5, (1, 2, 3, 4), cat=3),
        ],
    )
    with pytest.warns(DatasetWarning, match=r"ann.json: dropped 3 box") as record:
        src = load_coco(path, tmp_path)
    assert len(record) == 1
    np.testing.assert_allclose(src.records[0].boxes, [[70, 40, 80, 50], [1, 2, 4, 6]])
    assert src.records[0].labels.tolist() == [1, 0]  # category 7 -> label 1, 3 -> 0


@pytest.mark.parametrize(
    "annotations,text,needles",
    [
        ([ann(1, (float("nan"), 1, 2, 2))], None, ["annotation id 1", "'bbox'", "not finite"]),
        ([ann(4, (1, 1, float("inf"), 2))], None, ["annotation id 4", "'bbox'", "not finite"]),
        ([ann(5), ann(5)], None, ["annotation id 5", "duplicate annotation id"]),
        ([ann(6, cat=99)], None, ["annotation id 6", "'category_id'", "99"]),
        ([ann(7, image=42)], None, ["annotation id 7", "'image_id'", "42"]),
        (
            [{"id": 8, "image_id": 1, "category_id": 7}],
            None,
            ["annotation id 8", "'bbox'", "missing"],
        ),
        ([ann(9, bbox=(1, 2, 3))], None, ["annotation id 9", "'bbox'"]),
        ([], '{"images": [}', ["malformed JSON", "line 1"]),
        ([], "[]", ["top level"]),
    ],
)
def test_bad_json_names_file_record_and_field(tmp_path, annotations, text, needles):
    path = coco(tmp_path, annotations, text=text)
    with pytest.raises(DatasetError) as err:
        load_coco(path, tmp_path)
    assert str(path) in str(err.value)
    for needle in needles:
        assert needle in str(err.value)


@pytest.mark.parametrize(
    "file_name", ["/etc/passwd", "../secret.jpg", "sub/../../x.jpg", "C:\\x.jpg", "..\\x.jpg"]
)
def test_file_names_outside_the_image_folder_are_refused(tmp_path, file_name):
    path = coco(tmp_path, [], images=[{"id": 1, "file_name": file_name, "height": 5, "width": 5}])
    with pytest.raises(DatasetError, match="image id 1.*absolute or contains '..'"):
        load_coco(path, tmp_path)


def test_nested_relative_file_name_is_allowed(tmp_path):
    path = coco(
        tmp_path, [], images=[{"id": 1, "file_name": "sub/dir/x.jpg", "height": 5, "width": 5}]
    )
    assert load_coco(path, tmp_path).records[0].file_name == str(tmp_path / "sub/dir/x.jpg")

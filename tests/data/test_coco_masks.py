"""Instance masks from COCO files: read like pycocotools, bad ones dropped and counted or refused,
box-only data refused for a mask model, masks carried through the dataset and its flip."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from coco_records import coco_annotation
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from resdet.data import DatasetError, DatasetWarning
from resdet.data.catalog import load_source
from resdet.data.coco import load_coco
from resdet.data.dataset import DetectionDataset
from resdet.data.masks import rasterize
from resdet.data.shapes import generate_shapes
from resdet.data.transforms import RandomHorizontalFlip

H, W = 50, 80


def write(tmp_path: Path, annotations: list[dict]) -> Path:
    path = tmp_path / "ann.json"
    data = {
        "images": [{"id": 1, "file_name": "a.jpg", "height": H, "width": W}],
        "annotations": annotations,
        "categories": [{"id": 7, "name": "dog"}],
    }
    path.write_text(json.dumps(data))
    return path


def ann(aid: int, segmentation, bbox=(10, 10, 20, 20), crowd: int = 0) -> dict:
    a = coco_annotation(aid, 1, bbox, 7, crowd)
    if segmentation is not None:
        a["segmentation"] = segmentation
    return a


SQUARE = [[10, 10, 30, 10, 30, 30, 10, 30]]


def rle(mask: np.ndarray, compressed: bool = True) -> dict:
    if compressed:
        r = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        return {"size": list(mask.shape), "counts": r["counts"].decode()}
    runs, flat, value, n = [], mask.T.reshape(-1), 0, 0
    for v in flat:  # column-major runs, starting with zeros
        if v != value:
            runs.append(n)
            value, n = v, 0
        n += 1
    return {"size": list(mask.shape), "counts": runs + [n]}


def test_val2014_masks_equal_pycocotools(shared_data):
    path = shared_data("coco_val2014_100/instances_val2014_100.json")
    src = load_coco(path, "/images", masks=True)
    ref = COCO(str(path))
    n = 0
    for r in src.records:
        anns = [a for a in ref.imgToAnns[r.image_id] if not a["iscrowd"]]
        assert len(anns) == len(r.segmentations) == len(r.boxes)
        for a, mask in zip(anns, rasterize(r.segmentations, r.height, r.width)):
            np.testing.assert_array_equal(mask, ref.annToMask(a))
            n += 1
    assert n == 830  # every non-crowd annotation, polygons all; the 9 crowd RLEs are not read


def test_polygon_compressed_and_uncompressed_rle_give_one_mask(tmp_path):
    square = np.zeros((H, W), np.uint8)
    square[10:30, 10:30] = 1
    path = write(
        tmp_path, [ann(1, rle(square)), ann(2, rle(square, compressed=False)), ann(3, SQUARE)]
    )
    r = load_coco(path, tmp_path, masks=True).records[0]
    a, b, c = rasterize(r.segmentations, H, W)
    np.testing.assert_array_equal(a, square)
    np.testing.assert_array_equal(b, square)
    # pycocotools' polygon rasteriser covers the square's pixels up to its boundary rows
    assert c[12:28, 12:28].all() and not c[:9].any() and not c[:, 32:].any()


def test_bad_masks_are_dropped_and_counted_in_one_warning(tmp_path):
    full = np.ones((H, W), np.uint8)
    wrong = rle(np.ones((H + 1, W), np.uint8))
    path = write(
        tmp_path,
        [
            ann(1, [[10, 10, 30, 10]]),  # 2 points
            ann(2, wrong),  # RLE of a 51x80 image in a 50x80 image
            ann(3, {"size": [H, W], "counts": [H * W - 5, 3]}),  # runs total 3 short
            ann(4, [[100, 10, 120, 10, 120, 30]]),  # right of the 80-pixel-wide image
            ann(5, rle(np.zeros((H, W), np.uint8))),  # empty
            ann(6, rle(full)),  # kept
            ann(7, None, crowd=1),  # crowd: no mask needed, never trained on
        ],
    )
    with pytest.warns(DatasetWarning) as record:
        src = load_coco(path, tmp_path, masks=True)
    assert len(record) == 1
    text = str(record[0].message)
    assert "1 annotation with a polygon of fewer than 3 points (e.g. annotation id 1)" in text
    assert "2 annotations with an RLE of the wrong size" in text and "annotation id 3" in text
    assert "2 annotations with their mask outside the image" in text and "annotation id 5" in text
    r = src.records[0]
    assert len(r.boxes) == len(r.segmentations) == 1 and len(r.crowd_boxes) == 1
    np.testing.assert_array_equal(rasterize(r.segmentations, H, W)[0], full)
    # without masks=True nothing of that is looked at: every box stays
    assert len(load_coco(path, tmp_path).records[0].boxes) == 6


@pytest.mark.parametrize(
    "segmentation,needle",
    [
        ("polygon", "'segmentation' must be polygons"),
        ([[10, 10, 30, "x", 30, 30]], "'segmentation'[0] must be a list of numbers"),
        ([[10, 10, 30, 10, 30]], "'segmentation'[0] has an odd number"),
        ([[10, 10, 30, 10, 30, float("nan")]], "'segmentation'[0] is not finite"),
        ({"size": [H], "counts": "abc"}, "'segmentation.size' must be [height, width]"),
        ({"size": [H, W], "counts": 5}, "'segmentation.counts' must be a string or a list"),
        ({"size": [H, W], "counts": [-1, 2]}, "'segmentation.counts' must be run lengths"),
    ],
)
def test_malformed_mask_names_file_annotation_and_field(tmp_path, segmentation, needle):
    path = write(tmp_path, [ann(1, SQUARE), ann(42, segmentation)])
    with pytest.raises(DatasetError) as e:
        load_coco(path, tmp_path, masks=True)
    assert str(path) in str(e.value) and "annotation id 42" in str(e.value)
    assert needle in str(e.value)


def test_box_only_data_is_refused_for_a_mask_model(tmp_path):
    path = write(tmp_path, [ann(1, None), ann(2, None)])
    with pytest.raises(
        DatasetError, match=r"2 of 2 annotations have no 'segmentation'.*boxes only"
    ):
        load_coco(path, tmp_path, masks=True)
    path = write(tmp_path, [ann(1, SQUARE), ann(5, [])])
    with pytest.raises(DatasetError, match=r"1 of 2 .*annotation id 5"):
        load_coco(path, tmp_path, masks=True)
    with pytest.raises(DatasetError, match="VOC-format datasets have boxes only"):
        load_source({"format": "voc", "root": "VOC2007", "split": "train"}, masks=True)


def test_dataset_targets_carry_masks_through_the_flip(tmp_path):
    Image.new("RGB", (W, H)).save(tmp_path / "a.jpg")
    square = np.zeros((H, W), np.uint8)
    square[5:20, 2:12] = 1
    path = write(tmp_path, [ann(1, rle(square), bbox=(2, 5, 10, 15))])
    src = load_coco(path, tmp_path, masks=True)
    _, plain = DetectionDataset([src], train=True, masks=True)[0]
    assert plain["masks"].dtype == torch.uint8 and plain["masks"].shape == (1, H, W)
    np.testing.assert_array_equal(plain["masks"][0].numpy(), square)
    _, flipped = DetectionDataset([src], RandomHorizontalFlip(1.0), train=True, masks=True)[0]
    ys, xs = np.nonzero(flipped["masks"][0].numpy())
    # the mirrored mask's extent is the mirrored box: x in [W - 12, W - 2)
    assert (xs.min(), xs.max() + 1, ys.min(), ys.max() + 1) == (W - 12, W - 2, 5, 20)
    np.testing.assert_allclose(flipped["boxes"][0].numpy(), [W - 12, 5, W - 2, 20])


def test_shapes_masks_are_the_painted_pixels(tmp_path):
    out = generate_shapes(tmp_path / "s", "train", num_images=8, image_size=96, seed=0)
    raw = json.loads((out / "annotations.json").read_text())
    src = load_coco(out / "annotations.json", out / "JPEGImages", masks=True)
    assert sum(len(r.boxes) for r in src.records) == len(raw["annotations"])
    rectangles = 0
    for r in src.records:
        masks = rasterize(r.segmentations, r.height, r.width)
        assert masks.sum(0).max() == 1  # visible parts: no pixel belongs to two shapes
        for k, (mask, box) in enumerate(zip(masks, r.boxes.astype(int))):
            x1, y1, x2, y2 = box
            ys, xs = np.nonzero(mask)
            assert x1 <= xs.min() and xs.max() < x2 and y1 <= ys.min() and ys.max() < y2
            later = r.boxes[k + 1 :].astype(int)
            covered = any(
                min(x2, b[2]) > max(x1, b[0]) and min(y2, b[3]) > max(y1, b[1]) for b in later
            )
            if src.class_names[r.labels[k]] == "rectangle" and not covered:
                assert mask[y1:y2, x1:x2].all()  # an unoccluded rectangle fills its box
                rectangles += 1
    assert rectangles >= 1
    areas = [a["area"] for a in raw["annotations"]]
    assert areas == [
        int(m.sum()) for r in src.records for m in rasterize(r.segmentations, r.height, r.width)
    ]

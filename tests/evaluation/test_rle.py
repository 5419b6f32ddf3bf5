"""resdet.evaluation.rle: masks <-> COCO RLE, checked against hand-made masks."""

import json

import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch

from resdet.evaluation.rle import (
    binary_to_rle,
    is_rle,
    masks_to_rle,
    rle_area,
    rle_to_bbox,
    rle_to_mask,
)

# pycocotools 2.0.11's decode under numpy 2 warns on every call
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def l_shape() -> np.ndarray:
    """(5, 7) uint8: an L of 3 + 4 pixels; not square and not symmetric, so a row-major slip
    shows."""
    m = np.zeros((5, 7), dtype=np.uint8)
    m[1:4, 2] = 1  # the stem: rows 1..3 of column 2
    m[3, 3:7] = 1  # the foot: columns 3..6 of row 3
    return m


def test_round_trip_of_a_hand_made_mask():
    (rle,) = binary_to_rle(l_shape()[None])
    assert rle["size"] == [5, 7] and isinstance(rle["counts"], str)
    assert json.loads(json.dumps(rle)) == rle  # JSON as it is
    assert rle_area([rle]) == [7]
    assert rle_to_bbox(rle) == [2.0, 1.0, 5.0, 3.0]  # x 2..6, y 1..3
    decoded = rle_to_mask(rle)
    assert decoded.shape == (5, 7) and np.array_equal(decoded, l_shape())


def test_counts_are_column_major_runs():
    # [[0, 1, 1], [0, 0, 1]] read column by column: 0 0 | 1 0 | 1 1 -> runs 2, 1, 1, 2
    (rle,) = binary_to_rle(torch.tensor([[[0, 1, 1], [0, 0, 1]]], dtype=torch.bool))
    by_hand = mask_util.frPyObjects({"size": [2, 3], "counts": [2, 1, 1, 2]}, 2, 3)
    assert rle["counts"] == by_hand["counts"].decode("ascii")


def test_model_masks_are_thresholded_above_one_half():
    probs = torch.full((2, 1, 5, 7), 0.2)
    probs[0, 0] = torch.from_numpy(l_shape()).float() * 0.9
    probs[1, 0, 0, 0] = 0.5  # not above the threshold: off
    probs[1, 0, 4, 6] = 0.51
    rles = masks_to_rle(probs)
    assert len(rles) == 2 and all(r["size"] == [5, 7] for r in rles)
    assert np.array_equal(rle_to_mask(rles[0]), l_shape())
    expected = np.zeros((5, 7), dtype=np.uint8)
    expected[4, 6] = 1
    assert np.array_equal(rle_to_mask(rles[1]), expected)
    assert masks_to_rle(torch.zeros(0, 1, 5, 7)) == []


def test_masks_of_another_shape_are_refused():
    with pytest.raises(ValueError, match=r"\(K, 1, H, W\)"):
        masks_to_rle(torch.zeros(2, 5, 7))
    with pytest.raises(ValueError, match=r"\(K, H, W\)"):
        binary_to_rle(np.zeros((5, 7), dtype=bool))


@pytest.mark.parametrize(
    "value,ok",
    [
        ({"size": [5, 7], "counts": "abc"}, True),
        ({"size": [5, 7], "counts": [2, 1]}, False),  # uncompressed
        ([[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]], False),  # a polygon
        ({"size": [5], "counts": "abc"}, False),
        ({"size": [5, 7.0], "counts": "abc"}, False),
        ({"size": [5, 7], "counts": "abc", "extra": 1}, False),
    ],
)
def test_is_rle(value, ok):
    assert is_rle(value) is ok

"""The `data:` config section: entries of every kind load; bad values name the key."""

import pytest

from resdet.config import ConfigError, load_config


def test_data_section_round_trip(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(
        "data:\n  root: /d\n"
        "  train: [voc_2007_trainval, {format: shapes, split: train, num_images: 8}]\n"
        "  test: [{format: coco, ann_file: a.json, image_dir: img}]\n  flip_prob: 0.25\n"
        "  skip_bad_images: true\n"
    )
    data = load_config(path).data
    assert data.train == [
        "voc_2007_trainval",
        {"format": "shapes", "split": "train", "num_images": 8},
    ]
    assert data.flip_prob == 0.25 and data.skip_bad_images and data.aspect_grouping
    assert data.duplicate_iou == 0.9
    path.write_text("data:\n  duplicate_iou: null\n")
    assert load_config(path).data.duplicate_iou is None


@pytest.mark.parametrize(
    "text,needle",
    [
        ("data:\n  flip_prob: 2.0\n", "flip_prob"),
        (
            "data:\n  min_size_train: [800]\n",
            "data.min_size_train",
        ),  # resizing lives in model.input
        ("data:\n  train: voc_2007_trainval\n", "data.train"),
        ("data:\n  filter_emtpy: true\n", "data.filter_emtpy"),
        ("data:\n  duplicate_iou: 1.5\n", "duplicate_iou"),
    ],
)
def test_bad_data_values_name_the_key(tmp_path, text, needle):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=needle):
        load_config(path)

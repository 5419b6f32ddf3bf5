"""tools/visualize.py: boxes drawn on generated shapes images (COCO and VOC ids), curves from
handmade logs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from resdet.data import DatasetError
from resdet.data.shapes import SHAPE_CLASSES, ensure_shapes_detection
from resdet.data.voc import VOC_CLASSES
from resdet.reports.curves import read_run, resolve_keys
from resdet.reports.visualize import GT_COLOUR, PRED_COLOUR
from tools import visualize


@pytest.fixture(scope="module")
def tool():
    return visualize


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    """4 images of about 128 px with one shape each, so every box outline is free of other boxes."""
    tmp = tmp_path_factory.mktemp("shapes")
    folder = ensure_shapes_detection(
        "test", num_images=4, image_size=128, max_objects=1, cache_dir=tmp / "cache"
    )
    coco_cfg = tmp / "coco.yaml"
    coco_cfg.write_text(
        f"data:\n  test:\n    - {{format: coco, ann_file: "
        f"{folder / 'annotations.json'}, "
        f"image_dir: {folder / 'JPEGImages'}}}\n"
    )
    voc_cfg = tmp / "voc.yaml"
    voc_cfg.write_text(
        f"data:\n  test:\n    - {{format: voc, root: {folder}, split: test, "
        f"class_names: [{', '.join(SHAPE_CLASSES)}]}}\n"
    )
    ann = json.loads((folder / "annotations.json").read_text())
    return {"folder": folder, "coco": coco_cfg, "voc": voc_cfg, "ann": ann, "tmp": tmp}


def handmade_detections(ann: dict) -> list[dict]:
    """Per image: the GT box shifted right by half its width (score 0.9), a low-score GT copy."""
    dets = []
    for a in ann["annotations"]:
        x, y, w, h = a["bbox"]
        dets.append(
            {
                "image_id": a["image_id"],
                "category_id": a["category_id"],
                "bbox": [x + w // 2, y, w, h],
                "score": 0.9,
            }
        )
        dets.append(
            {
                "image_id": a["image_id"],
                "category_id": a["category_id"],
                "bbox": [x, y + 2, w, h - 4],
                "score": 0.1,
            }
        )
    return dets


def left_column(png: np.ndarray, x: float, y: float, h: float) -> np.ndarray:
    """Pixels of a box's left outline: column int(x), rows int(y)..int(y + h); no label reaches it
    (labels start right of the outline)."""
    return png[int(y) : int(y + h) + 1, int(x)]


def test_boxes_draw_gt_and_predictions_at_image_size(tool, shapes, tmp_path):
    dets_file = tmp_path / "dets.json"
    dets_file.write_text(json.dumps(handmade_detections(shapes["ann"])))
    out = tmp_path / "vis"
    written = tool.main(
        [
            "boxes",
            str(shapes["coco"]),
            "--detections",
            str(dets_file),
            "--output-dir",
            str(out),
            "--score-thresh",
            "0.5",
        ]
    )
    assert sorted(p.name for p in written) == ["1.png", "2.png", "3.png", "4.png"]
    sizes = {im["id"]: (im["width"], im["height"]) for im in shapes["ann"]["images"]}
    for a in shapes["ann"]["annotations"]:
        image = Image.open(out / f"{a['image_id']}.png")
        assert image.size == sizes[a["image_id"]] and image.mode == "RGB"
        png = np.asarray(image)
        x, y, w, h = a["bbox"]
        gt_edge = left_column(png, x, y, h)
        assert (gt_edge == GT_COLOUR).all(), f"image {a['image_id']}: GT outline {gt_edge.tolist()}"
        pred_edge = left_column(png, x + w // 2, y, h)
        assert (pred_edge == PRED_COLOUR).all(), (
            f"image {a['image_id']}: prediction outline {pred_edge.tolist()}"
        )
        # the 0.1-score copy is below --score-thresh: its bottom edge, left of the drawn
        # prediction, is not drawn
        below = png[int(y + h - 2), int(x) + 4 : int(x + w // 2)]
        assert not (below == PRED_COLOUR).all(axis=-1).any()
    # pixels away from every box are the decoded JPEG's
    jpeg = np.asarray(Image.open(shapes["folder"] / "JPEGImages" / "000001.jpg").convert("RGB"))
    png = np.asarray(Image.open(out / "1.png"))
    a = next(a for a in shapes["ann"]["annotations"] if a["image_id"] == 1)
    x, y, w, h = a["bbox"]
    outside = np.ones(png.shape[:2], bool)
    # the boxes, and their labels (about 15 px tall, reaching below a short box)
    outside[max(int(y) - 1, 0) : int(y + max(h, 20)) + 2, max(int(x) - 1, 0) :] = False
    assert outside.any() and (png[outside] == jpeg[outside]).all()


def test_voc_ids_give_the_same_pictures_as_coco_ids(tool, shapes, tmp_path):
    """The shapes VOC tree holds the same boxes; its results use id strings, 1-based classes."""
    coco_dets = handmade_detections(shapes["ann"])
    category = {c["id"]: c["name"] for c in shapes["ann"]["categories"]}
    voc_dets = [
        {
            **d,
            "image_id": f"{d['image_id']:06d}",
            "category_id": SHAPE_CLASSES.index(category[d["category_id"]]) + 1,
        }
        for d in coco_dets
    ]
    for name, dets in (("coco", coco_dets), ("voc", voc_dets)):
        (tmp_path / f"{name}.json").write_text(json.dumps(dets))
        tool.main(
            [
                "boxes",
                str(shapes[name]),
                "--detections",
                str(tmp_path / f"{name}.json"),
                "--output-dir",
                str(tmp_path / name),
                "--num",
                "2",
            ]
        )
    assert sorted(p.name for p in (tmp_path / "voc").iterdir()) == ["000001.png", "000002.png"]
    for coco_name, voc_name in (("1.png", "000001.png"), ("2.png", "000002.png")):
        np.testing.assert_array_equal(
            np.asarray(Image.open(tmp_path / "coco" / coco_name)),
            np.asarray(Image.open(tmp_path / "voc" / voc_name)),
        )


def draw_coco_boxes(tool, shapes, detections: Path, output_dir: Path):
    """`visualize boxes` on the COCO config of the `shapes` fixture."""
    return tool.main(
        [
            "boxes",
            str(shapes["coco"]),
            "--detections",
            str(detections),
            "--output-dir",
            str(output_dir),
        ]
    )


def test_boxes_bad_detections_name_the_file_and_record(tool, shapes, tmp_path):
    dets = handmade_detections(shapes["ann"])
    dets[3] = {**dets[3], "image_id": 99}
    bad = tmp_path / "bad_ids.json"
    bad.write_text(json.dumps(dets))
    with pytest.raises(
        DatasetError, match=rf"{bad}: record 3: field 'image_id' 99 is not an image"
    ):
        draw_coco_boxes(tool, shapes, bad, tmp_path / "o")
    dets[3] = {**dets[0], "bbox": [10, 10, -5, 4]}
    bad.write_text(json.dumps(dets))
    with pytest.raises(DatasetError, match=rf"{bad}: record 3: field 'bbox' .* negative width"):
        draw_coco_boxes(tool, shapes, bad, tmp_path / "o")
    with pytest.raises(DatasetError, match=r"missing.json: detections file not found"):
        draw_coco_boxes(tool, shapes, tmp_path / "missing.json", tmp_path / "o")
    assert not (tmp_path / "o").exists()


def test_boxes_on_a_real_voc_image(tool, shared_data, tmp_path):
    """VOC2007 000005 (500 x 375) has difficult chairs; its XML's xmin=5 is column 4 once loaded."""
    root = shared_data("voc_mini")
    cfg = tmp_path / "voc.yaml"
    cfg.write_text(f"data:\n  root: {root.resolve()}\n  test: [voc_2007_test]\n")
    dets = tmp_path / "dets.json"
    chair = VOC_CLASSES.index("chair") + 1
    dets.write_text(
        json.dumps(
            [{"image_id": "000005", "category_id": chair, "bbox": [100, 50, 60, 40], "score": 0.8}]
        )
    )
    tool.main(
        [
            "boxes",
            str(cfg),
            "--detections",
            str(dets),
            "--image-ids",
            "000005",
            "--output-dir",
            str(tmp_path),
        ]
    )
    png = np.asarray(Image.open(tmp_path / "000005.png"))
    assert png.shape == (375, 500, 3)
    # difficult chair: XML xmin 5, ymin 244, ymax 374 -> loaded x1 = 4, y1 = 243, y2 = 374
    assert (png[243:375, 4] == GT_COLOUR).all() and not (png[243:375, 3] == GT_COLOUR).all(-1).any()
    assert (png[50:91, 100] == PRED_COLOUR).all()

    dets.write_text(
        json.dumps([{"image_id": "000005", "category_id": 21, "bbox": [1, 1, 2, 2], "score": 0.8}])
    )
    with pytest.raises(
        DatasetError, match=rf"{dets}: record 0: field 'category_id' 21 is not a category"
    ):
        tool.main(["boxes", str(cfg), "--detections", str(dets), "--output-dir", str(tmp_path)])


def write_run(run: Path, lines: list[dict], eval_json: dict | None = None) -> Path:
    run.mkdir(parents=True)
    (run / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    if eval_json is not None:
        (run / "eval").mkdir()
        (run / "eval" / "metrics.json").write_text(json.dumps(eval_json))
    return run


def losses(it: int, scale: float) -> dict:
    return {
        "iteration": it,
        "loss_cls": scale / it,
        "loss_box": 0.5 * scale / it,
        "total_loss": 1.5 * scale / it,
        "lr": 0.01,
        "time": 0.2,
    }


def test_curves_of_two_runs(tool, tmp_path):
    a = write_run(
        tmp_path / "run_a",
        [losses(i, 1.0) for i in (10, 20, 30)] + [{"iteration": 30, "eval/AP50": 0.4}],
    )
    # run b: a non-finite loss logged as null, its evaluation only in eval/metrics.json, a truncated
    # last line
    b = write_run(
        tmp_path / "run_b",
        [losses(10, 2.0), {**losses(20, 2.0), "loss_box": None}],
        eval_json={"iteration": 20, "metrics": {"AP50": 0.25, "AP": 0.1}},
    )
    with (b / "metrics.jsonl").open("a") as f:
        f.write('{"iteration": 30, "loss_')

    with pytest.warns(UserWarning, match=r"metrics.jsonl:3: skipping an incomplete last line"):
        run_b = read_run(b)
    np.testing.assert_array_equal(run_b.series["loss_cls"][0], [10, 20])
    np.testing.assert_allclose(run_b.series["loss_cls"][1], [0.2, 0.1])
    assert math.isnan(run_b.series["loss_box"][1][1])
    assert run_b.series["eval/AP50"][0].tolist() == [20]
    assert run_b.series["eval/AP50"][1].tolist() == [0.25]

    out = tmp_path / "curves.png"
    with pytest.warns(UserWarning):
        tool.main(
            ["curves", str(a), str(b), "--output", str(out), "--keys", "total_loss,loss_box,AP50"]
        )
    image = np.asarray(Image.open(out).convert("RGB")).astype(int)
    assert image.shape[:2] == (340, 1350)  # 3 subplots in one row of 4.5 x 3.4 inches at 100 dpi
    # matplotlib's first two tab10 colours: one per run
    for colour in ((31, 119, 180), (255, 127, 14)):
        assert (np.abs(image - colour).sum(-1) < 30).sum() > 100

    with pytest.warns(UserWarning):
        tool.main(["curves", str(a), str(b), "--output", str(tmp_path / "default.png")])
    with pytest.warns(UserWarning):
        default_keys = resolve_keys([read_run(a), read_run(b)])
    assert default_keys == ["total_loss", "loss_cls", "loss_box", "eval/AP50", "eval/AP"]


def test_curves_bad_input_names_the_file_or_key(tool, tmp_path):
    empty = tmp_path / "not_a_run"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match=rf"{empty / 'metrics.jsonl'}: no metrics log"):
        tool.main(["curves", str(empty), "--output", str(tmp_path / "c.png")])
    run = write_run(tmp_path / "run", [losses(10, 1.0)])
    with pytest.raises(
        ValueError,
        match=r"key 'mAP50' is in none of .*run/metrics.jsonl; logged keys: "
        r"loss_box",
    ):
        tool.main(["curves", str(run), "--output", str(tmp_path / "c.png"), "--keys", "mAP50"])
    broken = write_run(tmp_path / "broken", [losses(10, 1.0), losses(20, 1.0)])
    (broken / "metrics.jsonl").write_text("{oops\n" + (broken / "metrics.jsonl").read_text())
    with pytest.raises(ValueError, match=rf"{broken / 'metrics.jsonl'}:1: not JSON"):
        tool.main(["curves", str(broken), "--output", str(tmp_path / "c.png")])
    assert not (tmp_path / "c.png").exists()


def test_masks_are_filled_half_transparent(tool, shapes, tmp_path):
    """Each shape's own mask (the generator's RLE) as the prediction: inside it the picture is
    half the JPEG and half PRED_COLOUR; outside every box it is the JPEG."""
    from resdet.evaluation.rle import rle_to_mask

    dets = [
        {
            "image_id": a["image_id"],
            "category_id": a["category_id"],
            "bbox": a["bbox"],
            "score": 0.9,
            "segmentation": a["segmentation"],
        }
        for a in shapes["ann"]["annotations"]
    ]
    dets_file = tmp_path / "dets.json"
    dets_file.write_text(json.dumps(dets))
    out = tmp_path / "vis"
    tool.main(
        ["boxes", str(shapes["coco"]), "--detections", str(dets_file), "--output-dir", str(out)]
    )
    checked = 0
    for a, im in zip(shapes["ann"]["annotations"], shapes["ann"]["images"]):
        png = np.asarray(Image.open(out / f"{a['image_id']}.png")).astype(int)
        jpeg = np.asarray(
            Image.open(shapes["folder"] / "JPEGImages" / im["file_name"]).convert("RGB")
        ).astype(int)
        mask = rle_to_mask(a["segmentation"]).astype(bool)
        x, y, w, h = (int(v) for v in a["bbox"])
        inner = np.zeros_like(mask)
        inner[y + 4 : y + h - 4, x + 4 : x + w - 4] = True  # clear of the outlines
        inner[: y + 20] = False  # and of the labels
        sel = mask & inner
        if sel.sum() == 0:
            continue
        expected = (jpeg[sel] * 0.5 + np.array(PRED_COLOUR) * 0.5).round()
        assert np.abs(png[sel] - expected).max() <= 1
        checked += 1
        far = np.ones_like(mask)
        far[max(y - 2, 0) : y + max(h, 20) + 2, max(x - 2, 0) :] = False
        assert (png[far] == jpeg[far]).all()
    assert checked >= 2

"""tools/predict.py: a trained checkpoint on a folder of image files (no dataset): a drawing per
image, one results JSON equal to the model's own output, unreadable files skipped and counted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_train_det import TINY

from resdet.build import build_model
from resdet.config import load_config
from resdet.deploy.predict import collect_images
from resdet.io.checkpoints import load_checkpoint
from tools import predict, train_det

ROOT = Path(__file__).resolve().parents[2]
CONFIG = str(ROOT / "configs" / "demo_shapes.yaml")
#: every proposal is kept, so an almost untrained model still detects
PREDICT = [*TINY, "model.roi_heads.score_thresh=0.0"]

pytestmark = pytest.mark.usefixtures("plain_convolutions")


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """model_final.pth of a one-iteration demo run, written by the trainer."""
    out = tmp_path_factory.mktemp("run")
    mp = pytest.MonkeyPatch()
    mp.setenv("RESDET_CACHE", str(out / "cache"))
    try:
        args = [CONFIG, "--no-progress", "--output-dir", str(out), *TINY, "solver.max_iter=1"]
        assert train_det.main(args) == 0
    finally:
        mp.undo()
    return out / "model_final.pth"


def _photos(folder: Path) -> list[Path]:
    """Two pictures of other sizes than training's, a file that is not an image, and a note."""
    folder.mkdir()
    rng = np.random.default_rng(0)
    paths = []
    for name, (h, w) in (("a.png", (48, 64)), ("b.jpg", (64, 40))):
        pixels = rng.integers(0, 60, (h, w, 3), dtype=np.uint8)
        pixels[8:30, 10:35] = (230, 40, 40)
        Image.fromarray(pixels).save(folder / name)
        paths.append(folder / name)
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    (folder / "notes.txt").write_text("not an image")
    return paths


def test_predict_folder_writes_drawings_and_the_models_detections(trained, tmp_path, capsys):
    images = _photos(tmp_path / "photos")
    out = tmp_path / "pred"
    report = predict.main(
        [CONFIG, "--weights", str(trained), str(tmp_path / "photos"), "--output-dir", str(out),
         "--score-thresh", "0.0", "--batch-size", "2", "--device", "cpu", *PREDICT]
    )  # fmt: skip
    assert report.predicted == images
    assert [p for p, _ in report.skipped] == [tmp_path / "photos" / "broken.jpg"]
    printed = capsys.readouterr().out
    assert "broken.jpg" in printed and "skipped 1 unreadable" in printed

    ckpt = torch.load(trained, map_location="cpu", weights_only=True)
    names = ckpt["class_names"]
    cfg = load_config(CONFIG, PREDICT)
    model = build_model(cfg, len(names), load_weights=False)
    load_checkpoint(model, trained)
    model.eval()
    records = json.loads((out / "predictions.json").read_text())
    assert len(records) == report.num_detections > 0
    for path in images:
        pixels = torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1)
        with torch.no_grad():
            want = model([pixels.float() / 255])[0]
        got = [r for r in records if r["image_id"] == str(path)]
        assert len(got) == len(want["scores"]) > 0
        x1, y1, x2, y2 = want["boxes"].unbind(1)
        xywh = torch.stack([x1, y1, x2 - x1, y2 - y1], 1)
        torch.testing.assert_close(torch.tensor([r["bbox"] for r in got]), xywh, atol=0.01, rtol=0)
        torch.testing.assert_close(
            torch.tensor([r["score"] for r in got]), want["scores"], atol=1e-5, rtol=0
        )
        assert [r["category_id"] for r in got] == (want["labels"] + 1).tolist()
        assert [r["category_name"] for r in got] == [names[k] for k in want["labels"]]

        drawing = Image.open(out / f"{path.stem}.png")
        assert drawing.size == Image.open(path).size
        assert not np.array_equal(np.asarray(drawing.convert("RGB")), pixels.permute(1, 2, 0))


def test_inputs_files_globs_and_folders(tmp_path):
    a, b = _photos(tmp_path / "p")
    assert collect_images([str(b), str(tmp_path / "p"), str(tmp_path / "p" / "*.png")]) == [
        b,
        a,
        tmp_path / "p" / "broken.jpg",
    ]
    with pytest.raises(FileNotFoundError, match="nothere"):
        collect_images([str(tmp_path / "nothere")])


def test_bad_input_is_one_line_and_exit_code_2(trained, tmp_path):
    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, str(ROOT / "tools" / "predict.py"), CONFIG, *args, *PREDICT],
            capture_output=True, text=True, cwd=tmp_path,
        )  # fmt: skip

    missing = run("--weights", str(trained), str(tmp_path / "nothere"))
    assert missing.returncode == 2 and missing.stderr.strip().count("\n") == 0
    assert "nothere" in missing.stderr

    bare = tmp_path / "bare.pth"  # weights without class names, e.g. another library's
    torch.save(torch.load(trained, weights_only=True)["model"], bare)
    (tmp_path / "x").mkdir()
    Image.new("RGB", (32, 32)).save(tmp_path / "x" / "x.png")
    nameless = run("--weights", str(bare), str(tmp_path / "x"))
    assert nameless.returncode == 2 and "model.num_classes" in nameless.stderr

    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(trained.read_bytes()[:1000])
    truncated = run("--weights", str(corrupt), str(tmp_path / "x"))
    assert truncated.returncode == 2 and "refusing to load" in truncated.stderr
    assert truncated.stderr.strip().count("\n") == 0


def test_mask_rcnn_predictions_carry_its_masks(tmp_path):
    """A Mask R-CNN checkpoint (saved as the trainer saves one): each record's RLE decodes to the
    model's own mask thresholded at 0.5, and masks are drawn."""
    from resdet.evaluation.rle import rle_to_mask

    config = str(ROOT / "configs" / "demo_shapes_mask.yaml")
    overrides = [*PREDICT, "model.mask_head.conv_dim=8", "model.mask_head.num_conv=1"]
    cfg = load_config(config, overrides)
    torch.manual_seed(0)
    model = build_model(cfg, 2, load_weights=False).eval()
    ckpt = tmp_path / "mask.pth"
    torch.save(
        {"format": "resdet", "kind": "detector", "model": model.state_dict(),
         "pixel_format": model.pixel_format.to_dict(), "class_names": ["disc", "square"]},
        ckpt,
    )  # fmt: skip
    (path,) = _photos(tmp_path / "p")[:1]
    out = tmp_path / "pred"
    predict.main([config, "--weights", str(ckpt), str(path), "--output-dir", str(out),
                  "--score-thresh", "0.0", *overrides])  # fmt: skip
    records = json.loads((out / "predictions.json").read_text())
    pixels = torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1)
    with torch.no_grad():
        want = model([pixels.float() / 255])[0]
    assert len(records) == len(want["masks"]) > 0
    for r, m in zip(records, want["masks"]):
        assert r["category_name"] in ("disc", "square")
        np.testing.assert_array_equal(rle_to_mask(r["segmentation"]), (m[0] > 0.5).numpy())

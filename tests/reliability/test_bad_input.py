"""Nothing lost, one line for every failure: bad input to the tools is one `<tool>: error: ...` line
naming the file, record, field or key, and exit code 2, never a traceback; nothing the user gave is
overwritten. Each case drives the real command line (`python tools/<tool>.py`) on tiny inputs made
here, except the CIFAR cache keying, which is a library test."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from resdet.build import build_model
from resdet.config import load_config
from resdet.data.image_io import BadImageError, read_image
from tests.tools.tiny_runs import TINY_CLS, save_detector

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "configs" / "demo_shapes.yaml"
#: the demo detector shrunk to seconds: no pretrained backbone, narrow heads, 32-px inputs, every
#: proposal kept (an untrained model still detects)
TINY_PREDICTOR = [
    "model.backbone.weights=null",
    "model.fpn.out_channels=16",
    "model.roi_heads.fc_dim=32",
    "model.roi_heads.score_thresh=0.0",
    *(f"model.input.{k}={v}" for k, v in [("min_size_test", 32), ("max_size_test", 32)]),
]


def run_tool(tool: str, *args: object, cwd: Path, env: dict[str, str] | None = None):
    """`python tools/<tool>.py ARGS` in `cwd`; -> the finished process (text output)."""
    return subprocess.run(
        [sys.executable, str(ROOT / "tools" / f"{tool}.py"), *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        timeout=600,
    )


def assert_one_line_error(proc: subprocess.CompletedProcess, tool: str, *names: object) -> str:
    """Exit code 2, no traceback, and one `<tool>: error:` line that names each of `names`."""
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith(f"{tool}: error: ")]
    assert len(lines) == 1, proc.stderr
    for name in names:
        assert str(name) in lines[0], (name, lines[0])
    return lines[0]


# ----------------------------------------------------------------------------- eval_det


def _coco_gt(path: Path, *, annotations: list | None) -> Path:
    """Two images, one category; `annotations=None` leaves the key out."""
    data = {
        "images": [
            {"id": 1, "file_name": "a.jpg", "height": 40, "width": 50},
            {"id": 2, "file_name": "b.jpg", "height": 40, "width": 50},
        ],
        "categories": [{"id": 7, "name": "cell"}],
    }
    if annotations is not None:
        data["annotations"] = annotations
    path.write_text(json.dumps(data))
    return path


def _eval_config(tmp_path: Path, gt: Path) -> Path:
    config = tmp_path / f"eval_{gt.stem}.yaml"
    config.write_text(
        f"_base_: {DEMO}\n"
        f"data:\n  root: {tmp_path}\n"
        f"  test: [{{format: coco, ann_file: {gt.name}, image_dir: images}}]\n"
        f"output_dir: {tmp_path / 'out'}\n"
    )
    return config


GOOD = {"image_id": 1, "category_id": 7, "bbox": [5, 5, 10, 10], "score": 0.9}
ONE_BOX = [{"id": 1, "image_id": 1, "category_id": 7, "bbox": [5, 5, 10, 10], "area": 100}]


@pytest.mark.parametrize(
    "field, value",
    [("image_id", [1]), ("category_id", {"id": 7}), ("score", True), ("bbox", [5, 5, -10, 10])],
)
def test_eval_det_refuses_a_results_record_with_a_bad_field(tmp_path, field, value):
    config = _eval_config(tmp_path, _coco_gt(tmp_path / "gt.json", annotations=ONE_BOX))
    results = tmp_path / "results.json"
    results.write_text(json.dumps([GOOD, {**GOOD, field: value}]))
    proc = run_tool("eval_det", config, "--detections", results, cwd=tmp_path)
    assert_one_line_error(proc, "eval_det", results, "record 1", f"field '{field}'")
    assert not list((tmp_path / "out").rglob("metrics.json"))


def test_eval_det_refuses_a_coco_test_set_without_annotations(tmp_path):
    gt = _coco_gt(tmp_path / "gt.json", annotations=None)
    results = tmp_path / "results.json"
    results.write_text(json.dumps([GOOD]))
    proc = run_tool("eval_det", _eval_config(tmp_path, gt), "--detections", results, cwd=tmp_path)
    assert_one_line_error(proc, "eval_det", gt, "'annotations'")
    assert "-100" not in proc.stdout


def test_eval_det_warns_once_when_annotations_are_empty(tmp_path):
    gt = _coco_gt(tmp_path / "gt.json", annotations=[])
    results = tmp_path / "results.json"
    results.write_text(json.dumps([GOOD]))
    proc = run_tool("eval_det", _eval_config(tmp_path, gt), "--detections", results, cwd=tmp_path)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    warned = [line for line in proc.stderr.splitlines() if "nothing to score" in line]
    assert len(warned) == 1 and str(gt) in warned[0] and warned[0].startswith("warning: ")
    assert "mAP@0.5 -100" not in proc.stdout


# ----------------------------------------------------------------------------- predict


@pytest.fixture(scope="module")
def detector(tmp_path_factory) -> Path:
    """An untrained demo detector saved as training saves it, with its class names."""
    path = tmp_path_factory.mktemp("ckpt") / "model.pth"
    cfg = load_config(DEMO, TINY_PREDICTOR)
    torch.manual_seed(0)
    model = build_model(cfg, num_classes=2, load_weights=False)
    save_detector(model, path, ["circle", "square"])
    return path


def _photo(path: Path, seed: int = 0) -> Path:
    pixels = np.random.default_rng(seed).integers(0, 255, (24, 32, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def _png16(path: Path, pixels: np.ndarray) -> Path:
    """A PNG storing 16 bits a channel (colour type 2: RGB, 4: LA, 6: RGBA), which Pillow cannot
    write."""
    import struct
    import zlib

    h, w, c = pixels.shape
    color_type = {2: 4, 3: 2, 4: 6}[c]
    rows = b"".join(b"\0" + pixels[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )
    return path


@pytest.mark.parametrize("channels, mode", [(3, "RGB"), (4, "RGBA"), (2, "LA")])
def test_sixteen_bit_colour_png_is_refused_naming_file_and_mode(tmp_path, channels, mode):
    pixels = np.random.default_rng(0).integers(0, 65535, (4, 5, channels))
    path = _png16(tmp_path / "deep.png", pixels)
    with pytest.raises(BadImageError, match=f"deep.png: 16-bit {mode} "):
        read_image(path)


def test_predict_skips_and_counts_a_sixteen_bit_rgb_png(tmp_path, detector):
    photos = tmp_path / "photos"
    photos.mkdir()
    _photo(photos / "a.png")
    _png16(photos / "deep.png", np.random.default_rng(0).integers(0, 65535, (24, 32, 3)))
    out = tmp_path / "pred"
    proc = run_tool(
        "predict", DEMO, "--weights", detector, photos, "--output-dir", out, *TINY_PREDICTOR,
        "--device", "cpu", cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert f"skipped {photos / 'deep.png'}: 16-bit RGB" in proc.stdout
    assert "skipped 1 unreadable" in proc.stdout
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "predictions.json"]


# ----------------------------------------------------------------------------- CIFAR decode cache


def _cifar_bmp(root: Path) -> Path:
    """Class folders of 8x8 BMPs (a BMP's file size depends on its dimensions only)."""
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for name in ("cat", "dog"):
            (root / split / name).mkdir(parents=True)
            for i in range(2):
                pixels = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / name / f"{i}.bmp")
    return root


def test_cifar_cache_sees_a_replaced_image_of_the_same_size_and_mtime(tmp_path):
    from resdet.classification.cifar import load_cifar

    root = _cifar_bmp(tmp_path / "cifar")
    load_cifar(root, "test", cache_dir=tmp_path / "cache", progress=False)
    replaced = root / "test" / "dog" / "1.bmp"
    before = replaced.stat()
    new = np.full((8, 8, 3), 7, np.uint8)
    Image.fromarray(new).save(replaced)
    os.utime(replaced, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = replaced.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    again = load_cifar(root, "test", cache_dir=tmp_path / "cache", progress=False)
    assert torch.equal(again.images[3].permute(1, 2, 0), torch.from_numpy(new))


@pytest.mark.parametrize("damage", ["truncated", "empty", "not_ours"])
def test_cifar_cache_file_that_cannot_be_read_is_rebuilt_with_one_warning(tmp_path, damage):
    import warnings

    from resdet.classification.cifar import load_cifar
    from resdet.data.errors import DatasetWarning

    root = _cifar_bmp(tmp_path / "cifar")
    first = load_cifar(root, "train", cache_dir=tmp_path / "cache", progress=False)
    (cached,) = (tmp_path / "cache" / "cifar").glob("*.pt")
    data = cached.read_bytes()
    if damage == "not_ours":
        torch.save({"images": torch.zeros(1)}, cached)
    else:
        cached.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        again = load_cifar(root, "train", cache_dir=tmp_path / "cache", progress=False)
    warned = [str(w.message) for w in caught if w.category is DatasetWarning]
    assert len(warned) == 1 and str(cached) in warned[0] and "\n" not in warned[0], warned
    assert torch.equal(again.images, first.images) and torch.equal(again.labels, first.labels)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # rebuilt: read back without a warning
        load_cifar(root, "train", cache_dir=tmp_path / "cache", progress=False)


@pytest.mark.parametrize("how", ["the input folder", "a link to it", "an input file's folder"])
def test_predict_refuses_an_output_dir_holding_its_inputs(tmp_path, detector, how):
    photos = tmp_path / "photos"
    photos.mkdir()
    _photo(photos / "a.png")
    b = _photo(photos / "b.jpg", seed=1)
    (photos / "b.png").write_bytes(b"the user's own b.png, not an input")
    before = {p.name: p.read_bytes() for p in photos.iterdir()}
    inputs, out = [photos], photos
    if how == "a link to it":
        out = tmp_path / "link"
        out.symlink_to(photos, target_is_directory=True)
    elif how == "an input file's folder":
        inputs = [b]
    proc = run_tool(
        "predict", DEMO, "--weights", detector, *inputs, "--output-dir", out, *TINY_PREDICTOR,
        "--device", "cpu", cwd=tmp_path,
    )  # fmt: skip
    assert_one_line_error(proc, "predict", f"--output-dir {out}", "holds input image")
    assert {p.name: p.read_bytes() for p in photos.iterdir()} == before


# ----------------------------------------------------------------------------- weights files


def _damaged(path: Path, damage: str) -> Path:
    """A weights file that is truncated, empty, or not a checkpoint at all."""
    torch.save({"conv1.weight": torch.zeros(8, 3, 3, 3)}, path)
    data = path.read_bytes()
    contents = {"truncated": data[: len(data) // 2], "empty": b"", "text": b"hello, not weights"}
    path.write_bytes(contents[damage])
    return path


@pytest.mark.parametrize("damage", ["truncated", "empty", "text"])
def test_pretrain_cls_eval_only_refuses_a_damaged_checkpoint(tmp_path, damage):
    weights = _damaged(tmp_path / "cls.pth", damage)
    proc = run_tool(
        "pretrain_cls", "--eval-only", "--weights", weights, "--output-dir", tmp_path / "run",
        *TINY_CLS, cwd=tmp_path, env={"RESDET_CACHE": str(tmp_path / "cache")},
    )  # fmt: skip
    assert_one_line_error(proc, "pretrain_cls", weights)


def test_pretrain_cls_eval_only_without_a_checkpoint_is_one_line(tmp_path):
    proc = run_tool(
        "pretrain_cls", "--eval-only", "--output-dir", tmp_path / "run", *TINY_CLS,
        cwd=tmp_path, env={"RESDET_CACHE": str(tmp_path / "cache")},
    )  # fmt: skip
    assert_one_line_error(proc, "pretrain_cls", tmp_path / "run", "--weights")


def test_train_det_refuses_a_truncated_backbone_weights_file(tmp_path):
    weights = _damaged(tmp_path / "r18.pth", "truncated")
    proc = run_tool(
        "train_det", DEMO, f"model.backbone.weights={weights}", "--output-dir", tmp_path / "run",
        "data.train=[{format: shapes, split: train, num_images: 2, image_size: 32, seed: 0}]",
        "data.test=[{format: shapes, split: val, num_images: 1, image_size: 32, seed: 0}]",
        "data.num_workers=0", "solver.max_iter=1", "--no-progress",
        cwd=tmp_path, env={"RESDET_CACHE": str(tmp_path / "cache")},
    )  # fmt: skip
    assert_one_line_error(proc, "train_det", weights, "truncated")
    assert not (tmp_path / "run" / "model_final.pth").exists()


# ----------------------------------------------------------------------------- output folders


def test_ensure_writable_dir(tmp_path):
    from resdet.utils.atomic import OutputDirError, ensure_writable_dir

    assert ensure_writable_dir(tmp_path / "new" / "sub") == tmp_path / "new" / "sub"
    assert list((tmp_path / "new" / "sub").iterdir()) == []  # the probe file is gone
    (tmp_path / "f").write_text("keep")
    for bad in (tmp_path / "f", tmp_path / "f" / "sub"):
        with pytest.raises(OutputDirError, match=f"out {bad} "):
            ensure_writable_dir(bad, "out")
    assert (tmp_path / "f").read_text() == "keep"
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(OutputDirError, match="locked cannot be written to"):
            ensure_writable_dir(locked)


@pytest.mark.parametrize("tool", ["predict", "export", "pretrain_cls", "eval_det"])
def test_an_output_dir_that_is_a_file_is_refused_up_front(tmp_path, detector, tool):
    blocker = tmp_path / "taken"
    blocker.write_text("keep me")
    if tool == "predict":
        photos = tmp_path / "photos"
        photos.mkdir()
        _photo(photos / "a.png")
        args = [DEMO, "--weights", detector, photos, "--output-dir", blocker, *TINY_PREDICTOR]
        named = f"--output-dir {blocker} is a file"
    elif tool == "export":
        args = [DEMO, "--weights", detector, "--output", blocker / "model.onnx", *TINY_PREDICTOR]
        named = f"{blocker} is a file"
    elif tool == "pretrain_cls":
        args = ["--output-dir", blocker, *TINY_CLS]
        named = f"--output-dir {blocker} is a file"
    else:
        config = _eval_config(tmp_path, _coco_gt(tmp_path / "gt.json", annotations=ONE_BOX))
        results = tmp_path / "results.json"
        results.write_text(json.dumps([GOOD]))
        args = [config, "--detections", results, "--output-dir", blocker / "eval"]
        named = f"--output-dir {blocker / 'eval'} cannot be written to"
    proc = run_tool(tool, *args, cwd=tmp_path, env={"RESDET_CACHE": str(tmp_path / "cache")})
    assert_one_line_error(proc, tool, named)
    assert blocker.read_text() == "keep me"
    assert "COCO box metrics" not in proc.stdout  # eval_det: refused before evaluating


# ----------------------------------------------------------------------------- transfer_bench


def test_transfer_bench_makes_a_broken_weights_file_its_row(tmp_path):
    """A truncated checkpoint among the sources is that source's error row; the benchmark writes
    its table and exits 1 (a source failed), without a traceback."""
    broken = tmp_path / "broken.pth"
    torch.save({"x": torch.zeros(1000)}, broken)
    broken.write_bytes(broken.read_bytes()[:200])
    out = tmp_path / "bench"
    proc = run_tool(
        "transfer_bench", "--protocol", "shapes_r18_fpn", "--output-dir", out, "--no-progress",
        "--weights", broken, cwd=ROOT, env={**os.environ, "RESDET_CACHE": str(tmp_path / "c")},
    )  # fmt: skip
    assert proc.returncode == 1 and "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    rows = json.loads((out / "transfer.json").read_text())["rows"]
    assert len(rows) == 1 and str(broken) in rows[0]["error"]

"""An undecodable image met by a DataLoader worker stops tools/train_det.py with one line naming the
file and `data.skip_bad_images`; with that option the run completes and counts the skip."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tiny_runs import NARROW_HEADS, input_size

ROOT = Path(__file__).resolve().parents[2]
STEMS = ["BloodImage_00000", "BloodImage_00001"]

#: configs/demo_shapes.yaml shrunk to two 640x480 images seen at 32 px, one batch of both per step
TINY = [
    *input_size(32),
    *NARROW_HEADS,
    "solver.ims_per_batch=2",
    "solver.steps=[]",
    "solver.warmup_iters=0",
    "solver.max_iter=2",
    "solver.checkpoint_period=2",
    "model.rpn.batch_size_per_image=32",
    "model.roi_heads.batch_size_per_image=32",
    "model.backbone.weights=null",
    "model.backbone.norm=BN",
    "model.backbone.freeze_at=1",
    "test.eval_period=0",
    "data.test=[]",
    "data.num_workers=1",
]


@pytest.fixture
def truncated_folder(shared_data, tmp_path) -> tuple[Path, Path]:
    """Two BCCD images with their XMLs; the second cut to its first 40% of bytes."""
    bccd = shared_data("BCCD")
    images, labels = tmp_path / "images", tmp_path / "labels"
    images.mkdir()
    labels.mkdir()
    for stem in STEMS:
        shutil.copy(bccd / "JPEGImages" / f"{stem}.jpg", images)
        shutil.copy(bccd / "Annotations" / f"{stem}.xml", labels)
    cut = images / f"{STEMS[1]}.jpg"
    data = cut.read_bytes()
    cut.write_bytes(data[: int(len(data) * 0.4)])
    return images, labels


def train_det(out: Path, folder: tuple[Path, Path], *extra: str) -> subprocess.CompletedProcess:
    images, labels = folder
    train = f"data.train=[{{format: voc_folder, image_dir: {images}, ann_dir: {labels}}}]"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    env["RESDET_CACHE"] = str(out.parent / "cache")
    return subprocess.run(
        [
            sys.executable,
            str(ROOT / "tools" / "train_det.py"),
            str(ROOT / "configs" / "demo_shapes.yaml"),
            "--no-progress",
            "--output-dir",
            str(out),
            *TINY,
            train,
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=ROOT,
    )


def test_truncated_jpeg_in_a_worker_is_one_line_then_skipped_on_request(truncated_folder, tmp_path):
    bad = truncated_folder[0] / f"{STEMS[1]}.jpg"
    proc = train_det(tmp_path / "fails", truncated_folder)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("train_det: error:")]
    assert len(errors) == 1, proc.stderr
    assert str(bad) in errors[0] and "data.skip_bad_images=true" in errors[0]
    assert "truncated" in errors[0]
    assert not (tmp_path / "fails" / "model_final.pth").exists()

    out = tmp_path / "skips"
    proc = train_det(out, truncated_folder, "data.skip_bad_images=true")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"skipping bad image (1 so far in this process): {bad}" in proc.stderr
    ckpt = torch.load(out / "model_final.pth", map_location="cpu", weights_only=True)
    assert ckpt["iteration"] == 2 and ckpt["class_names"] == ["RBC", "WBC"]
    assert json.loads((out / "class_names.json").read_text()) == {"class_names": ["RBC", "WBC"]}

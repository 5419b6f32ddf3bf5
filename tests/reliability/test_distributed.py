"""Under torchrun, bad input met by a rank: that rank prints the one line and exits 2; the others
leave without a traceback of ours (torchrun's own launcher summary is torchrun's)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from resdet.config import load_config
from resdet.data.build import build_detection_dataset
from tests.tools.tiny_runs import TINY_DET

ROOT = Path(__file__).resolve().parents[2]


def test_bad_image_on_one_rank(tmp_path, monkeypatch):
    monkeypatch.setenv("RESDET_CACHE", str(tmp_path / "cache"))
    cfg = load_config(ROOT / "configs" / "demo_shapes.yaml", TINY_DET)
    generated = Path(build_detection_dataset(cfg.data, "train").sources[0].ann_file).parent
    data = tmp_path / "data"
    shutil.copytree(generated, data)
    coco = json.loads((data / "annotations.json").read_text())
    bad = data / "JPEGImages" / coco["images"][1]["file_name"]
    bad.write_bytes(b"not a jpeg")

    overrides = [o for o in TINY_DET if not o.startswith("data.train=")]
    train = (
        f"data.train=[{{format: coco, ann_file: {data / 'annotations.json'}, "
        f"image_dir: {data / 'JPEGImages'}}}]"
    )
    run = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
         "tools/train_det.py", "configs/demo_shapes.yaml", "--no-progress",
         "--output-dir", str(tmp_path / "out"), *overrides, train,
         "solver.max_iter=4", "solver.ims_per_batch=4"],
        cwd=ROOT, env={**os.environ}, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode != 0
    errors = [ln for ln in run.stderr.splitlines() if ln.startswith("train_det: error:")]
    # the rank that met the file (both, when each draws it before the other stops)
    assert 1 <= len(errors) <= 2 and all(str(bad) in e for e in errors), run.stderr
    assert "exitcode  : 2" in run.stderr  # the failing rank's code, as torchrun reports it
    assert "train_det failed" not in run.stderr  # no rank printed a traceback of ours
    assert "Connection closed by peer" not in run.stderr

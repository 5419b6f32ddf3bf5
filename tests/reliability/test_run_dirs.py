"""An output directory belongs to one run, and a resumed run is the run its checkpoint recorded:
each case through the real command line (tiny shapes runs), asserting the exit code, one line
without a traceback that names the file or key, and what must survive."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path, PurePosixPath

import pytest
import torch

from resdet.config import load_config
from resdet.data.build import build_detection_dataset
from resdet.io.run_lock import RunLock
from tests.tools.tiny_runs import TINY_DET

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


def tool(cache: Path, name: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "RESDET_CACHE": str(cache)}
    return subprocess.run(
        [sys.executable, f"tools/{name}.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def train(cache: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    return tool(
        cache,
        "train_det",
        "configs/demo_shapes.yaml",
        "--no-progress",
        "--output-dir",
        str(out),
        *TINY_DET,
        "solver.max_iter=4",
        *extra,
    )


def one_line_error(run: subprocess.CompletedProcess, prog: str, *named: str) -> str:
    assert run.returncode == 2, run.stderr
    assert "Traceback" not in run.stderr
    lines = [ln for ln in run.stderr.splitlines() if ln.startswith(f"{prog}: error:")]
    assert len(lines) == 1, run.stderr
    for part in named:
        assert part in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def finished(cache, tmp_path_factory) -> Path:
    """A finished tiny run (4 iterations, checkpoints at 2 and 4)."""
    out = tmp_path_factory.mktemp("finished")
    run = train(cache, out)
    assert run.returncode == 0, run.stderr
    return out


def snapshot(run_dir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}


def test_a_fresh_run_refuses_a_directory_holding_a_run(cache, finished):
    before = snapshot(finished)
    run = train(cache, finished, "seed=5")
    one_line_error(run, "train_det", str(finished), "already holds a run", "--resume")
    assert snapshot(finished) == before  # nothing truncated, replaced or removed


def test_overwrite_starts_over(cache, finished, tmp_path):
    copy = tmp_path / "copy"
    copy.mkdir()
    for name, data in snapshot(finished).items():
        (copy / name).write_bytes(data)
    (copy / "notes.txt").write_text("mine")
    run = train(cache, copy, "--overwrite", "solver.max_iter=2")
    assert run.returncode == 0, run.stderr
    logged = [json.loads(line) for line in (copy / "metrics.jsonl").read_text().splitlines()]
    assert max(r["iteration"] for r in logged) == 2  # a new run, not the old log
    assert (copy / "notes.txt").read_text() == "mine"  # only the run's own files went
    assert not (copy / "model_0000004.pth").exists()


def test_a_second_launch_refuses_a_directory_in_use(cache, tmp_path):
    out = tmp_path / "busy"
    with RunLock(out):
        run = train(cache, out)
    one_line_error(run, "train_det", str(out), "another run is using", f'pid": {os.getpid()}')
    assert not (out / "config.yaml").exists()


def test_a_lock_left_by_a_killed_run_is_taken(cache, tmp_path):
    out = tmp_path / "stale"
    holder = subprocess.Popen(
        [sys.executable, "-c", f"from resdet.io.run_lock import RunLock\n"
         f"import os, time\nRunLock({str(out)!r}).__enter__()\nprint('held', flush=True)\n"
         "time.sleep(600)"],
        stdout=subprocess.PIPE, text=True, cwd=ROOT,
    )  # fmt: skip
    assert holder.stdout.readline().strip() == "held"
    holder.kill()
    holder.wait()
    assert (out / "run.lock").exists()  # the file stays, the kernel's lock went with the process
    run = train(cache, out)
    assert run.returncode == 0, run.stderr
    assert not (out / "run.lock").exists()


def test_resume_without_a_checkpoint_starts_fresh_and_stale_temporaries_go(cache, tmp_path):
    out = tmp_path / "requeued"
    out.mkdir()
    stale = out / ".model_0000002.pth.abcd1234.tmp"
    stale.write_bytes(b"x" * 100)
    run = train(cache, out, "--resume")
    assert run.returncode == 0, run.stderr
    assert not stale.exists() and "temporary file" in run.stdout
    assert (out / "model_final.pth").is_file()


def test_output_dir_that_is_a_file(cache, tmp_path):
    target = tmp_path / "a_file"
    target.write_text("not a directory")
    run = train(cache, target)
    one_line_error(run, "train_det", str(target), "is a file")
    assert target.read_text() == "not a directory"


@pytest.mark.parametrize(
    "change, key",
    [
        ("solver.base_lr=0.5", "solver.base_lr"),
        ("solver.ims_per_batch=4", "solver.ims_per_batch"),
        ("model.backbone.depth=34", "model.backbone.depth"),
    ],
)
def test_resume_refuses_changed_settings(cache, finished, tmp_path, change, key):
    run = train(cache, finished, "--resume", "solver.max_iter=6", change)
    one_line_error(run, "train_det", "--resume", key, "other settings")


def test_resume_refuses_other_classes(cache, finished, shared_data):
    bccd = shared_data("BCCD")
    names = "class_names: [RBC, WBC, Platelets]"
    other = [
        f"data.{key}=[{{format: voc, root: {bccd}, split: {split}, {names}}}]"
        for key, split in (("train", "val"), ("test", "test"))
    ]
    run = train(cache, finished, "--resume", "solver.max_iter=6", *other)
    one_line_error(run, "train_det", "--resume", "trained on classes", "RBC")


@pytest.mark.parametrize("damage", ["truncated", "empty", "unsafe", "dangling", "empty pointer"])
def test_resume_from_a_damaged_checkpoint_is_one_line(cache, finished, tmp_path, damage):
    copy = tmp_path / "damaged"
    copy.mkdir()
    for name, data in snapshot(finished).items():
        (copy / name).write_bytes(data)
    pointed = copy / (copy / "last_checkpoint").read_text().strip()
    if damage == "truncated":
        pointed.write_bytes(pointed.read_bytes()[:1000])
    elif damage == "empty":
        pointed.write_bytes(b"")
    elif damage == "unsafe":  # a pickle that would import and build an arbitrary object
        torch.save({"format": "resdet", "model": PurePosixPath("x")}, pointed)
    elif damage == "dangling":
        pointed.unlink()
    else:
        (copy / "last_checkpoint").write_text("\n")
    run = train(cache, copy, "--resume", "solver.max_iter=6")
    named = "last_checkpoint" if damage in ("dangling", "empty pointer") else pointed.name
    one_line_error(run, "train_det", "--resume", named)


def test_a_usage_error_is_argparse_alone(cache, tmp_path):
    run = tool(cache, "train_det", "configs/demo_shapes.yaml", "--weights", "x.pth")
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert run.stderr.strip().splitlines()[-1].startswith("train_det.py: error: --weights")


def test_evaluation_matches_classes_by_name(cache, finished, tmp_path, monkeypatch):
    """The test set's classes in another order are scored by name (the same numbers as in the
    training order); other names are one error line listing both."""
    weights = finished / "model_final.pth"
    names = torch.load(weights, weights_only=True)["class_names"]
    base = ["configs/demo_shapes.yaml", *TINY_DET, "--weights", str(weights)]
    same = tool(cache, "eval_det", *base)
    assert same.returncode == 0, same.stderr

    # the same images and boxes in a COCO file whose category ids list the names in reverse order
    monkeypatch.setenv("RESDET_CACHE", str(cache))
    cfg = load_config(ROOT / "configs" / "demo_shapes.yaml", TINY_DET)
    ann_file = Path(build_detection_dataset(cfg.data, "test").sources[0].ann_file)
    coco = json.loads(ann_file.read_text())
    flip = {c["id"]: len(coco["categories"]) + 1 - c["id"] for c in coco["categories"]}
    for c in coco["categories"]:
        c["id"] = flip[c["id"]]
    for a in coco["annotations"]:
        a["category_id"] = flip[a["category_id"]]
    coco["categories"].sort(key=lambda c: c["id"])
    assert [c["name"] for c in coco["categories"]] == names[::-1]
    reordered = tmp_path / "reordered.json"
    reordered.write_text(json.dumps(coco))
    entry = (
        f"data.test=[{{format: coco, ann_file: {reordered}, "
        f"image_dir: {ann_file.parent / 'JPEGImages'}}}]"
    )
    other = tool(cache, "eval_det", *base, entry)
    assert other.returncode == 0, other.stderr
    assert "scored by class name" in other.stdout
    assert other.stdout.splitlines()[-1] == same.stdout.splitlines()[-1]  # the same mAPs

    coco["categories"][0]["name"] = "unicorn"
    reordered.write_text(json.dumps(coco))
    wrong = tool(cache, "eval_det", *base, entry)
    one_line_error(wrong, "eval_det", "unicorn", str(weights))

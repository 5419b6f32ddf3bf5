"""tools/train_det.py end to end on a tiny shapes run: output files, exact resume, --eval-only,
errors, and every recipe in configs/ loading."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from tiny_runs import TINY_DET

from resdet.config import load_config
from resdet.config.classification import load_cls_config
from resdet.evaluation.coco_evaluator import STAT_KEYS
from tools import train_det

ROOT = Path(__file__).resolve().parents[2]

TINY = TINY_DET


pytestmark = pytest.mark.usefixtures("plain_convolutions")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture
def tool(cache, monkeypatch):
    monkeypatch.setenv("RESDET_CACHE", str(cache))
    return train_det


def train(tool, out: Path, *extra: str) -> None:
    assert (
        tool.main(
            ["configs/demo_shapes.yaml", "--no-progress", "--output-dir", str(out), *TINY, *extra]
        )
        == 0
    )


def final_state(out: Path) -> dict[str, torch.Tensor]:
    return torch.load(out / "model_final.pth", map_location="cpu", weights_only=True)


def test_train_writes_the_documented_outputs_and_resumes_exactly(tool, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    full = tmp_path / "full"
    train(tool, full, "solver.max_iter=3")

    cfg = load_config(full / "config.yaml")  # the resolved config reads back, overrides applied
    assert (
        cfg.solver.max_iter == 3
        and cfg.model.fpn.out_channels == 16
        and cfg.output_dir == str(full)
    )
    assert (full / "last_checkpoint").read_text().strip() == "model_final.pth"
    assert (full / "model_0000002.pth").is_file() and list(full.glob("events.out.tfevents.*"))
    logged = [json.loads(x) for x in (full / "metrics.jsonl").read_text().splitlines()]
    train_lines = [x for x in logged if "total_loss" in x]
    assert [x["iteration"] for x in train_lines] == [1, 2, 3]
    for x in train_lines:
        parts = x["loss_rpn_cls"] + x["loss_rpn_box"] + x["loss_cls"] + x["loss_box"]
        assert x["total_loss"] == pytest.approx(parts, rel=1e-5) and x["lr"] == pytest.approx(0.01)
    evaluation = json.loads((full / "eval" / "metrics.json").read_text())
    assert evaluation["iteration"] == 3
    assert set(STAT_KEYS) <= set(evaluation["metrics"])  # shapes are read as COCO: COCO keys
    assert all(-1.0 <= evaluation["metrics"][k] <= 1.0 for k in STAT_KEYS)
    ckpt = final_state(full)
    assert ckpt["iteration"] == 3 and ckpt["config"]["model"]["backbone"]["depth"] == 18

    # stopped after 2 iterations (its checkpoint), then resumed to 3: the
    # uninterrupted run's weights
    part = tmp_path / "part"
    part.mkdir()
    shutil.copy(full / "model_0000002.pth", part)
    (part / "last_checkpoint").write_text("model_0000002.pth\n")
    (part / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in train_lines[:2]))
    train(tool, part, "solver.max_iter=3", "--resume")
    resumed = final_state(part)
    assert resumed["iteration"] == 3
    for k, v in ckpt["model"].items():
        torch.testing.assert_close(resumed["model"][k], v, rtol=1e-5, atol=1e-6, msg=k)
    logged = [
        json.loads(x)["iteration"]
        for x in (part / "metrics.jsonl").read_text().splitlines()
        if "total_loss" in x
    ]
    assert logged == [1, 2, 3]  # the resumed run appended iteration 3 to the log

    # --eval-only --weights scores the checkpoint as the training run's final evaluation did
    again = tmp_path / "again"
    assert (
        tool.main(
            [
                "configs/demo_shapes.yaml",
                "--eval-only",
                "--weights",
                str(full / "model_final.pth"),
                "--output-dir",
                str(again),
                *TINY,
            ]
        )
        == 0
    )
    evaluated = json.loads((again / "eval" / "metrics.json").read_text())
    assert evaluated["checkpoint"] == str(full / "model_final.pth")
    assert evaluated["metrics"] == pytest.approx(evaluation["metrics"], abs=1e-6)


def test_missing_dataset_is_one_clear_line_and_a_non_zero_exit(tool, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RESDET_DATASETS", str(tmp_path / "datasets"))
    cfg = tmp_path / "voc.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "_base_": str(ROOT / "configs" / "demo_shapes.yaml"),
                "model": {"backbone": {"weights": None}},
                "data": {"train": ["voc_2007_trainval"], "test": ["voc_2007_test"]},
            }
        )
    )
    assert (
        tool.main([str(cfg), "--output-dir", str(tmp_path / "out")]) == 2
    )  # the process exit code
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    expected = (
        tmp_path / "datasets" / "VOCdevkit" / "VOC2007" / "ImageSets" / "Main" / "trainval.txt"
    )
    assert (
        str(expected) in lines[0]
        and "voc_2007_trainval" in lines[0]
        and "RESDET_DATASETS" in lines[0]
    )
    assert not (tmp_path / "out").exists()  # nothing started

    missing = tmp_path / "no_such_backbone.pth"
    assert tool.main([str(cfg), f"model.backbone.weights={missing}"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and str(missing) in lines[0] and "pretrain_cls" in lines[0], lines


def test_weights_without_eval_only_is_refused(tool, capsys):
    with pytest.raises(SystemExit) as e:
        tool.parse_args(["configs/demo_shapes.yaml", "--weights", "x.pth"])
    assert e.value.code != 0 and "--eval-only" in capsys.readouterr().err


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_recipe_loads(path):
    if path.name.startswith("cls_"):  # classification pretraining recipes (tools/pretrain_cls.py)
        assert load_cls_config(path).solver.max_iter >= 1
        return
    cfg = load_config(path)
    assert cfg.solver.max_iter >= 1 and cfg.model.backbone.depth in (18, 34, 50, 101, 152)

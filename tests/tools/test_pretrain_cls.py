"""tools/pretrain_cls.py end to end on tiny data: checkpoint format, loading into a
backbone, eval-only."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_runs import SHORT_SCHEDULE, TINY_CLS, input_size, shapes

from backbones.resnet import ResNet
from backbones.spec import PixelFormat
from backbones.weights import load_pretrained
from tools import pretrain_cls, train_det, visualize

ROOT = Path(__file__).resolve().parents[2]


TINY = [*TINY_CLS, "solver.max_iter=3", "solver.steps=[2]", "test.eval_period=2"]


#: the detection demo shrunk to two iterations on 32-px inputs
DET_TINY = [
    shapes("train", 4, seed=3),
    shapes("val", 2, seed=3),
    *input_size(32),
    *SHORT_SCHEDULE,
    "solver.max_iter=2",
    "solver.checkpoint_period=2",
    "test.eval_period=0",
]


@pytest.fixture
def tool(private_cache):
    return pretrain_cls


def test_default_recipe_writes_classifier_checkpoint_for_a_backbone(tool, tmp_path, capsys):
    out = tmp_path / "run"
    tool.main(["--no-progress", "--output-dir", str(out), *TINY])
    printed = capsys.readouterr().out
    assert "top-1 accuracy" in printed and f"checkpoint: {out / 'model_final.pth'}" in printed

    ckpt = torch.load(out / "model_final.pth", map_location="cpu", weights_only=True)
    assert ckpt["format"] == "resdet" and ckpt["kind"] == "classifier" and ckpt["iteration"] == 3
    assert ckpt["classes"] == ["circle", "cross", "rectangle", "star", "triangle"]
    assert ckpt["model"]["fc.weight"].shape == (5, 512)

    # what a detection recipe's `model.backbone.weights: <path>` does with it
    backbone = ResNet(
        18, out_features=("res2", "res3", "res4", "res5"), norm="FrozenBN", freeze_at=2
    )
    report = load_pretrained(backbone, out / "model_final.pth")
    assert backbone.pixel_format == PixelFormat.from_dict(ckpt["pixel_format"])
    for key in ("conv1.weight", "layer1.0.conv1.weight", "layer4.1.bn2.running_var"):
        torch.testing.assert_close(backbone.state_dict()[key], ckpt["model"][key])
    assert "fc.weight" in report.skipped

    # the detection demo recipe builds its backbone from it through model.backbone.weights
    from resdet import build_model, load_config

    det = build_model(
        load_config(
            ROOT / "configs" / "demo_shapes.yaml",
            [f"model.backbone.weights={out / 'model_final.pth'}"],
        ),
        num_classes=5,
    )
    stems = [
        v
        for k, v in det.state_dict().items()
        if k.endswith("conv1.weight") and v.shape == (64, 3, 7, 7)
    ]
    assert len(stems) == 1
    torch.testing.assert_close(stems[0], ckpt["model"]["conv1.weight"])

    # ... and a detection run trains from it: the frozen stem stays exactly the pretrained one
    det_out = tmp_path / "det"
    assert (
        train_det.main(
            [
                str(ROOT / "configs" / "demo_shapes.yaml"),
                "--no-progress",
                "--output-dir",
                str(det_out),
                f"model.backbone.weights={out / 'model_final.pth'}",
                *DET_TINY,
            ]
        )
        == 0
    )
    trained = torch.load(det_out / "model_final.pth", map_location="cpu", weights_only=True)
    assert trained["iteration"] == 2
    torch.testing.assert_close(
        trained["model"]["backbone.bottom_up.conv1.weight"], ckpt["model"]["conv1.weight"]
    )
    moved = (
        trained["model"]["backbone.bottom_up.layer4.0.conv1.weight"]
        - ckpt["model"]["layer4.0.conv1.weight"]
    )
    assert moved.abs().max() > 0  # res5 is trainable and was updated

    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    train = [x for x in lines if "train_error" in x]
    assert [x["iteration"] for x in train] == [1, 2, 3]
    assert all(0.0 <= x["train_error"] <= 100.0 for x in train)
    # the multistep schedule of the config: lr/10 from iteration index 2 on (the 3rd step)
    assert train[2]["lr"] == pytest.approx(train[0]["lr"] * 0.1)
    evals = [x for x in lines if "eval/top1" in x]
    assert [x["iteration"] for x in evals] == [2, 3]

    # --eval-only on the run's final model reproduces its last evaluation
    final = json.loads((out / "eval" / "metrics.json").read_text())["metrics"]
    tool.main(["--no-progress", "--eval-only", "--output-dir", str(out), *TINY])
    again = json.loads((out / "eval" / "metrics.json").read_text())["metrics"]
    assert again == pytest.approx(final)
    assert f"top-1 accuracy {final['top1']:.2f}%" in capsys.readouterr().out


def write_cifar(root: Path, per_file: int = 4) -> None:
    root.mkdir(parents=True)
    (root / "batches.meta.txt").write_text("\n".join(f"class{i}" for i in range(10)) + "\n")
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        labels = rng.integers(0, 10, size=(per_file, 1), dtype=np.uint8)
        pixels = rng.integers(0, 256, size=(per_file, 3072), dtype=np.uint8)
        (root / name).write_bytes(np.concatenate([labels, pixels], axis=1).tobytes())


def test_cifar_recipe_runs_and_resumes(tool, tmp_path):
    data = tmp_path / "datasets"
    write_cifar(data / "cifar-10-batches-bin")
    out = tmp_path / "cifar"
    common = [
        str(ROOT / "configs" / "cls_resnet20_cifar10.yaml"),
        "--no-progress",
        "--output-dir",
        str(out),
        f"data.root={data}",
        "data.num_workers=0",
        "model.depth=8",
        "solver.ims_per_batch=8",
        "solver.steps=[]",
        "solver.warmup_iters=0",
        "solver.log_period=1",
        "test.eval_period=0",
        "test.ims_per_batch=8",
    ]
    tool.main([*common, "solver.max_iter=2", "solver.checkpoint_period=1"])
    first = torch.load(out / "model_final.pth", map_location="cpu", weights_only=True)
    assert first["iteration"] == 2 and first["config"]["model"]["arch"] == "cifar"
    # resuming with a longer schedule continues at iteration 2 and keeps the logged history
    tool.main([*common, "solver.max_iter=3", "solver.checkpoint_period=1", "--resume"])
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [x["iteration"] for x in lines if "train_error" in x] == [1, 2, 3]


def write_run(
    run_dir: Path,
    depth: int,
    plain: bool,
    train: list[tuple[int, float]],
    test: list[tuple[int, float]],
) -> None:
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(
        f"model:\n  depth: {depth}\n  plain: {str(plain).lower()}\n"
    )
    lines = [{"iteration": i, "loss_cls": 1.0, "train_error": e, "lr": 0.1} for i, e in train]
    lines += [{"iteration": i, "eval/top1": 100 - e, "eval/top1_err": e} for i, e in test]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))


def test_plot_curves_tool(tmp_path, capsys):
    from matplotlib.image import imread

    from resdet.reports.curves import moving_average, read_run

    write_run(
        tmp_path / "p56", 56, True, [(10, 90.0), (20, 70.0), (30, 60.0)], [(20, 75.0), (30, 65.0)]
    )
    write_run(
        tmp_path / "r56", 56, False, [(10, 80.0), (20, 40.0), (30, 20.0)], [(20, 45.0), (30, 30.0)]
    )

    run = read_run(tmp_path / "p56")
    assert run.label == "plain-56" and run.train_iter.tolist() == [10, 20, 30]
    assert run.test_error.tolist() == [75.0, 65.0]
    assert moving_average(run.train_error, 2).tolist() == [90.0, 80.0, 65.0]

    out = tmp_path / "fig.png"
    visualize.main(["fig6", str(tmp_path / "p56"), str(tmp_path / "r56"), "--output", str(out)])
    image = imread(out)
    assert image.shape[1] > image.shape[0] > 100  # two panels side by side
    printed = capsys.readouterr().out
    assert "plain-56: final training error 60.00%, test error 65.00%" in printed
    assert "ResNet-56: final training error 20.00%, test error 30.00%" in printed

"""tools/transfer_bench.py on a tiny version of the shapes protocol: one row per weight source, a
source that cannot load becomes a row with its error, a killed benchmark finishes only what is
missing, and missing inputs are named before anything starts."""

from __future__ import annotations

import json

import pytest
import torch
from torchvision.models import resnet18, resnet50

from resdet.benchmarks.transfer import run_dir_name
from resdet.io.run_dir import TRAINED_RUN
from tests.tools.tiny_runs import NARROW_HEADS, SHORT_SCHEDULE, input_size, shapes
from tools import transfer_bench

TINY = [
    "--allow-overrides",
    *NARROW_HEADS,
    *SHORT_SCHEDULE,
    *input_size(64),
    "solver.max_iter=2",
    "solver.checkpoint_period=2",
    shapes("train", 6, 0),
    shapes("val", 4, 0),
]


@pytest.fixture
def checkpoints(tmp_path):
    torch.manual_seed(0)
    good, wrong = tmp_path / "r18.pth", tmp_path / "r50.pth"
    torch.save(resnet18().state_dict(), good)
    torch.save(resnet50().state_dict(), wrong)
    return good, wrong


def test_rows_errors_and_resume(tmp_path, checkpoints, private_cache, plain_convolutions, capsys):
    good, wrong = checkpoints
    out = tmp_path / "bench"
    argv = ["--protocol", "shapes_r18_fpn", "--output-dir", str(out), "--no-progress", *TINY]
    argv += ["--weights", "random", str(good), str(wrong)]
    assert transfer_bench.main(argv) == 1  # the ResNet-50 file fails, the others finish
    printed = capsys.readouterr().out
    result = json.loads((out / "transfer.json").read_text())
    rows = {r["source"]: r for r in result["rows"]}
    assert rows["random"]["error"] is None and 0.0 <= rows["random"]["metrics"]["AP50"] <= 1.0
    assert rows["random"]["changed"] == [
        "model.backbone.weights=null",
        "model.backbone.norm=BN",
        "model.backbone.freeze_at=0",
    ]
    assert rows[str(good)]["error"] is None
    assert "size mismatch" in rows[str(wrong)]["error"] or "shape" in rows[str(wrong)]["error"]
    assert f"| {wrong} | - | failed:" in printed
    assert (out / "transfer.md").read_text().startswith("# Transfer: protocol shapes_r18_fpn")
    assert (out / "transfer.png").stat().st_size > 0
    # killed while training the second source: its run has no record; a re-run trains only that one
    (out / run_dir_name(str(good), 0) / TRAINED_RUN).unlink()
    transfer_bench.main(argv)
    printed = capsys.readouterr().out
    assert printed.count("already trained") == 1 and "[random seed 0] already trained" in printed
    assert f"[{good} seed 0] training" in printed


def test_missing_inputs_named_before_start(tmp_path, capsys):
    missing = tmp_path / "nope.pth"
    argv = ["--protocol", "bccd_r18_fpn", "--weights", str(missing), "torchvision:resnet50"]
    argv += ["--allow-overrides", f"data.root={tmp_path}"]
    assert transfer_bench.main(argv) == 2
    err = capsys.readouterr().err
    assert "nothing was started" in err
    assert f"{tmp_path}/BCCD/ImageSets/Main/trainval.txt" in err
    assert str(missing) in err
    assert "resnet50-0676ba61.pth" in err or "torchvision:resnet50" in err


def test_overrides_refused_without_flag(capsys):
    with pytest.raises(SystemExit) as e:
        transfer_bench.main(
            ["--protocol", "bccd_r18_fpn", "--weights", "random", "solver.max_iter=5"]
        )
    assert e.value.code == 2 and "--allow-overrides" in capsys.readouterr().err


def test_unknown_protocol_lists_known(capsys):
    assert transfer_bench.main(["--protocol", "nope", "--weights", "random"]) == 2
    err = capsys.readouterr().err
    assert "bccd_r18_fpn" in err and "shapes_r18_fpn" in err


@pytest.mark.parametrize(
    "protocol,datasets",
    [
        (
            "voc0712_r50_c4_24k",
            [
                "VOCdevkit/VOC2007/ImageSets/Main/trainval.txt",
                "VOCdevkit/VOC2012/ImageSets/Main/trainval.txt",
                "VOCdevkit/VOC2007/ImageSets/Main/test.txt",
            ],
        ),
        (
            "coco_r50_fpn_1x",
            [
                "coco/annotations/instances_train2017.json",
                "coco/annotations/instances_val2017.json",
            ],
        ),
    ],
)
def test_gpu_protocols_list_every_missing_file_and_where_it_goes(
    tmp_path, monkeypatch, capsys, protocol, datasets
):
    # the command on a machine without the datasets or the weights
    monkeypatch.setenv("RESDET_DATASETS", str(tmp_path / "datasets"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    argv = ["--protocol", protocol, "--weights", "torchvision:resnet50"]
    assert transfer_bench.main(argv) == 2
    err = capsys.readouterr().err
    assert f"{len(datasets) + 1} input(s) missing" in err and "nothing was started" in err
    for path in datasets:
        assert str(tmp_path / "datasets" / path) in err
    url = "https://download.pytorch.org/models/resnet50-0676ba61.pth"
    assert f"fetch {url} and place it at {tmp_path / 'torch'}" in err
    assert not (tmp_path / "datasets").exists()  # nothing was created or started

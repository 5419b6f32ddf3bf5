"""tools/transfer_bench.py on a tiny version of the shapes protocol: one row per weight source, a
source that cannot load becomes a row with its error, a killed benchmark finishes only what is
missing, and missing inputs are named before anything starts."""

from __future__ import annotations

import json

import pytest
import torch
from torchvision.models import resnet18, resnet50

from resdet.config import load_config
from resdet.trained_run import RECORD
from resdet.transfer import (
    TransferRow,
    protocol_path,
    run_dir_name,
    source_overrides,
    transfer_table,
)
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
    (out / run_dir_name(str(good), 0) / RECORD).unlink()
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


def test_random_keeps_trainable_norms_as_they_are():
    cfg = load_config(protocol_path("shapes_r18_fpn"), ["model.backbone.norm=GN"])
    assert source_overrides(cfg, "random") == ["model.backbone.weights=null"]
    assert source_overrides(cfg, "x.pth") == ["model.backbone.weights=x.pth"]
    assert run_dir_name("resdet:shapes_r18", 1) == "resdet_shapes_r18_seed1"


def test_table_mean_and_spread():
    rows = [
        TransferRow("a", 0, {"mAP50": 0.80, "mAP": 0.50, "AP50/x": 0.7}, 10.0),
        TransferRow("a", 1, {"mAP50": 0.70, "mAP": 0.40, "AP50/x": 0.6}, 12.0),
        TransferRow("b", 0, {}, 0.0, "cannot read b"),
    ]
    lines = transfer_table(rows).splitlines()
    assert lines[0] == "| source | seeds | AP50 | AP | AP75 | AP50/x | minutes |"
    assert lines[2] == "| a | 0,1 | 75.0 ± 10.0 | 45.0 ± 10.0 | - | 65.0 ± 10.0 | 11.0 |"
    assert lines[3] == "| b | - | failed: cannot read b |"

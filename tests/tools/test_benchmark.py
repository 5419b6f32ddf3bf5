"""tools/benchmark.py runs end to end on CPU and writes the documented JSON (shape, not speed)."""

import argparse
import json
import math
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_benchmark_json_shape(tmp_path):
    from tools.benchmark import main

    out = tmp_path / "bench.json"
    main(
        [
            str(ROOT / "configs" / "frcnn_r50_fpn_coco.yaml"),
            "--compare",
            "torchvision",
            "--device",
            "cpu",
            "--image-size",
            "64x96",
            "--batch-size",
            "1",
            "--iters",
            "1",
            "--warmup",
            "0",
            "--json",
            str(out),
            "model.input.channels_last=false",
        ]
    )
    data = json.loads(out.read_text())
    assert {"ours", "torchvision", "ratio", "settings", "device", "same_weights"} <= set(data)
    assert data["overrides"] == ["model.input.channels_last=false"]
    assert data["settings"]["image_size"] == [64, 96]
    for side in ("ours", "torchvision"):
        r = data[side]
        for key in (
            "train_images_per_s",
            "infer_images_per_s",
            "infer_latency_ms",
            "peak_memory_train_mb",
            "peak_memory_infer_mb",
            "gflops_per_image",
        ):
            assert r[key] > 0, (side, key)
        assert r["mfu_train"] is None  # no peak known for a CPU
        assert len(r["train_times_s"]) == 1 and len(r["infer_times_s"]) == 1
        assert len(r["train_cpu_s"]) == 1 and len(r["infer_cpu_s"]) == 1
        assert r["train_cpu_s"][0] > 0 and r["infer_cpu_s"][0] > 0
    ours, tv, ratio = data["ours"], data["torchvision"], data["ratio"]
    assert math.isclose(ratio["train"], ours["train_images_per_s"] / tv["train_images_per_s"])
    # one round: the per-round ratio is that round's ratio
    assert math.isclose(ratio["infer_per_round"], tv["infer_times_s"][0] / ours["infer_times_s"][0])
    assert math.isclose(ratio["train_cpu"], tv["train_cpu_s"][0] / ours["train_cpu_s"][0])
    # same backbone and input; the box head's share depends on how many proposals survive NMS
    assert 0.5 < data["ours"]["gflops_per_image"] / data["torchvision"]["gflops_per_image"] < 2.0


def test_image_size_argument():
    from tools.benchmark import image_size

    assert image_size("512") == (512, 512) and image_size("800x1333") == (800, 1333)
    for bad in ("0", "8x", "1x2x3", "big"):
        with pytest.raises(argparse.ArgumentTypeError):
            image_size(bad)


def test_mask_config_races_torchvision_mask_rcnn_with_shared_weights(tmp_path):
    from tools.benchmark import main

    out = tmp_path / "bench.json"
    data = main(
        [
            str(ROOT / "configs" / "torchvision_maskrcnn_r50_fpn_coco.yaml"),
            *("--compare", "torchvision", "--device", "cpu", "--image-size", "64x96"),
            *("--batch-size", "1", "--iters", "1", "--warmup", "0", "--json", str(out)),
        ]
    )
    assert data["settings"]["masks"] is True and data["same_weights"] is True
    for side in ("ours", "torchvision"):
        assert data[side]["train_images_per_s"] > 0 and data[side]["gflops_per_image"] > 0


def test_compile_reports_graphs_breaks_and_recompiles_over_multiscale_training(tmp_path, capsys):
    import torch

    from tools.benchmark import main

    torch._dynamo.reset()
    out = tmp_path / "bench.json"
    data = main(
        [
            str(ROOT / "configs" / "frcnn_r50_fpn_coco.yaml"),
            *("--device", "cpu", "--image-size", "64x96", "--batch-size", "1"),
            *("--iters", "2", "--warmup", "1", "--no-flops", "--json", str(out)),
            *("--train-sizes", "48", "64", "--compile", "--compile-backend", "aot_eager"),
            *("model.backbone.depth=18", "model.fpn.out_channels=32", "model.roi_heads.fc_dim=32"),
        ]
    )
    torch._dynamo.reset()
    assert json.loads(out.read_text())["ours"]["compile_stats"] == data["ours"]["compile_stats"]
    stats = data["ours"]["compile_stats"]
    assert set(stats) == {"train", "infer"}
    for phase in stats.values():
        assert {"graphs", "graph_breaks", "recompiles", "frames", "break_reasons"} == set(phase)
        assert phase["graphs"] > 1 and phase["graph_breaks"] > 0
        assert sum(phase["break_reasons"].values()) == phase["graph_breaks"]
    assert list(data["settings"]["train_sizes"]) == [48, 64]
    printed = capsys.readouterr().out
    assert "compiled train: recompiles" in printed and "compile=aot_eager" in printed

"""tools/bench_data.py --cifar: both rates measured on a generated folder, in one process."""

from __future__ import annotations

from tests.classification.test_cifar_memory import write_folders
from tools import bench_data


def test_cifar_mode_times_pipeline_and_training(tmp_path, capsys):
    write_folders(tmp_path / "cifar", per_class=4)
    rate = bench_data.main(
        [
            "--cifar",
            str(tmp_path / "cifar"),
            "--cache-dir",
            str(tmp_path / "cache"),
            "--batch-size",
            "4",
            "--batches",
            "3",
            "--train-steps",
            "1",
            "--depth",
            "8",
        ]
    )
    printed = capsys.readouterr().out
    assert rate > 0
    assert "ResNet-8 training consumes" in printed and "ratio pipeline / training" in printed


def test_coco_scale_table_at_2000_images(tmp_path, capsys):
    rows = bench_data.main(
        [
            "--coco-scale",
            "--images",
            "2000",
            "--work-dir",
            str(tmp_path),
            "--workers",
            "2",
            "--no-first-step",
            "--eval-images",
            "30",
        ]  # fmt: skip
    )
    printed = capsys.readouterr().out
    assert [r["records"] for r in rows] == ["boxes", "masks"]
    assert "| masks | 1,998 |" in printed and "load average" in printed
    assert "ours/faster" in printed and "faster-coco-eval" in printed
    for r in rows:
        assert r["images"] == 1998 and 0 < r["warm_s"] < r["cold_s"]
        assert r["worker_growth"] < 50e6 and r["node"] < 1e9
        assert r["held_file"] > 0  # the records are the mapped cache file

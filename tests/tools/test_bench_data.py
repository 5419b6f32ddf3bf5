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

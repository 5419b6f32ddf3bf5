"""tools/gpu_suite.py --smoke: every part runs in its own process and lands in one
JSON and one table."""

from __future__ import annotations

import json

from tools import gpu_suite


def test_smoke_suite_writes_every_part(tmp_path, capsys):
    results = gpu_suite.main(["--smoke", "--out", str(tmp_path)])
    assert results is not None
    saved = json.loads((tmp_path / "gpu_suite.json").read_text())
    for part in ("cifar", "det", "cls"):
        assert "error" not in saved[part], saved[part]
    assert saved["cifar"]["iterations"] == 4 and 0 <= saved["cifar"]["test_error"] <= 100
    det = saved["det"]["r50_fpn_b1"]
    assert (
        det["ratio"]["infer"]
        == det["ours"]["infer_images_per_s"] / det["torchvision"]["infer_images_per_s"]
    )
    cls = saved["cls"]
    assert abs(cls["ratio"] - cls["ours_images_per_s"] / cls["torchvision_images_per_s"]) < 1e-9
    table = (tmp_path / "gpu_suite.md").read_text()
    assert table.count("\n| ") >= 6 and "smoke sizes" in table

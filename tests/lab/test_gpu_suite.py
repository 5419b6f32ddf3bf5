"""lab/gpu_suite.py --smoke: every part runs in its own process and lands in one
JSON and one table."""

from __future__ import annotations

import json

from lab import gpu_suite


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


def test_a_stopped_cifar_run_reports_its_last_evaluation(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_suite, "CIFAR_RUN", tmp_path)
    assert gpu_suite.last_cifar_eval() == {}
    lines = [
        {"iteration": 8000, "eval/top1": 80.5, "eval/top1_err": 19.5},
        {"iteration": 16000, "eval/top1": 88.25, "eval/top1_err": 11.75},
        {"iteration": 16100, "loss_cls": 0.3, "train_error": 9.0},
    ]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    last = gpu_suite.last_cifar_eval()
    assert last == {"iteration": 16000, "test_error": 11.75}
    machine = {"device": "GPU", "torch": "2", "smoke": False}
    table = gpu_suite.markdown(
        {"cifar": {"error": "stopped", "last_evaluation": last}, "machine": machine}
    )
    assert "| cifar | ResNet-20 test error %, 16000 it, n/a min | 11.75 |" in table
    assert "- cifar: stopped" in table

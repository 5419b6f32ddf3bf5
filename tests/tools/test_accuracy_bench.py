"""tools/accuracy_bench.py: the runs of both implementations (trained elsewhere: here stand-ins),
the table, the verdict on the evaluator's headline metric, the JSON; and tools/benchmark.py
--accuracy names this tool."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from resdet.runs.trained import TrainedRun

ROOT = Path(__file__).resolve().parents[2]
BCCD = str(ROOT / "configs" / "frcnn_r18_fpn_bccd.yaml")


def _runs(metric: str) -> list[TrainedRun]:
    values = {("ours", 0): 0.80, ("torchvision", 0): 0.83, ("ours", 1): 0.78}
    values[("torchvision", 1)] = 0.79
    return [
        TrainedRun(impl, seed, {metric: v, "AP50/cell": v}, 600.0, "")
        for (impl, seed), v in values.items()
    ]


@pytest.mark.parametrize("metric", ["mAP50", "AP50"])
def test_table_and_verdict_on_the_headline(tmp_path, monkeypatch, capsys, metric):
    import resdet.benchmarks.accuracy as accuracy
    from tools.accuracy_bench import main

    asked = {}

    def fake_compare(config, overrides, *, seeds, root):
        asked.update(config=config, overrides=overrides, seeds=seeds, root=root)
        return _runs(metric)

    monkeypatch.setattr(accuracy, "compare_accuracy", fake_compare)
    out = tmp_path / "acc.json"
    # no test.best_metric: the verdict is on the evaluator's headline (VOC's mAP50, COCO's AP50)
    argv = [BCCD, "test.best_metric=null", "--compare", "torchvision", "--seeds", "0", "1"]
    data = main([*argv, "--output-dir", str(tmp_path / "runs"), "--json", str(out)])
    assert asked == {
        "config": BCCD,
        "overrides": ["test.best_metric=null"],
        "seeds": [0, 1],
        "root": tmp_path / "runs",
    }
    printed = capsys.readouterr().out
    assert f"{metric}: ours 79.0 vs torchvision 81.0 (torchvision's seed spread 4.0)" in printed
    assert "ours is no worse beyond that spread; time ours/torchvision 1.00x" in printed
    assert "not equalised (torchvision has no knob):" in printed
    assert data["verdict"]["metric"] == metric
    assert json.loads(out.read_text())["verdict"] == data["verdict"]


def test_benchmark_accuracy_names_the_new_tool(capsys):
    from tools.benchmark import main

    with pytest.raises(SystemExit) as e:
        main([BCCD, "--compare", "torchvision", "--accuracy", "--seeds", "0"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert ": error: --accuracy" in err[-1]
    assert "tools/accuracy_bench.py" in err[-1]

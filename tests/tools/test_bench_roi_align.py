"""tools/bench_roi_align.py prints and returns both phases for both implementations."""


def test_bench_roi_align_reports_both_phases(capsys):
    from tools.bench_roi_align import main

    out = main(["--rois", "8", "--images", "1", "--channels", "4", "--size", "16", "--iters", "1"])
    assert set(out) == {
        f"{phase}_{who}_ms"
        for phase in ("forward", "forward+backward")
        for who in ("ours", "torchvision")
    }
    assert all(v > 0 for v in out.values())
    assert "speed-up" in capsys.readouterr().out

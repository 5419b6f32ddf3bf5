"""ONNX export (`resdet.deploy.export`): the tiny FPN and C4 detectors run by onnxruntime on CPU
give the eager detector's boxes, scores and labels on image sizes other than the traced one."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from resdet.build import build_model
from resdet.deploy.export import ExportableDetector, export_onnx
from tests.heads.tiny_detectors import FPN_CONFIG, TINY, TINY_FPN, tiny_config

ort = pytest.importorskip("onnxruntime")

#: every surviving box is a detection, so random weights detect
DETECT_ALL = ["model.roi_heads.score_thresh=0.0"]
EXPORT_SIZE = (72, 88)
#: (100, 61) resizes to 104x64 only with Python's float64 rounding of the scale
CHECK_SIZES = [(64, 80), (96, 70), (100, 61)]


@pytest.mark.parametrize("arch", ["fpn", "c4"])
def test_onnx_matches_eager(arch: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model(tiny_config(arch, extra=DETECT_ALL), num_classes=3, load_weights=False)
    model.eval()
    path = export_onnx(model, tmp_path / f"{arch}.onnx", example_size=EXPORT_SIZE)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["image"]
    assert [o.name for o in session.get_outputs()] == ["boxes", "scores", "labels"]
    g = torch.Generator().manual_seed(1)
    for size in CHECK_SIZES:
        image = torch.rand(3, *size, generator=g)
        with torch.no_grad():
            expected = model([image])[0]
            wrapped = ExportableDetector(model)(image)
        boxes, scores, labels = (
            torch.from_numpy(a) for a in session.run(None, {"image": image.numpy()})
        )
        assert len(expected["boxes"]) > 0, size
        for got in ((boxes, scores, labels), wrapped):
            torch.testing.assert_close(got[0], expected["boxes"], rtol=0, atol=1e-3, msg=str(size))
            torch.testing.assert_close(got[1], expected["scores"], rtol=0, atol=1e-4, msg=str(size))
            assert got[2].dtype == torch.int64
            assert torch.equal(got[2], expected["labels"]), size
        assert boxes.shape[1:] == (4,) and scores.shape == labels.shape == boxes.shape[:1]


def test_export_cli_writes_and_checks(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """tools/export.py on a resdet checkpoint: the file, and --check's size and latencies."""
    from tools import export

    torch.manual_seed(0)
    model = build_model(tiny_config("fpn", extra=DETECT_ALL), num_classes=3, load_weights=False)
    ckpt = tmp_path / "model_final.pth"
    torch.save(
        {
            "format": "resdet",
            "kind": "detector",
            "model": model.state_dict(),
            "pixel_format": model.pixel_format.to_dict(),
            "class_names": ["a", "b", "c"],
        },
        ckpt,
    )
    out = tmp_path / "out" / "det.onnx"
    overrides = [*TINY, "model.backbone.depth=18", *TINY_FPN, *DETECT_ALL]
    args = [str(FPN_CONFIG), *overrides, "--weights", str(ckpt), "--output", str(out)]
    assert export.main([*args, "--format", "onnx", "--check", "--check-size", "70", "90"]) == out
    assert out.is_file()
    printed = capsys.readouterr().out
    assert "3 classes" in printed and "MB" in printed and "onnxruntime CPU" in printed
    assert "same count" in printed

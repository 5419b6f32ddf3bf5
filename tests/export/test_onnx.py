"""ONNX export (`resdet.export`): the tiny FPN and C4 detectors run by onnxruntime on CPU give
the eager detector's boxes, scores and labels on image sizes other than the traced one."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from resdet.build import build_model
from resdet.export import ExportableDetector, export_onnx
from tests.heads.tiny_detectors import tiny_config

ort = pytest.importorskip("onnxruntime")

#: every surviving box is a detection, so random weights detect
DETECT_ALL = ["model.roi_heads.score_thresh=0.0"]
EXPORT_SIZE = (72, 88)
CHECK_SIZES = [(64, 80), (96, 70)]


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

"""A trained detector as one ONNX graph: one image in, final detections out.

`export_onnx` writes `ExportableDetector` (TorchScript exporter, opset >= 17, dynamic H and W):
``image`` (3, H, W) float RGB 0..1 -> ``boxes`` (D, 4) float xyxy input pixels, ``scores`` (D,),
``labels`` (D,) int64, pre- and post-processing inside. It runs the detector's own inference
steps with exportable substitutes: torchvision's roi_align/roi_pool for our RoIAlign, a
branch-free single-image NMS, tensor arithmetic on traced sizes. `check_onnx` compares the file
in onnxruntime with the eager detector. Why this exporter, what is replaced and the limits
(no masks): docs/export.md.
"""

from __future__ import annotations

import statistics
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import nms, roi_pool
from torchvision.ops import roi_align as tv_roi_align

from heads.meta_arch.preprocess import ImagePreprocessor, scale_boxes
from heads.meta_arch.rcnn import FasterRCNN
from heads.roi.poolers import RoIPooler

#: the lowest opset with ONNX RoiAlign's ``coordinate_transformation_mode`` is 16; we ask for 17
MIN_OPSET = 17
OUTPUT_NAMES = ("boxes", "scores", "labels")
T = TypeVar("T")


class ExportableDetector(nn.Module):
    """``detector``'s inference on one image, written with exportable ops only (docs/export.md).

    ``forward(image)``: (3, H, W) float RGB 0..1 -> boxes (D, 4) xyxy input pixels, scores (D,),
    labels (D,) int64. The detector must be in eval mode; its weights are shared, not copied.
    """

    def __init__(self, detector: FasterRCNN) -> None:
        super().__init__()
        if detector.training:
            raise ValueError("export a detector in eval mode (call .eval() first)")
        self.detector = detector
        self.eval()

    def forward(self, image: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        det = self.detector
        batch, resized_hw = self._preprocess(image)
        sizes = resized_hw[None]
        features = det.backbone(batch)
        # the detector's own inference steps, with exportable counts, NMS and pooling
        rpn_out = det.rpn.predict([features[f] for f in det.rpn_features], batch.shape[-2:])
        proposals = det.rpn.propose(*rpn_out, sizes, top_n=_traced_at_most, nms=_one_image_nms)
        detections = det.roi_heads.detect(
            [features[f] for f in det.roi_features],
            proposals,
            sizes,
            pool=partial(_pool, det.roi_heads.pooler),
            nms=_one_image_nms,
        )
        boxes = scale_boxes(detections.boxes, resized_hw, torch._shape_as_tensor(image)[1:])
        return boxes, detections.scores, detections.labels

    def _preprocess(self, image: Tensor) -> tuple[Tensor, Tensor]:
        """(3, H, W) -> normalised, resized, zero-padded (1, 3, H', W') batch and the resized
        (h, w) float32."""
        # Kept restatement of `ImagePreprocessor.forward` at the test size: its Python min()/int
        # on sizes would be frozen by tracing; this is tensor arithmetic on the traced shape, with
        # ``size=`` giving the same resize as its ``recompute_scale_factor=True``.
        pre: ImagePreprocessor = self.detector.preprocessor
        hw = torch._shape_as_tensor(image)[1:].to(torch.float64)
        # in float64 as Python computes it; (2,) tensors, since the exporter would cast a
        # 0-dim operand of a division to float32
        limits = hw.new_tensor([pre.min_size_test, pre.max_size_test])
        scale = (limits / torch.stack((hw.min(), hw.max()))).min()
        size = torch.floor(hw * scale).to(torch.int64)
        x = F.interpolate(
            pre.normalise(image, self.detector.pixel_format)[None],
            size=(size[0], size[1]),
            mode="bilinear",
            align_corners=False,
        )
        d = pre.size_divisibility
        pad = (d - size % d) % d
        return F.pad(x, (0, pad[1], 0, pad[0])), size.to(torch.float32)


def _traced_at_most(logits: Tensor, n: int) -> Tensor:
    """`heads.proposal.rpn.at_most` on the traced anchor count of (1, A) logits: ``min(n, A)``
    as a tensor, so the graph does not freeze the traced image's count."""
    return torch.clamp(torch._shape_as_tensor(logits)[1], max=n)


def _one_image_nms(
    boxes: Tensor,
    scores: Tensor,
    groups: Tensor,
    num_groups: int,
    image_index: Tensor,
    num_images: int,
    iou_threshold: float,
    k: int,
) -> Tensor:
    """`heads.ops.nms.nms_per_image` for one image (``image_index`` all zero, so the group alone
    separates the boxes): `_batched_nms`, then the ``k`` best."""
    return _batched_nms(boxes, scores, groups, iou_threshold)[:k]


def _batched_nms(boxes: Tensor, scores: Tensor, groups: Tensor, iou_threshold: float) -> Tensor:
    """``torchvision.ops.batched_nms`` (boxes (N, 4) xyxy >= 0, groups (N,) int64) by its
    coordinate trick, without its branch on an empty input (which tracing would fix): each
    group's boxes are shifted past the largest coordinate of all (0 when there are none), then
    one NMS. -> kept indices (K,) by decreasing score."""
    top = torch.cat((boxes.flatten(), boxes.new_zeros(1))).max()
    return nms(boxes + (groups.to(boxes.dtype) * (top + 1))[:, None], scores, iou_threshold)


def _pool(pooler: RoIPooler, features: list[Tensor], boxes: Tensor, image_index: Tensor) -> Tensor:
    """`heads.roi.poolers.RoIPooler.forward` with torchvision's ops, every box pooled from every
    level and the assigned level's result kept (no scatter) -> (R, C, S, S)."""
    rois = torch.cat((image_index[:, None].to(boxes.dtype), boxes), dim=1)
    pooled = []
    for x, scale in zip(features, pooler.scales):
        x = x.contiguous()
        if pooler.kind == "pool":
            pooled.append(roi_pool(x, rois, pooler.output_size, scale))
        else:
            pooled.append(
                tv_roi_align(
                    x, rois, pooler.output_size, scale, pooler.sampling_ratio, pooler.aligned
                )
            )
    if len(pooled) == 1:
        return pooled[0]
    levels = pooler.assign_levels(boxes)
    out = pooled[0]
    for level, x in enumerate(pooled[1:], start=1):
        out = torch.where((levels == level)[:, None, None, None], x, out)
    return out


def export_onnx(
    model: FasterRCNN,
    path: str | Path,
    *,
    example_size: tuple[int, int] = (480, 640),
    opset: int = MIN_OPSET,
) -> Path:
    """Write ``model`` (eval mode) as ONNX to ``path``: input ``image`` (3, H, W) float RGB 0..1
    with dynamic H and W; outputs ``boxes`` (D, 4) xyxy input pixels, ``scores`` (D,),
    ``labels`` (D,) int64 (`ExportableDetector`). ``example_size`` (h, w) is the size of the
    random image traced (any size works afterwards). Returns the path."""
    if opset < MIN_OPSET:
        raise ValueError(f"opset must be >= {MIN_OPSET}, got {opset}")
    # torchvision registers ONNX symbolics for roi_align, roi_pool and nms on import of ops
    from torchvision.ops import _register_onnx_ops  # noqa: F401

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    wrapper = ExportableDetector(model)
    param = next(model.parameters())
    image = torch.rand(3, *example_size, generator=torch.Generator().manual_seed(0)).to(param)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export")
        # raised by the TorchScript exporter's own logging set-up (torch 2.14), not by our call
        warnings.filterwarnings("ignore", "The feature will be removed", DeprecationWarning)
        # our advanced indices come from topk/nonzero/nms: never negative
        warnings.filterwarnings("ignore", message="Exporting aten::index operator")
        torch.onnx.export(
            wrapper,
            (image,),
            str(path),
            dynamo=False,
            opset_version=opset,
            input_names=["image"],
            output_names=list(OUTPUT_NAMES),
            dynamic_axes={
                "image": {1: "height", 2: "width"},
                "boxes": {0: "detections"},
                "scores": {0: "detections"},
                "labels": {0: "detections"},
            },
        )
    return path


@dataclass
class OnnxCheck:
    """`check_onnx`'s findings: the file's size, median latencies of onnxruntime (CPU) and the
    eager detector on the same image, and how far their detections are apart."""

    size_mb: float
    onnx_ms: float
    eager_ms: float
    num_detections: int
    same_count: bool
    max_box_diff: float
    max_score_diff: float


def check_onnx(model: FasterRCNN, path: str | Path, image: Tensor, *, runs: int = 5) -> OnnxCheck:
    """Run ``model`` (eval mode, on the CPU) eagerly, then the ONNX file at ``path`` with
    onnxruntime's CPU provider (PyTorch's thread count), on ``image`` (3, H, W) float RGB 0..1,
    ``runs`` times each after one warm-up run; compare the last outputs (box differences in
    input pixels; inf when the detection counts differ)."""
    import onnxruntime

    path = Path(path)
    options = onnxruntime.SessionOptions()
    # as many threads as PyTorch's, and none left spinning to slow the eager runs down
    options.intra_op_num_threads = torch.get_num_threads()
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feed = {"image": image.numpy()}

    def onnx_run() -> list:
        return session.run(None, feed)

    def eager_run() -> dict[str, Tensor]:
        with torch.no_grad():
            return model([image])[0]

    eager_ms, expected = _median_ms(eager_run, runs)
    onnx_ms, (boxes, scores, _) = _median_ms(onnx_run, runs)
    same = len(boxes) == len(expected["boxes"])
    box_diff = score_diff = float("inf")
    if same:
        box_diff = _max_diff(torch.from_numpy(boxes), expected["boxes"])
        score_diff = _max_diff(torch.from_numpy(scores), expected["scores"])
    return OnnxCheck(
        size_mb=path.stat().st_size / 2**20,
        onnx_ms=onnx_ms,
        eager_ms=eager_ms,
        num_detections=len(boxes),
        same_count=same,
        max_box_diff=box_diff,
        max_score_diff=score_diff,
    )


def _max_diff(a: Tensor, b: Tensor) -> float:
    """Largest absolute difference of two same-shape tensors (0 when empty)."""
    return (a - b).abs().max().item() if a.numel() else 0.0


def _median_ms(fn: Callable[[], T], runs: int) -> tuple[float, T]:
    """Median wall time of ``runs`` calls of ``fn`` after one warm-up call, in ms, and the last
    result."""
    out = fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        out = fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times), out

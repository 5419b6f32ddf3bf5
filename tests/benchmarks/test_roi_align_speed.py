"""resdet.benchmarks.roi_align_speed: the workload is one FPN level at stride 4 in the asked layout,
and every phase is timed for both implementations."""

from __future__ import annotations

import torch

from resdet.benchmarks.roi_align_speed import RoIAlignWorkload, compare_roi_align


def test_workload_boxes_lie_on_the_level():
    w = RoIAlignWorkload(rois=64, images=3, channels=4, size=40, layout="nhwc")
    x, rois, grad = w.tensors()
    assert x.shape == (3, 4, 40, 40) and x.is_contiguous(memory_format=torch.channels_last)
    assert rois.shape == (64, 5) and grad.shape == (64, 4, 7, 7)
    image, boxes = rois[:, 0], rois[:, 1:]
    assert set(image.tolist()) <= {0.0, 1.0, 2.0}
    sides = boxes[:, 2:] - boxes[:, :2]
    assert (sides >= 8).all() and (sides <= 120).all()
    assert (boxes >= 0).all() and (boxes <= 40 * 4).all()  # input pixels of a stride-4 level


def test_both_phases_both_implementations():
    w = RoIAlignWorkload(rois=8, images=1, channels=4, size=16, layout="nchw")
    out = compare_roi_align(w, iters=2)
    assert list(out) == [
        "forward_ours_ms",
        "forward_torchvision_ms",
        "forward+backward_ours_ms",
        "forward+backward_torchvision_ms",
    ]
    assert all(v > 0 for v in out.values())

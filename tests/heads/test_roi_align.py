"""heads.roi.roi_align: torchvision's forward, and a sparse-matrix CPU backward equal
to torchvision's."""

import pytest
import torch
from torchvision.ops import roi_align as tv_roi_align

from heads.roi.roi_align import roi_align


def random_rois(
    n: int, images: int, height: int, width: int, scale: float, g: torch.Generator
) -> torch.Tensor:
    """(n, 5) rois in input pixels: inside, straddling and outside the map, tiny,
    inverted, at the edges."""
    h, w = height / scale, width / scale
    xy = torch.rand(n, 2, generator=g) * torch.tensor([w * 1.3, h * 1.3]) - torch.tensor(
        [w * 0.15, h * 0.15]
    )
    wh = torch.rand(n, 2, generator=g) * torch.tensor([w * 0.8, h * 0.8])
    boxes = torch.cat([xy, xy + wh], 1)
    boxes[:4] = torch.tensor(
        [[0.0, 0.0, w, h], [w - 1, h - 1, w + 5, h + 5], [3.0, 3.0, 3.2, 3.1], [5.0, 5.0, 2.0, 4.0]]
    )
    image = torch.randint(0, images, (n, 1), generator=g).float()
    return torch.cat([image, boxes], 1)


def grads(fn, x, rois, grad, *args):
    x = x.detach().clone().requires_grad_()
    out = fn(x, rois, *args)
    out.backward(grad)
    return out.detach(), x.grad


@pytest.mark.parametrize("nhwc", [False, True])
@pytest.mark.parametrize("sampling_ratio", [2, 0, 3])
@pytest.mark.parametrize("aligned", [False, True])
def test_equals_torchvision(sampling_ratio, aligned, nhwc):
    """NCHW: torchvision's forward itself; NHWC: the sparse forward. Both: the sparse backward."""
    g = torch.Generator().manual_seed(sampling_ratio * 2 + aligned)
    x = torch.randn(3, 5, 19, 23, dtype=torch.float64, generator=g)
    if nhwc:
        x = x.contiguous(memory_format=torch.channels_last)
    rois = random_rois(60, 3, 19, 23, 0.5, g).double()
    grad = torch.randn(60, 5, 7, 7, dtype=torch.float64, generator=g)
    expected_out, expected = grads(tv_roi_align, x, rois, grad, 7, 0.5, sampling_ratio, aligned)
    out, got = grads(roi_align, x, rois, grad, 7, 0.5, sampling_ratio, aligned)
    if nhwc:
        torch.testing.assert_close(out, expected_out, rtol=1e-12, atol=1e-12)
    else:
        assert torch.equal(out, expected_out)
    assert expected.abs().sum() > 0 and (expected == 0).any()  # some cells hit, some not
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


def test_float32_bfloat16_and_channels_last_layout():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 8, 32, 40, generator=g).contiguous(memory_format=torch.channels_last)
    rois = random_rois(100, 2, 32, 40, 0.25, g)
    grad = torch.randn(100, 8, 7, 7, generator=g)
    expected_out, expected = grads(tv_roi_align, x, rois, grad, 7, 0.25, 2, False)
    out, got = grads(roi_align, x, rois, grad, 7, 0.25, 2, False)
    torch.testing.assert_close(out, expected_out, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert got.is_contiguous(memory_format=torch.channels_last)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        half = roi_align(x.bfloat16(), rois, 7, 0.25, 2, False)
    assert half.dtype == torch.bfloat16
    torch.testing.assert_close(half.float(), expected_out, rtol=0.02, atol=0.05)


def test_gradcheck():
    """RoIAlign is linear in the features: finite differences give the exact Jacobian."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 2, 6, 7, dtype=torch.float64, generator=g, requires_grad=True)
    rois = torch.tensor([[0, 1.0, 1.5, 20.0, 14.0], [1, -3.0, 2.0, 9.0, 30.0]], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda t: roi_align(t, rois, 3, 0.25, 0, True), (x,))


def test_no_rois_and_no_grad():
    x = torch.randn(1, 4, 8, 8, requires_grad=True)
    out = roi_align(x, torch.zeros(0, 5), 7, 1.0, 2, True)
    assert out.shape == (0, 4, 7, 7)
    out.sum().backward()
    assert torch.equal(x.grad, torch.zeros_like(x))
    with torch.no_grad():
        rois = torch.tensor([[0, 1.0, 1.0, 6.0, 5.0]])
        assert torch.equal(
            roi_align(x, rois, 2, 1.0, 2, True), tv_roi_align(x, rois, 2, 1.0, 2, True)
        )

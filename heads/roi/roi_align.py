"""RoIAlign on CPU as sparse matrix products, instead of torchvision's serial loops.

RoIAlign is linear in the feature map: ``out = M @ x`` with a sparse ``M`` holding, per output bin,
the bilinear weights of its sampling points. torchvision's CPU backward walks every roi, channel,
bin and sampling point on one thread (about a fifth of a CPU training step of R50-FPN); here the
backward builds ``M`` from the same geometry and computes ``grad_x = M^T @ grad_out`` as one CSR
matrix product, vectorised over channels and multithreaded. The forward is torchvision's kernel
for NCHW features (outputs bit-identical to ``torchvision.ops.roi_align``) and ``M @ x`` for NHWC
features, whose (N*H*W, C) view is free. Other devices keep torchvision's kernels (atomic adds on
CUDA are already fast). ``M`` has up to ``size**2 * 4 * grid_h * grid_w`` entries per roi, about 40
bytes each while it is built (1,024 rois at 7x7, sampling 2: 0.8M entries, ~32 MB).
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor
from torch.autograd.function import FunctionCtx, once_differentiable
from torchvision.ops import roi_align as tv_roi_align


def roi_align(
    x: Tensor,
    rois: Tensor,
    output_size: int,
    spatial_scale: float,
    sampling_ratio: int,
    aligned: bool,
) -> Tensor:
    """``torchvision.ops.roi_align`` for (N, C, H, W) features and (R, 5) rois ``(image, x1, y1, x2,
    y2)`` in input pixels (scaled by ``spatial_scale``) -> (R, C, output_size, output_size),
    NHWC-strided when ``x`` is.

    ``sampling_ratio`` points per bin side (0: ``ceil(roi side / output_size)``, per roi);
    ``aligned`` shifts the box by half a pixel (detectron2's ROIAlignV2).
    """
    needs_grad = torch.is_grad_enabled() and x.requires_grad
    if x.device.type != "cpu" or not (needs_grad or _nhwc(x)):
        return tv_roi_align(x, rois, output_size, spatial_scale, sampling_ratio, aligned)
    return _sparse_roi_align(x, rois, output_size, spatial_scale, sampling_ratio, aligned)


def _nhwc(x: Tensor) -> bool:
    return x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


class _RoIAlign(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: FunctionCtx,
        x: Tensor,
        rois: Tensor,
        output_size: int,
        spatial_scale: float,
        sampling_ratio: int,
        aligned: bool,
    ) -> Tensor:
        ctx.save_for_backward(rois)
        ctx.geometry = (
            x.shape,
            x.dtype,
            x.is_contiguous(),
            output_size,
            spatial_scale,
            sampling_ratio,
            aligned,
        )
        if not _nhwc(x):
            return tv_roi_align(x, rois, output_size, spatial_scale, sampling_ratio, aligned)
        n, c, h, w = x.shape
        compute = _compute_dtype(x.dtype)
        m = _sparse(
            rois, (n, h, w), output_size, spatial_scale, sampling_ratio, aligned, compute, False
        )
        with torch.autocast("cpu", enabled=False):
            out = m @ x.to(compute).permute(0, 2, 3, 1).reshape(-1, c)
        return out.view(len(rois), output_size, output_size, c).permute(0, 3, 1, 2).to(x.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, grad: Tensor) -> tuple[Tensor | None, ...]:
        (rois,) = ctx.saved_tensors
        shape, dtype, contiguous, size, scale, sampling, aligned = ctx.geometry
        n, c, h, w = shape
        compute = _compute_dtype(dtype)
        m_t = _sparse(rois, (n, h, w), size, scale, sampling, aligned, compute, True)
        with torch.autocast("cpu", enabled=False):
            g = m_t @ grad.to(compute).permute(0, 2, 3, 1).reshape(-1, c)
        g = g.view(n, h, w, c).permute(0, 3, 1, 2).to(dtype)
        return (g.contiguous() if contiguous else g), None, None, None, None, None


# The sparse-matrix path runs eagerly under ``torch.compile``: building the matrix (unique,
# bincount, a sparse tensor, per-grid host reads) is data-dependent throughout, so one opaque call
# ends the graph once instead of at each of those steps.
_sparse_roi_align = torch.compiler.disable(_RoIAlign.apply)


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    # half-precision features (autocast) are pooled in float32, as torchvision's
    # autocast wrapper does
    return torch.float64 if dtype == torch.float64 else torch.float32


def _sparse(
    rois: Tensor,
    grid: tuple[int, int, int],
    size: int,
    scale: float,
    sampling_ratio: int,
    aligned: bool,
    dtype: torch.dtype,
    transpose: bool,
) -> Tensor:
    """RoIAlign's (R * size * size, N * H * W) matrix, or its transpose, as a CSR
    tensor of ``dtype``."""
    n, h, w = grid
    bins, cells = len(rois) * size * size, n * h * w
    rows, cols, vals = sampling_matrix(rois.to(dtype), h, w, size, scale, sampling_ratio, aligned)
    if transpose:
        rows, cols, bins, cells = cols, rows, cells, bins
    # CSR wants each row's columns sorted and distinct: sort by (row, column) and sum repeats
    keys, inverse = torch.unique(rows * cells + cols, return_inverse=True)
    vals = torch.zeros(len(keys), dtype=dtype).index_add_(0, inverse, vals)
    crow = torch.zeros(bins + 1, dtype=torch.int64)
    crow[1:] = torch.bincount(keys // cells, minlength=bins).cumsum(0)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Ss]parse.*")
        return torch.sparse_csr_tensor(crow, keys % cells, vals, (bins, cells))


def sampling_matrix(
    rois: Tensor,
    height: int,
    width: int,
    size: int,
    scale: float,
    sampling_ratio: int,
    aligned: bool,
) -> tuple[Tensor, Tensor, Tensor]:
    """The nonzeros of RoIAlign's (R * size * size, N * H * W) matrix as (rows, cols, values),
    values in rois' dtype.

    Row ``(r * size + i) * size + j`` is output bin (i, j) of roi r; column ``(b * H + y) * W + x``
    is feature cell (y, x) of image b. Entries repeat where sampling points share a cell (a matrix
    product sums them). Follows torchvision's kernel: points outside ``[-1, H] x [-1, W]`` count
    zero, others are clamped into the map, the bin averages its points.
    """
    offset = 0.5 if aligned else 0.0
    x0, y0 = rois[:, 1] * scale - offset, rois[:, 2] * scale - offset
    roi_w, roi_h = rois[:, 3] * scale - offset - x0, rois[:, 4] * scale - offset - y0
    if not aligned:
        roi_w, roi_h = roi_w.clamp(min=1.0), roi_h.clamp(min=1.0)
    bin_w, bin_h = roi_w / size, roi_h / size
    if sampling_ratio > 0:
        grid_h = grid_w = torch.full((len(rois),), sampling_ratio, dtype=torch.int64)
    else:
        grid_h, grid_w = torch.ceil(roi_h / size).long(), torch.ceil(roi_w / size).long()
    parts = []
    # every roi of one (grid_h, grid_w) pair has the same number of points: one vectorised pass each
    for gh, gw in torch.stack((grid_h, grid_w), 1).unique(dim=0).tolist():
        if gh <= 0 or gw <= 0:
            continue
        r = ((grid_h == gh) & (grid_w == gw)).nonzero(as_tuple=True)[0]
        iy, wy = _axis_weights(y0[r], bin_h[r], size, gh, height)  # (k, size, 2 * gh)
        ix, wx = _axis_weights(x0[r], bin_w[r], size, gw, width)
        k = len(r)
        image = rois[r, 0].long().view(k, 1, 1, 1, 1)
        cols = (image * height + iy.view(k, size, 1, -1, 1)) * width + ix.view(k, 1, size, 1, -1)
        vals = wy.view(k, size, 1, -1, 1) * wx.view(k, 1, size, 1, -1) / (gh * gw)
        bins = torch.arange(size * size).view(1, size, size, 1, 1) + (r * size * size).view(
            k, 1, 1, 1, 1
        )
        parts.append((bins.expand_as(cols).reshape(-1), cols.reshape(-1), vals.reshape(-1)))
    if not parts:
        empty = torch.zeros(0, dtype=torch.int64)
        return empty, empty, torch.zeros(0)
    rows, cols, vals = (torch.cat(t) for t in zip(*parts))
    return rows, cols, vals


def _axis_weights(
    start: Tensor, bin_size: Tensor, size: int, grid: int, extent: int
) -> tuple[Tensor, Tensor]:
    """Along one axis: for k rois, the two cells and linear weights of each of the ``grid`` points
    of each of the ``size`` bins -> indices (k, size, 2 * grid) int64 and weights
    (k, size, 2 * grid)."""
    b = torch.arange(size, dtype=start.dtype).view(1, size, 1)
    g = torch.arange(grid, dtype=start.dtype).view(1, 1, grid)
    step = bin_size.view(-1, 1, 1)
    p = start.view(-1, 1, 1) + b * step + (g + 0.5) * step / grid
    inside = (p >= -1.0) & (p <= extent)
    p = p.clamp(min=0.0)
    low = p.floor()
    at_edge = low >= extent - 1
    low = torch.where(at_edge, torch.full_like(low, extent - 1), low)
    p = torch.where(at_edge, low, p)
    high = torch.where(at_edge, low, low + 1)
    frac = p - low
    index = torch.stack((low, high), -1).long().clamp(min=0).flatten(2)
    weight = (torch.stack((1 - frac, frac), -1) * inside.unsqueeze(-1)).flatten(2)
    return index, weight

"""Detector input: validation, pixel normalisation, resizing, padding into one batch tensor."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from backbones.spec import PixelFormat
from heads.ops.structures import GroundTruth


def validate_inputs(
    images: Sequence[Tensor], targets: Sequence[dict[str, Tensor]] | None, num_classes: int
) -> None:
    """Raise ``ValueError`` naming the image index and the offending value for malformed input.

    Images: float tensors (3, H, W), H, W > 0. Targets: ``boxes`` (N, 4) finite xyxy with
    x2 > x1 and y2 > y1; ``labels`` (N,) integers in 0..num_classes-1; optional ``masks``
    (N, H, W) uint8/bool in the image's frame.
    """
    if not isinstance(images, (list, tuple)) or not images:
        raise ValueError(
            f"images must be a non-empty list of (3, H, W) tensors, got {type(images).__name__}"
        )
    for i, img in enumerate(images):
        if not isinstance(img, Tensor):
            raise ValueError(f"image {i}: expected a tensor, got {type(img).__name__}")
        if img.dim() != 3 or img.shape[0] != 3 or img.shape[1] == 0 or img.shape[2] == 0:
            raise ValueError(f"image {i}: expected shape [3, H, W], got {list(img.shape)}")
        if not img.is_floating_point():
            raise ValueError(
                f"image {i}: expected a float tensor (RGB in 0..1), got dtype {img.dtype}"
            )
    if targets is None:
        return
    if len(targets) != len(images):
        raise ValueError(f"got {len(images)} images but {len(targets)} targets")
    for i, t in enumerate(targets):
        if not isinstance(t, dict) or "boxes" not in t or "labels" not in t:
            raise ValueError(
                f"image {i}: target must be a dict with 'boxes' and 'labels', got {t!r}"
            )
        boxes, labels = t["boxes"], t["labels"]
        if not isinstance(boxes, Tensor) or boxes.dim() != 2 or boxes.shape[1] != 4:
            raise ValueError(
                f"image {i}: boxes must be [N, 4], got "
                f"{list(boxes.shape) if isinstance(boxes, Tensor) else type(boxes).__name__}"
            )
        if not boxes.is_floating_point():
            raise ValueError(f"image {i}: boxes must be float, got dtype {boxes.dtype}")
        if not isinstance(labels, Tensor) or labels.shape != boxes.shape[:1]:
            raise ValueError(
                f"image {i}: labels must be [{boxes.shape[0]}] to match the boxes, got "
                f"{list(labels.shape) if isinstance(labels, Tensor) else type(labels).__name__}"
            )
        if labels.is_floating_point() or labels.dtype == torch.bool:
            raise ValueError(f"image {i}: labels must be integers, got dtype {labels.dtype}")
        masks = t.get("masks")
        expected = [boxes.shape[0], *images[i].shape[-2:]]
        if masks is not None and (not isinstance(masks, Tensor) or list(masks.shape) != expected):
            raise ValueError(
                f"image {i}: masks must be [N, H, W] = {expected} (one per box, the image's size), "
                f"got {list(masks.shape) if isinstance(masks, Tensor) else type(masks).__name__}"
            )
        if masks is not None and masks.is_floating_point():
            raise ValueError(f"image {i}: masks must be uint8 or bool, got dtype {masks.dtype}")
    # One device sync for the value checks of the whole batch; details only when something is wrong.
    bad = [
        (~torch.isfinite(t["boxes"]).all(1))
        | (t["boxes"][:, 2] <= t["boxes"][:, 0])
        | (t["boxes"][:, 3] <= t["boxes"][:, 1])
        | (t["labels"] < 0)
        | (t["labels"] >= num_classes)
        for t in targets
    ]
    if not bool(torch.cat(bad).any()):
        return
    for i, (t, b) in enumerate(zip(targets, bad)):
        if b.any():
            j = int(b.nonzero()[0])
            box, label = t["boxes"][j].tolist(), int(t["labels"][j])
            if not 0 <= label < num_classes:
                raise ValueError(
                    f"image {i}: label {label} (box {j}) out of range 0..{num_classes - 1}"
                )
            what = (
                "non-finite"
                if not all(map(math.isfinite, box))
                else "degenerate (needs x2 > x1 and y2 > y1)"
            )
            raise ValueError(f"image {i}: box {j} {box} is {what}")


class ImagePreprocessor(nn.Module):
    """Normalise, resize and pad a list of images into one batch.

    Resizing scales each image so its short side is ``min_size`` (training: drawn per image from
    ``min_size_train``; test: ``min_size_test``) unless the long side would exceed ``max_size``.
    The scale is applied by bilinear ``interpolate`` with a recomputed scale factor, the same
    arithmetic as torchvision's detection transform. Pixels are
    normalised first, so the zero padding up to a multiple of ``size_divisibility`` is the mean.
    ``channels_last`` lays the batch out NHWC (same values and shape, other strides): always
    (True), never (False), or in eval mode only ("inference").
    """

    def __init__(
        self,
        *,
        min_size_train: Sequence[int],
        max_size_train: int,
        min_size_test: int,
        max_size_test: int,
        size_divisibility: int,
        channels_last: bool | Literal["inference"] = False,
    ) -> None:
        super().__init__()
        if not min_size_train:
            raise ValueError("min_size_train needs at least one size")
        self.min_size_train = list(min_size_train)
        self.max_size_train = max_size_train
        self.min_size_test = min_size_test
        self.max_size_test = max_size_test
        self.size_divisibility = max(size_divisibility, 1)
        self.channels_last = channels_last

    def _target_sizes(self) -> tuple[int, int]:
        if self.training:
            i = int(torch.randint(len(self.min_size_train), ()))
            return self.min_size_train[i], self.max_size_train
        return self.min_size_test, self.max_size_test

    @staticmethod
    def normalise(image: Tensor, fmt: PixelFormat) -> Tensor:
        """(3, H, W) RGB in 0..1 -> the network input of ``fmt``."""
        if fmt.channel_order == "BGR":
            image = image.flip(0)
        mean = torch.as_tensor(fmt.mean, dtype=image.dtype, device=image.device)
        std = torch.as_tensor(fmt.std, dtype=image.dtype, device=image.device)
        return (image * fmt.scale - mean[:, None, None]) / std[:, None, None]

    def forward(
        self,
        images: Sequence[Tensor],
        targets: Sequence[dict[str, Tensor]] | None,
        fmt: PixelFormat,
    ) -> tuple[Tensor, Tensor, GroundTruth | None]:
        """-> batch (B, 3, H, W), image sizes (B, 2) float (h, w) after resizing, ground truth in
        network-input pixels (padded to the largest box count) or None."""
        resized, all_boxes = [], []
        for i, img in enumerate(images):
            min_size, max_size = self._target_sizes()
            h, w = img.shape[-2:]
            scale = min(min_size / min(h, w), max_size / max(h, w))
            x = F.interpolate(
                self.normalise(img, fmt)[None],
                scale_factor=scale,
                mode="bilinear",
                recompute_scale_factor=True,
                align_corners=False,
            )[0]
            resized.append(x)
            if targets is not None:
                all_boxes.append(scale_boxes(targets[i]["boxes"], (h, w), x.shape[-2:]))
        d = self.size_divisibility
        height = -(-max(x.shape[1] for x in resized) // d) * d
        width = -(-max(x.shape[2] for x in resized) // d) * d
        mode = self.channels_last
        nhwc = mode is True or (mode == "inference" and not self.training)
        layout = torch.channels_last if nhwc else torch.contiguous_format
        batch = torch.empty(
            (len(resized), 3, height, width),
            dtype=resized[0].dtype,
            device=resized[0].device,
            memory_format=layout,
        ).zero_()
        for b, x in zip(batch, resized):
            b[:, : x.shape[1], : x.shape[2]].copy_(x)
        sizes = torch.tensor(
            [x.shape[-2:] for x in resized], dtype=torch.float32, device=batch.device
        )
        gt = None
        if targets is not None:
            # at least one (invalid) slot, so that gathers by matched slot work for empty batches
            g = max(max(len(b) for b in all_boxes), 1)
            boxes = batch.new_zeros((len(images), g, 4))
            labels = torch.zeros((len(images), g), dtype=torch.int64, device=batch.device)
            valid = torch.zeros((len(images), g), dtype=torch.bool, device=batch.device)
            for i, (bx, t) in enumerate(zip(all_boxes, targets)):
                boxes[i, : len(bx)] = bx
                labels[i, : len(bx)] = t["labels"]
                valid[i, : len(bx)] = True
            gt = GroundTruth(boxes=boxes, labels=labels, valid=valid)
            if "masks" in targets[0]:
                gt.masks, gt.to_mask_frame = _batch_masks(images, targets, sizes)
        return batch, sizes, gt


def _batch_masks(
    images: Sequence[Tensor], targets: Sequence[dict[str, Tensor]], sizes: Tensor
) -> tuple[Tensor, Tensor]:
    """Every image's (N, H, W) masks, zero-padded to the batch's largest image and concatenated
    -> (K, H, W) uint8, and (B, 4) factors from input pixels to each image's own frame."""
    if any("masks" not in t for t in targets):
        raise ValueError("either every target or none has 'masks'")
    height = max(img.shape[-2] for img in images)
    width = max(img.shape[-1] for img in images)
    count = sum(len(t["masks"]) for t in targets)
    out = torch.zeros((count, height, width), dtype=torch.uint8, device=sizes.device)
    start = 0
    for t in targets:
        m = t["masks"]
        out[start : start + len(m), : m.shape[1], : m.shape[2]] = m.to(out.device, torch.uint8)
        start += len(m)
    own = torch.tensor([img.shape[-2:] for img in images], dtype=torch.float32, device=sizes.device)
    factor = own / sizes  # (B, 2) as (h, w)
    return out, factor[:, [1, 0, 1, 0]]


def scale_boxes(
    boxes: Tensor, old_size: Sequence[int] | Tensor, new_size: Sequence[int] | Tensor
) -> Tensor:
    """Rescale (N, 4) xyxy boxes from an image of ``old_size`` (h, w) to ``new_size`` (h, w).

    Sizes are ints or (2,) tensors of whole numbers; the ratios are float32 quotients either way,
    so a size read back from the preprocessor's float32 ``image_sizes`` needs no host copy.
    """
    new, old = (_float32_size(s, boxes.device) for s in (new_size, old_size))
    ratio_h, ratio_w = (new / old).unbind()
    return boxes * torch.stack((ratio_w, ratio_h, ratio_w, ratio_h)).to(boxes.dtype)


def _float32_size(size: Sequence[int] | Tensor, device: torch.device) -> Tensor:
    """(h, w) as a float32 (2,) tensor; a tensor is converted, not copied into a new one, so a
    traced size (ONNX export) stays an input of the graph instead of a constant."""
    if isinstance(size, Tensor):
        return size.to(dtype=torch.float32, device=device)
    return torch.as_tensor(size, dtype=torch.float32, device=device)

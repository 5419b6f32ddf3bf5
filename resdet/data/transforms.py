"""Detection transforms on (image, target) pairs.

A transform is called as `image, target = t(image, target)` with `image` an RGB `uint8` Tensor of
shape (3, H, W) (any strides: the decoder's (H, W, 3) array viewed channels-last) and
`target["boxes"]` an (N, 4) float32 xyxy array in that image's pixels (and, for mask models,
`target["masks"]` an (N, H, W) uint8 array). There is no resize: the
detector resizes its input (`model.input`), so doing it here too would resample twice. Random
choices draw from torch's global generator, which the training loader seeds per sample from the run
seed and the sample's position (`resdet.data.samplers.SeededItems`): the same draws in any worker
and after a resume.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import torch

Target = dict[str, Any]
Transform = Callable[[torch.Tensor, Target], tuple[torch.Tensor, Target]]


class RandomHorizontalFlip:
    """Mirror the image with probability `prob`; a box `(x1, y1, x2, y2)` becomes `(W - x2,
    y1, W - x1, y2)`, and `target["masks"]` (N, H, W), when present, is mirrored too."""

    def __init__(self, prob: float = 0.5) -> None:
        self.prob = float(prob)

    def __call__(self, image: torch.Tensor, target: Target) -> tuple[torch.Tensor, Target]:
        if self.prob <= 0 or torch.rand(()).item() >= self.prob:
            return image, target
        w = image.shape[-1]
        boxes = target["boxes"][:, [2, 1, 0, 3]] * np.array([-1, 1, -1, 1], dtype=np.float32)
        boxes += np.array([w, 0, w, 0], dtype=np.float32)
        flipped = {**target, "boxes": boxes}
        if "masks" in target:
            flipped["masks"] = target["masks"][:, :, ::-1]
        return image.flip(-1), flipped


class Compose:
    """Apply transforms in order."""

    def __init__(self, transforms: Sequence[Transform]) -> None:
        self.transforms = list(transforms)

    def __call__(self, image: torch.Tensor, target: Target) -> tuple[torch.Tensor, Target]:
        for t in self.transforms:
            image, target = t(image, target)
        return image, target

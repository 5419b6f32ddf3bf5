"""The classifier as the engine's `Trainer` expects a model: `model(images, targets) -> {loss}`."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from backbones.resnet import ResNetBase
from backbones.spec import PixelFormat
from resdet.classification.transforms import PixelNormalize
from resdet.utils.dist import all_reduce_mean


class ClassificationObjective(nn.Module):
    """Normalises a uint8 batch into the net's pixel format, returns `{"loss_cls": cross-entropy}`.

    `images` is a one-element list holding the batch `[N, 3, H, W]` (uint8 RGB or float 0..1) and
    `targets` a one-element list `[{"labels": [N] int64}]` (see `resdet.classification.loader`).
    Its `state_dict` is the network's own, so checkpoints hold plain ResNet keys (`conv1.weight`,
    ...). It counts training top-1 errors; `pop_train_error` returns and resets them.
    """

    def __init__(self, net: ResNetBase, channels_last: bool = False) -> None:
        super().__init__()
        self.net = net
        self.normalize = PixelNormalize(net.pixel_format)
        self.channels_last = channels_last
        # (wrong, seen); a plain attribute, not a buffer, so DDP does not broadcast rank 0's counts
        self._errors: torch.Tensor | None = None

    @property
    def pixel_format(self) -> PixelFormat:
        return self.net.pixel_format

    def forward(
        self, images: list[torch.Tensor], targets: list[dict[str, torch.Tensor]]
    ) -> dict[str, torch.Tensor]:
        x = self.normalize(images[0])
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        labels = targets[0]["labels"]
        logits = self.net(x)["logits"]
        with torch.no_grad():
            wrong = (logits.argmax(1) != labels).sum().float()
            counts = torch.stack([wrong, torch.full_like(wrong, len(labels))])
            self._errors = counts if self._errors is None else self._errors + counts
        return {"loss_cls": F.cross_entropy(logits.float(), labels)}

    def pop_train_error(self) -> float:
        """Top-1 error (%) of the batches seen since the last call, over all
        ranks (a collective)."""
        if self._errors is None:
            raise RuntimeError("pop_train_error called before any training batch")
        wrong, seen = all_reduce_mean(self._errors).tolist()
        self._errors = None
        return 100.0 * wrong / seen

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return self.net.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
        return self.net.load_state_dict(state_dict, strict=strict, assign=assign)

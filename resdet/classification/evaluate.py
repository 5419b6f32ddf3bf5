"""Top-1/top-5 accuracy of a classifier over a (sharded) test loader."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from resdet.classification.metrics import topk_correct
from resdet.engine.precision import autocast
from resdet.utils.dist import all_gather_object


@torch.no_grad()
def evaluate_classifier(
    net: nn.Module,
    loader: Iterable,
    normalize: nn.Module,
    device: torch.device,
    amp: str = "none",
    channels_last: bool = False,
) -> dict[str, float]:
    """`{"top1", "top5", "top1_err", "top5_err"}` in percent, over every rank's shard.

    `loader` yields `(images, labels)`: images uint8 `[n, 3, H, W]`, or `[n, k, 3, H, W]` for
    k crops per image, whose softmax probabilities are averaged. A collective under DDP:
    every rank calls it.
    """
    was_training = net.training
    net.eval()
    correct = {1: 0, 5: 0}
    seen = 0
    for images, labels in loader:
        images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        crops = images.shape[1] if images.ndim == 5 else 1
        # (n, k, 3, H, W) -> (n*k, 3, H, W)
        x = normalize(images.flatten(0, 1) if crops > 1 else images)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(amp, device):
            logits = net(x)["logits"]
        # (n*k, C) -> (n, k, C) -> mean over crops
        probs = logits.float().softmax(1).view(len(labels), crops, -1).mean(1)
        for k, v in topk_correct(probs, labels, (1, 5)).items():
            correct[k] += v
        seen += len(labels)
    net.train(was_training)
    totals = all_gather_object((correct[1], correct[5], seen))
    c1, c5, n = (sum(t[i] for t in totals) for i in range(3))
    if n == 0:
        raise ValueError("the test set is empty")
    top1, top5 = 100.0 * c1 / n, 100.0 * c5 / n
    return {"top1": top1, "top5": top5, "top1_err": 100.0 - top1, "top5_err": 100.0 - top5}

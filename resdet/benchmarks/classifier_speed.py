"""Classifier training throughput, ours beside torchvision's: ResNet-50 ImageNet-style steps.

Both nets take the same synthetic batches (random RGB in 0..1, random labels), one SGD step each per
round, rounds interleaved in one process so drift in the machine's speed hits both alike.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from backbones.resnet import ResNet


@dataclass
class ClassifierBench:
    """`images_per_s` per net (median over rounds) and `ratio` = ours / torchvision."""

    ours_images_per_s: float
    torchvision_images_per_s: float
    ratio: float
    batch_size: int
    image_size: int
    amp: str
    channels_last: bool
    device: str


def _logits(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    out = net(x)
    return out["logits"] if isinstance(out, dict) else out


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def compare_resnet50(
    *,
    device: str = "cpu",
    batch_size: int = 64,
    image_size: int = 224,
    amp: str = "none",
    channels_last: bool = False,
    rounds: int = 10,
    warmup: int = 2,
    depth: int = 50,
) -> ClassifierBench:
    """Time `rounds` training steps of `ResNet(depth, num_classes=1000)` and torchvision's
    `resnet{depth}` on `[batch_size, 3, image_size, image_size]` batches (`amp`: none | bf16)."""
    dev = torch.device(device)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    nets = {
        "ours": ResNet(depth, out_features=(), num_classes=1000),
        "torchvision": getattr(torchvision.models, f"resnet{depth}")(),
    }
    opts = {}
    for name, net in nets.items():
        nets[name] = net.to(dev, memory_format=fmt).train()
        opts[name] = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(batch_size, 3, image_size, image_size, generator=g).to(dev, memory_format=fmt)
    y = torch.randint(0, 1000, (batch_size,), generator=g).to(dev)
    cast = (
        torch.autocast(dev.type, dtype=torch.bfloat16)
        if amp == "bf16"
        else contextlib.nullcontext()
    )
    times: dict[str, list[float]] = {name: [] for name in nets}
    for r in range(warmup + rounds):
        for name, net in nets.items():
            _sync(dev)
            t0 = time.perf_counter()
            with cast:
                loss = F.cross_entropy(_logits(net, x).float(), y)
            opts[name].zero_grad(set_to_none=True)
            loss.backward()
            opts[name].step()
            _sync(dev)
            if r >= warmup:
                times[name].append(time.perf_counter() - t0)
    rate = {name: batch_size / float(torch.tensor(t).median()) for name, t in times.items()}
    return ClassifierBench(
        rate["ours"],
        rate["torchvision"],
        rate["ours"] / rate["torchvision"],
        batch_size,
        image_size,
        amp,
        channels_last,
        str(dev),
    )

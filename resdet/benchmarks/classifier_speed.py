"""Classifier training throughput, ours beside torchvision's: ResNet-50 ImageNet-style steps.

Both nets take the same synthetic batches (random RGB in 0..1, random labels), one SGD step each per
round, rounds interleaved in one process so drift in the machine's speed hits both alike
(`resdet.benchmarks.timing.interleaved`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from backbones.resnet import ResNet
from resdet.benchmarks import timing
from resdet.engine.precision import autocast


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

    def step(name: str) -> float:
        def train_step() -> None:
            # only bf16 autocasts: fp16 would need a loss scaler, which this loop has not
            with autocast("bf16" if amp == "bf16" else "none", dev):
                loss = F.cross_entropy(_logits(nets[name], x).float(), y)
            opts[name].zero_grad(set_to_none=True)
            loss.backward()
            opts[name].step()

        return timing.timed(train_step, dev).wall_s

    # the warm-up rounds are interleaved like the timed ones, and dropped
    steps = {name: (lambda n=name: step(n)) for name in nets}
    times = {name: t[warmup:] for name, t in timing.interleaved(steps, warmup + rounds).items()}
    # torch's median: the lower of the middle two for an even count
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

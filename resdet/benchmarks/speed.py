"""Throughput, latency, memory and MFU of a detector, optionally interleaved with torchvision's.

All figures are medians over timed iterations after a warm-up (the harness is
`resdet.benchmarks.timing`, shared by every benchmark). Training throughput covers forward,
backward and the optimizer step; inference covers `model(images)` in eval mode under `no_grad`.
Peak memory is CUDA max-allocated on GPU and the process's peak resident set (VmHWM, reset before
each phase) on CPU. FLOPs per image come from `resdet.benchmarks.flops.count_flops`, the counter
tools/model_stats.py uses too; MFU is computed from them (`add_mfu`). With `compile` every
detector runs whole under `torch.compile` and each phase reports the graphs, graph breaks and
recompilations of the whole run (warm-up included: compilation happens there, and again whenever
a new input size fails the guards, e.g. with several `train_sizes`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
from torch import nn

from resdet.benchmarks import timing
from resdet.deploy.compile import CompileStats, compile_detector
from resdet.engine.precision import autocast

#: Dense peak TFLOP/s per device name fragment: (bf16/fp16 tensor-core, fp32 non-tensor-core).
KNOWN_PEAK_TFLOPS: dict[str, tuple[float, float]] = {
    "H200": (989.0, 67.0),
    "H100": (989.0, 67.0),  # SXM; PCIe is lower, override with --peak-tflops
    "A100": (312.0, 19.5),
    "L40S": (362.0, 91.6),
    "A10": (125.0, 31.2),
    "V100": (125.0, 15.7),
    "T4": (65.0, 8.1),
    "RTX 4090": (165.2, 82.6),
}


@dataclass
class BenchSettings:
    """One benchmark's knobs; `image_size` is the (height, width) of the synthetic images."""

    device: str = "cpu"
    amp: str = "none"  # none | bf16 | fp16
    channels_last: bool = False
    compile: bool = False
    #: `torch.compile` backend with `compile` (resdet.deploy.compile.compile_detector)
    compile_backend: str = "inductor"
    image_size: tuple[int, int] = (512, 512)
    #: training short sides drawn per image (multi-scale training); None: `image_size` only
    train_sizes: tuple[int, ...] | None = None
    batch_size: int = 2
    iters: int = 5
    warmup: int = 2
    boxes_per_image: int = 4
    num_classes: int = 80
    #: Mask R-CNN: targets carry masks and the torchvision reference is its `MaskRCNN`
    masks: bool = False
    peak_tflops: float | None = None
    seed: int = 0


@dataclass
class BenchResult:
    train_images_per_s: float = 0.0
    infer_images_per_s: float = 0.0
    infer_latency_ms: float = 0.0
    peak_memory_train_mb: float = 0.0
    peak_memory_infer_mb: float = 0.0
    gflops_per_image: float | None = None
    mfu_train: float | None = None
    mfu_infer: float | None = None
    train_times_s: list[float] = field(default_factory=list)
    infer_times_s: list[float] = field(default_factory=list)
    # process CPU seconds (all threads) per iteration: on a shared machine, less affected by
    # other processes than wall time
    train_cpu_s: list[float] = field(default_factory=list)
    infer_cpu_s: list[float] = field(default_factory=list)
    #: with `compile`: per phase ("train", "infer"), what Dynamo compiled over the whole run
    #: (warm-up and timed iterations): `resdet.deploy.compile.CompileStats.as_dict()`
    compile_stats: dict[str, dict[str, object]] | None = None


def synthetic_batch(s: BenchSettings) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    """`batch_size` RGB images `[3, H, W]` in 0..1 and targets with
    `boxes_per_image` xyxy boxes each (and, with `s.masks`, `masks` (N, H, W) uint8: an ellipse
    inscribed in each box)."""
    g = torch.Generator().manual_seed(s.seed)
    images, targets = [], []
    for _ in range(s.batch_size):
        h, w = s.image_size
        extent = torch.tensor([w, h], dtype=torch.float32)
        images.append(torch.rand(3, h, w, generator=g).to(s.device))
        xy = torch.rand(s.boxes_per_image, 2, generator=g) * extent * 0.6
        wh = (0.1 + torch.rand(s.boxes_per_image, 2, generator=g) * 0.3) * extent
        boxes = torch.cat([xy, torch.minimum(xy + wh, extent)], dim=1)
        labels = torch.randint(0, s.num_classes, (s.boxes_per_image,), generator=g)
        target = {"boxes": boxes.to(s.device), "labels": labels.to(s.device)}
        if s.masks:
            ys = torch.arange(h, dtype=torch.float32)[None, :, None] + 0.5
            xs = torch.arange(w, dtype=torch.float32)[None, None, :] + 0.5
            c, r = (boxes[:, :2] + boxes[:, 2:]) / 2, (boxes[:, 2:] - boxes[:, :2]) / 2
            inside = ((xs - c[:, 0, None, None]) / r[:, 0, None, None]) ** 2 + (
                (ys - c[:, 1, None, None]) / r[:, 1, None, None]
            ) ** 2 <= 1
            target["masks"] = inside.to(torch.uint8).to(s.device)
        targets.append(target)
    return images, targets


class Runner:
    """Times one detector; `step_train()`/`step_infer()` each run and time one iteration.

    With `s.compile` the whole detector runs compiled (`resdet.deploy.compile.compile_detector`) and
    each phase's graphs, graph breaks and recompilations are recorded in `result.compile_stats`.
    """

    def __init__(self, model: nn.Module, s: BenchSettings, label_offset: int = 0) -> None:
        self.s = s
        self.model = model.to(s.device)
        if s.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        if s.compile:
            self.model = compile_detector(self.model, backend=s.compile_backend)
        self.images, targets = synthetic_batch(s)
        # torchvision detectors reserve label 0 for background
        self.targets = [{**t, "labels": t["labels"] + label_offset} for t in targets]
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.SGD(params, lr=1e-4, momentum=0.9)
        self.scaler = torch.amp.GradScaler(enabled=s.amp == "fp16")
        self.result = BenchResult()
        self._train_peak = 0.0
        self._infer_peak = 0.0
        self._compiled = {"train": CompileStats(), "infer": CompileStats()}

    def step_train(self) -> tuple[float, float]:
        """One training iteration (forward, backward, optimizer step) -> (wall s, process CPU s)."""
        self.model.train()

        def body() -> None:
            with autocast(self.s.amp, torch.device(self.s.device)):
                losses = self.model(self.images, self.targets)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(sum(losses.values())).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()

        dt, dc, peak = self._timed(body, "train")
        self._train_peak = max(self._train_peak, peak)
        return dt, dc

    def step_infer(self) -> tuple[float, float]:
        """One inference iteration under ``no_grad`` -> (wall s, process CPU s)."""
        self.model.eval()

        @torch.no_grad()
        def body() -> None:
            with autocast(self.s.amp, torch.device(self.s.device)):
                self.model(self.images)

        dt, dc, peak = self._timed(body, "infer")
        self._infer_peak = max(self._infer_peak, peak)
        return dt, dc

    def _timed(self, body: Callable[[], None], phase: str) -> tuple[float, float, float]:
        """Run ``body`` between device syncs -> (wall s, process CPU s, peak memory MB); what it
        compiled is added to ``phase``'s compile figures."""
        before = CompileStats.snapshot()
        t = timing.timed(body, self.s.device, reset_peak=True)
        self._compiled[phase] += CompileStats.snapshot() - before
        return t.wall_s, t.cpu_s, timing.peak_memory_mb(self.s.device)

    def finish(self) -> BenchResult:
        r, b = self.result, self.s.batch_size
        r.train_images_per_s = b / timing.median(r.train_times_s)
        r.infer_images_per_s = b / timing.median(r.infer_times_s)
        r.infer_latency_ms = 1000 * timing.median(r.infer_times_s) / b
        r.peak_memory_train_mb = self._train_peak
        r.peak_memory_infer_mb = self._infer_peak
        if self.s.compile:
            r.compile_stats = {phase: c.as_dict() for phase, c in self._compiled.items()}
        return r


def paired_ratios(ours: BenchResult, reference: BenchResult) -> dict[str, float]:
    """Ours/reference throughput: of medians, median of per-round ratios, and of median CPU time.

    Rounds are interleaved, so a per-round ratio compares two runs made under the same load.
    """

    def per_round(a: list[float], b: list[float]) -> float:
        return timing.median(y / x for x, y in zip(a, b))

    return {
        "train": ours.train_images_per_s / reference.train_images_per_s,
        "infer": ours.infer_images_per_s / reference.infer_images_per_s,
        "train_per_round": per_round(ours.train_times_s, reference.train_times_s),
        "infer_per_round": per_round(ours.infer_times_s, reference.infer_times_s),
        "train_cpu": timing.median(reference.train_cpu_s) / timing.median(ours.train_cpu_s),
        "infer_cpu": timing.median(reference.infer_cpu_s) / timing.median(ours.infer_cpu_s),
    }


def interleaved(
    runners: dict[str, Runner], s: BenchSettings, progress: Callable[[str], None] = lambda _: None
) -> dict[str, BenchResult]:
    """Warm up, then alternate one timed train and infer iteration per runner, `s.iters` rounds
    (`resdet.benchmarks.timing.interleaved`).

    Interleaving puts every runner under the same thermal, cache and background-load conditions.
    """
    steps = {name: (lambda r=r: (r.step_train(), r.step_infer())) for name, r in runners.items()}
    rounds = timing.interleaved(steps, s.iters, warmup=s.warmup, progress=progress)
    for name, r in runners.items():
        for (train_wall, train_cpu), (infer_wall, infer_cpu) in rounds[name]:
            r.result.train_times_s.append(train_wall)
            r.result.train_cpu_s.append(train_cpu)
            r.result.infer_times_s.append(infer_wall)
            r.result.infer_cpu_s.append(infer_cpu)
    return {name: r.finish() for name, r in runners.items()}


def peak_tflops(s: BenchSettings) -> float | None:
    """The device's dense peak for the benchmark's precision:
    `--peak-tflops`, else the known table."""
    if s.peak_tflops is not None:
        return s.peak_tflops
    if not s.device.startswith("cuda"):
        return None
    name = torch.cuda.get_device_name()
    for key, (half, fp32) in KNOWN_PEAK_TFLOPS.items():
        if key in name:
            return half if s.amp in ("bf16", "fp16") else fp32
    return None


def add_mfu(r: BenchResult, s: BenchSettings) -> None:
    """Model-FLOPs utilisation; training counts 3x the forward FLOPs (forward + 2x backward)."""
    peak = peak_tflops(s)
    if peak is None or r.gflops_per_image is None:
        return
    # fvcore counts multiply-adds; hardware peaks count multiply and add separately.
    flops = 2 * r.gflops_per_image * 1e9
    r.mfu_infer = flops * r.infer_images_per_s / (peak * 1e12)
    r.mfu_train = 3 * flops * r.train_images_per_s / (peak * 1e12)


def torchvision_reference(s: BenchSettings) -> nn.Module:
    """torchvision's `fasterrcnn_resnet50_fpn` architecture (`maskrcnn_resnet50_fpn` with
    `s.masks`), set up like ours for a fair race.

    Frozen BN and the first two stages frozen (torchvision's own choice for pretrained backbones),
    resizing pinned to `image_size` so both detectors see identical tensors.
    """
    from torchvision.models import resnet50
    from torchvision.models.detection import FasterRCNN, MaskRCNN
    from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
    from torchvision.ops import FrozenBatchNorm2d

    torch.manual_seed(s.seed)
    body = _resnet_fpn_extractor(resnet50(norm_layer=FrozenBatchNorm2d), trainable_layers=3)
    return (MaskRCNN if s.masks else FasterRCNN)(
        body, num_classes=s.num_classes + 1, min_size=min(s.image_size), max_size=max(s.image_size)
    )


def share_weights(ours: nn.Module, reference: nn.Module) -> bool:
    """Load the torchvision reference's weights into ours when the architectures match.

    Random initialisations differ, and with them how many proposals survive NMS, which changes
    how much work the RoI heads do; identical weights make both detectors compute the same
    function, so the race measures the implementations only. Returns False (ours unchanged) when
    ours cannot take torchvision's weights (another architecture).
    """
    from resdet.io.checkpoints import load_detector_state

    try:
        load_detector_state(ours, reference.state_dict(), "the torchvision reference")
    except ValueError:
        return False
    return True


def size_overrides(
    image_size: tuple[int, int], train_sizes: Sequence[int] | None = None
) -> list[str]:
    """Config overrides that make our detector keep an (h, w) `image_size` input at that size;
    with `train_sizes`, training instead resizes each image to a short side drawn from them
    (multi-scale training), the long side scaled alike."""
    short, long = min(image_size), max(image_size)
    sizes = list(train_sizes or [short])
    return [
        f"model.input.min_size_train=[{','.join(str(v) for v in sizes)}]",
        f"model.input.max_size_train={math.ceil(long * max(sizes) / short)}",
        f"model.input.min_size_test={short}",
        f"model.input.max_size_test={long}",
    ]

#!/usr/bin/env python
"""Speed, memory, FLOPs and utilisation of a detector config, optionally raced against torchvision.

    python tools/benchmark.py configs/frcnn_r50_fpn_coco.yaml --compare torchvision \
        --device cpu --image-size 512 --batch-size 2 --iters 5 --json bench.json

The measuring is resdet.benchmarks.speed's (timing: resdet.benchmarks.timing; FLOPs:
resdet.benchmarks.flops). Accuracy, ours and torchvision's trained side by side, is
tools/accuracy_bench.py's.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from dataclasses import asdict
from pathlib import Path

import torch

from resdet.benchmarks.flops import count_flops
from resdet.benchmarks.speed import (
    BenchResult,
    BenchSettings,
    Runner,
    add_mfu,
    interleaved,
    paired_ratios,
    share_weights,
    size_overrides,
    torchvision_reference,
)
from resdet.config import load_config
from resdet.utils.cli import run_tool

#: what `--accuracy` (ours and torchvision's trained side by side) became
MOVED_ACCURACY = "python tools/accuracy_bench.py CONFIG [--seeds ...] [--output-dir DIR]"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("config", help="detector recipe (YAML)")
    p.add_argument(
        "--compare",
        choices=["torchvision"],
        help="race torchvision's Faster R-CNN R50-FPN (its Mask R-CNN for a mask config)",
    )
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--amp", choices=["none", "bf16", "fp16"], default="none")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile each whole detector (resdet.deploy.compile.compile_detector) and "
        "report its "
        "graphs, graph breaks and recompilations",
    )
    p.add_argument(
        "--compile-backend",
        default="inductor",
        help="--compile: the torch.compile backend (aot_eager: capture only, no code generation)",
    )
    p.add_argument(
        "--image-size",
        type=image_size,
        default=(512, 512),
        metavar="S|HxW",
        help="synthetic image size in pixels: a square side (512) or height x width (800x1333)",
    )
    p.add_argument(
        "--train-sizes",
        type=int,
        nargs="+",
        metavar="SHORT",
        help="multi-scale training: resize each training image to a short side drawn from these "
        "(default: keep --image-size); not with --compare",
    )
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--iters", type=int, default=5, help="timed iterations (after --warmup)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument(
        "--no-flops",
        action="store_true",
        help="skip the FLOP count (resdet.benchmarks.flops: fvcore, RoI heads at the full "
        "proposal budget)",
    )
    p.add_argument(
        "--peak-tflops", type=float, help="device peak for MFU (default: known-GPU table)"
    )
    p.add_argument("--json", type=Path, help="write the figures here")
    p.add_argument(
        "overrides",
        nargs="*",
        help="config overrides key.sub=value, e.g. "
        "model.backbone.fold_frozen_bn=false model.input.channels_last=false",
    )
    if "--accuracy" in (sys.argv[1:] if argv is None else argv):
        p.error(f"--accuracy is its own tool now: {MOVED_ACCURACY}")
    return p.parse_intermixed_args(argv)


def image_size(text: str) -> tuple[int, int]:
    """'512' -> (512, 512); '800x1333' -> (800, 1333)."""
    try:
        sides = tuple(int(v) for v in text.lower().split("x"))
    except ValueError:
        sides = ()
    if len(sides) not in (1, 2) or min(sides) <= 0:
        raise argparse.ArgumentTypeError(f"expected a side or HEIGHTxWIDTH in pixels, got {text!r}")
    return (sides[0], sides[-1])


def build_ours(config: str, overrides: list[str], s: BenchSettings) -> torch.nn.Module:
    from resdet import build_model

    cfg = load_config(config, size_overrides(s.image_size, s.train_sizes) + list(overrides))
    torch.manual_seed(s.seed)
    return build_model(cfg, num_classes=s.num_classes, load_weights=False)


def table(results: dict[str, BenchResult]) -> str:
    rows = [("", *results)]

    def fmt(v: float | None, spec: str) -> str:
        return "-" if v is None else format(v, spec)

    for label, key, spec in [
        ("train images/s", "train_images_per_s", ".2f"),
        ("infer images/s", "infer_images_per_s", ".2f"),
        ("infer latency ms/img", "infer_latency_ms", ".1f"),
        ("peak memory train MB", "peak_memory_train_mb", ".0f"),
        ("peak memory infer MB", "peak_memory_infer_mb", ".0f"),
        ("GFLOPs/image (fvcore)", "gflops_per_image", ".1f"),
        ("MFU train", "mfu_train", ".3f"),
        ("MFU infer", "mfu_infer", ".3f"),
    ]:
        rows.append((label, *(fmt(getattr(r, key), spec) for r in results.values())))
    if all(r.compile_stats is not None for r in results.values()):
        for phase in ("train", "infer"):
            for label, key in [
                ("graphs", "graphs"),
                ("graph breaks", "graph_breaks"),
                ("recompiles", "recompiles"),
            ]:
                rows.append(
                    (
                        f"compiled {phase}: {label}",
                        *(str(r.compile_stats[phase][key]) for r in results.values()),
                    )
                )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths)))
        for r in rows
    )


def main(argv: list[str] | None = None) -> dict:
    a = parse_args(argv)
    s = BenchSettings(
        device=a.device,
        amp=a.amp,
        channels_last=a.channels_last,
        compile=a.compile,
        compile_backend=a.compile_backend,
        image_size=a.image_size,
        train_sizes=tuple(a.train_sizes) if a.train_sizes else None,
        batch_size=a.batch_size,
        iters=a.iters,
        warmup=a.warmup,
        peak_tflops=a.peak_tflops,
        masks=load_config(a.config, list(a.overrides)).model.mask_head.enabled,
    )
    models = {"ours": build_ours(a.config, a.overrides, s)}
    offsets = {"ours": 0}
    same_weights = False
    if a.compare == "torchvision":
        models["torchvision"] = torchvision_reference(s)
        offsets["torchvision"] = 1
        same_weights = share_weights(models["ours"], models["torchvision"])
    runners = {k: Runner(m, s, label_offset=offsets[k]) for k, m in models.items()}
    results = interleaved(
        runners, s, progress=lambda msg: print(f"[benchmark] {msg}", file=sys.stderr)
    )
    if not a.no_flops:
        for name, m in models.items():
            results[name].gflops_per_image = count_flops(m, s.image_size, s.device).total
    for r in results.values():
        add_mfu(r, s)
    device_name = (
        torch.cuda.get_device_name()
        if s.device.startswith("cuda")
        else platform.processor() or "cpu"
    )
    out: dict = {
        "config": a.config,
        "overrides": a.overrides,
        "settings": asdict(s),
        "device": device_name,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }
    if a.compare:
        out["same_weights"] = same_weights
    out.update({k: asdict(r) for k, r in results.items()})
    if "torchvision" in results:
        ours, tv = results["ours"], results["torchvision"]
        out["ratio"] = paired_ratios(ours, tv)
    print(
        f"{a.config}  device={device_name}  image={s.image_size[0]}x{s.image_size[1]}px  "
        f"batch={s.batch_size}  "
        f"amp={s.amp}" + (f"  compile={s.compile_backend}" if s.compile else "")
    )
    print(table(results))
    if "ratio" in out:
        print(f"same weights as torchvision: {same_weights}")
        q = out["ratio"]
        print(
            f"ratio ours/torchvision: train {q['train']:.3f}x  infer {q['infer']:.3f}x  "
            f"(median of per-round ratios: train {q['train_per_round']:.3f}x  "
            f"infer {q['infer_per_round']:.3f}x; by process CPU "
            f"time: train {q['train_cpu']:.3f}x  infer {q['infer_cpu']:.3f}x)"
        )
    if a.json:
        a.json.write_text(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    run_tool(main, "benchmark")

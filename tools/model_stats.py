"""Parameter count and fvcore FLOPs of a detector built from a config (random weights).

    python tools/model_stats.py configs/frcnn_r50_fpn_coco.yaml --size 800 1333
    # torchvision's fasterrcnn_resnet50_fpn
    python tools/model_stats.py --torchvision --size 800 800

FLOPs come from `resdet.benchmarks.flops.count_flops` (fvcore, on the unmodified model), the counter
tools/benchmark.py uses too: one fused multiply-add is one FLOP, as in torchvision's published
detection figures, and the RoI heads are counted for the full test-time proposal budget
(post_nms_top_n), as with trained weights, whatever a random model's NMS keeps.
"""

from __future__ import annotations

import argparse

import torch
from torch import nn

from resdet.benchmarks.flops import count_flops
from resdet.utils.cli import run_tool


def count(model: nn.Module, height: int, width: int) -> tuple[float, int]:
    """-> (GFLOPs of one forward on a (3, height, width) image, proposals given to the RoI head)."""
    flops = count_flops(model, (height, width))
    return flops.total, flops.regions


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("config", nargs="?", help="detection YAML recipe")
    p.add_argument("overrides", nargs="*", metavar="key.sub=value")
    p.add_argument("--size", nargs=2, type=int, default=(800, 1333), metavar=("H", "W"))
    p.add_argument("--num-classes", type=int, default=80)
    p.add_argument(
        "--torchvision", action="store_true", help="measure torchvision's fasterrcnn_resnet50_fpn"
    )
    args = p.parse_intermixed_args(argv)
    torch.manual_seed(0)
    h, w = args.size
    if args.torchvision:
        from torchvision.models.detection import fasterrcnn_resnet50_fpn

        model, name = (
            fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None),
            "torchvision fasterrcnn_resnet50_fpn",
        )
    elif args.config:
        from resdet import build_model, load_config

        model = build_model(
            load_config(args.config, args.overrides),
            num_classes=args.num_classes,
            load_weights=False,
        )
        name = args.config
    else:
        p.error("give a CONFIG or --torchvision")
    params = sum(q.numel() for q in model.parameters())
    gflops, proposals = count(model, h, w)
    print(
        f"{name}: {params / 1e6:.2f} M parameters, {gflops:.2f} GFLOPs (fvcore) "
        f"on a {h}x{w} image, "
        f"{proposals} proposals into the RoI head"
    )


if __name__ == "__main__":
    run_tool(main, "model_stats")

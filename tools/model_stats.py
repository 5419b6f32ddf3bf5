"""Parameter count and fvcore FLOPs of a detector built from a config (random weights).

    python tools/model_stats.py configs/frcnn_r50_fpn_coco.yaml --size 800 1333
    python tools/model_stats.py --torchvision --size 800 800      # torchvision's fasterrcnn_resnet50_fpn

fvcore counts one fused multiply-add as one FLOP (its "GFLOPs" are GMACs), as do torchvision's
published detection figures. The RoI-head cost depends on how many proposals survive the RPN's NMS,
which random weights do not control, so the RPN's NMS is switched off while counting: the RoI head
then runs on its full test-time proposal budget (post_nms_top_n), as with trained weights.
"""
from __future__ import annotations

import argparse
import warnings

import torch
from torch import nn


def count(model: nn.Module, height: int, width: int) -> tuple[float, int]:
    """-> (GFLOPs of one forward on a (3, height, width) image, proposals given to the RoI head)."""
    from fvcore.nn import FlopCountAnalysis

    seen: list[int] = []
    pooler = model.roi_heads.box_roi_pool if hasattr(model.roi_heads, "box_roi_pool") else model.roi_heads.pooler
    hook = pooler.register_forward_hook(lambda m, args, out: seen.append(out.shape[0]))
    model.eval()
    # Random deep nets without trained normalisation overflow (no proposal would survive): start every
    # residual branch at zero, as zero_init_residual does; the FLOPs do not depend on the values.
    for block in model.modules():
        if hasattr(block, "last_norm"):
            norm = block.last_norm()
            (norm.weight.data if isinstance(norm.weight, nn.Parameter) else norm.weight).zero_()
    model.rpn.nms_thresh = 1.0   # IoU never exceeds 1: every proposal up to post_nms_top_n survives
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        flops = FlopCountAnalysis(model, ([torch.rand(3, height, width)],))
        flops.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        total = flops.total()
    hook.remove()
    return total / 1e9, seen[-1] if seen else 0


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", nargs="?", help="detection YAML recipe")
    p.add_argument("overrides", nargs="*", metavar="key.sub=value")
    p.add_argument("--size", nargs=2, type=int, default=(800, 1333), metavar=("H", "W"))
    p.add_argument("--num-classes", type=int, default=80)
    p.add_argument("--torchvision", action="store_true", help="measure torchvision's fasterrcnn_resnet50_fpn")
    args = p.parse_intermixed_args(argv)
    torch.manual_seed(0)
    h, w = args.size
    if args.torchvision:
        from torchvision.models.detection import fasterrcnn_resnet50_fpn
        model, name = fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None), "torchvision fasterrcnn_resnet50_fpn"
    elif args.config:
        from resdet import build_model, load_config
        model = build_model(load_config(args.config, args.overrides), num_classes=args.num_classes,
                            load_weights=False)
        name = args.config
    else:
        p.error("give a CONFIG or --torchvision")
    params = sum(q.numel() for q in model.parameters())
    gflops, proposals = count(model, h, w)
    print(f"{name}: {params / 1e6:.2f} M parameters, {gflops:.2f} GFLOPs (fvcore) on a {h}x{w} image, "
          f"{proposals} proposals into the RoI head")


if __name__ == "__main__":
    main()

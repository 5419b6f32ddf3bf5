"""Export a trained detector to ONNX: one image in, final detections out.

    python tools/export.py configs/demo_shapes.yaml --weights output/demo_shapes/model_final.pth \
        --format onnx [--output model.onnx] [--opset 17] [--check] [key.sub=value ...]

The graph takes ``image`` (3, H, W) float32 RGB in 0..1, any H and W, and returns ``boxes``
(D, 4) xyxy in the image's pixels, ``scores`` (D,) and ``labels`` (D,) int64 (0-based, into the
checkpoint's class names): resizing, NMS, the score threshold and the top-k are inside (see
`resdet.deploy.export`). Arguments of the form key.sub=value are config overrides (e.g.
model.roi_heads.score_thresh=0.3 bakes another threshold into the graph). `--check` runs the file
with onnxruntime on the CPU and prints its size, the median latency of 5 runs against the eager
detector's on the same random image, and their largest differences. Writes `--output` (default
`<output_dir>/model.onnx`; its folder is created and checked writable before the model is
built). Exit code 0 on success, 2 for bad input (a config, a checkpoint, an output that cannot be
written), 1 otherwise.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from resdet.config import load_config
from resdet.deploy.export import MIN_OPSET, check_onnx, export_onnx
from resdet.deploy.predict import load_predictor
from resdet.utils.atomic import OutputDirError, ensure_writable_dir
from resdet.utils.cli import run_tool


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("config", help="YAML config the checkpoint was trained with")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides")
    p.add_argument("--weights", required=True, help="detector checkpoint (model_final.pth, ...)")
    p.add_argument("--format", choices=["onnx"], default="onnx", help="export format (onnx)")
    p.add_argument("--output", help="file to write (default <output_dir>/model.onnx)")
    p.add_argument(
        "--opset", type=int, default=MIN_OPSET, help=f"ONNX opset (>= {MIN_OPSET}, default)"
    )
    p.add_argument(
        "--check", action="store_true", help="time onnxruntime against eager PyTorch after export"
    )
    p.add_argument(
        "--check-size",
        type=int,
        nargs=2,
        default=(480, 640),
        metavar=("H", "W"),
        help="size of the random image --check runs on (default 480 640)",
    )
    args = p.parse_intermixed_args(argv)
    bad = [o for o in args.overrides if "=" not in o]
    if bad:
        p.error(f"overrides must be key.sub=value, got {' '.join(bad)}")
    if args.opset < MIN_OPSET:
        p.error(f"--opset must be >= {MIN_OPSET}, got {args.opset}")
    return args


def main(argv: list[str] | None = None) -> Path:
    args = parse_args(argv)
    cfg = load_config(args.config, args.overrides)
    output = Path(args.output) if args.output else Path(cfg.output_dir) / "model.onnx"
    if output.is_dir():
        raise OutputDirError(f"--output {output} is a folder; give the file to write")
    ensure_writable_dir(output.parent, "the folder of --output" if args.output else "output_dir")
    predictor = load_predictor(cfg, args.weights, "cpu")
    path = export_onnx(predictor.model, output, opset=args.opset)
    print(f"wrote {path} (ONNX opset {args.opset}, {len(predictor.class_names)} classes)")
    if args.check:
        image = torch.rand(3, *args.check_size, generator=torch.Generator().manual_seed(0))
        c = check_onnx(predictor.model, path, image)
        print(
            f"size {c.size_mb:.1f} MB; latency on one {args.check_size[0]}x{args.check_size[1]} "
            f"image (median of 5, {torch.get_num_threads()} threads): onnxruntime CPU "
            f"{c.onnx_ms:.1f} ms, eager PyTorch {c.eager_ms:.1f} ms; {c.num_detections} "
            f"detection(s), {'same count' if c.same_count else 'DIFFERENT COUNT'}, max |box "
            f"diff| {c.max_box_diff:.2e} px, max |score diff| {c.max_score_diff:.2e}"
        )
    return path


def cli() -> int:
    main(sys.argv[1:])
    return 0


if __name__ == "__main__":
    run_tool(cli, "export", expected=(ValueError, FileNotFoundError))

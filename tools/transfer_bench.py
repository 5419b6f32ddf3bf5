"""Judge backbone checkpoints by fine-tuning each under a fixed detection protocol.

    python tools/transfer_bench.py --protocol bccd_r18_fpn \
        --weights random resdet:shapes_r18 output/cls_cifar/model_final.pth --seeds 2
    python tools/transfer_bench.py --protocol shapes_r18_fpn --weights random resdet:shapes_r18

Protocols are configs/transfer/<name>.yaml: everything but the backbone weights is fixed, and
key=value overrides are refused unless --allow-overrides is given (they are then recorded in the
outputs). Each weight source (a path, torchvision:<name>, timm:<name>, resdet:<name>, or random)
and seed is one run under --output-dir; re-running continues where a killed benchmark stopped.
Writes transfer.json, transfer.md and transfer.png there and prints the table. Exit code 0 when
every source finished, 1 when some failed (their rows hold the error), 2 for missing inputs or a
bad protocol.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from resdet.benchmarks.transfer import (
    missing_inputs,
    protocol_path,
    run_transfer,
    transfer_table,
    write_outputs,
)
from resdet.config import ConfigError, load_config
from resdet.utils.cli import run_tool


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--protocol", required=True, help="a configs/transfer/<name>.yaml name")
    p.add_argument(
        "--weights", nargs="+", required=True, metavar="SRC", help="weight sources, or random"
    )
    p.add_argument("--seeds", type=int, default=1, help="runs per source (seeds 0..N-1)")
    p.add_argument(
        "--output-dir", type=Path, help="default: the protocol's output_dir (output/transfer/NAME)"
    )
    p.add_argument(
        "--allow-overrides",
        action="store_true",
        help="accept key=value overrides that change the protocol",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("overrides", nargs="*", metavar="key.sub=value")
    args = p.parse_intermixed_args(argv)
    # `--weights a b key=value`: a weight source never contains "=", an override always does
    args.overrides += [w for w in args.weights if "=" in w]
    args.weights = [w for w in args.weights if "=" not in w]
    if not args.weights:
        p.error("--weights needs at least one weight source")
    if args.overrides and not args.allow_overrides:
        p.error(
            f"{' '.join(args.overrides)}: a protocol is fixed; pass --allow-overrides to change it "
            "(the outputs then record the change)"
        )
    if args.seeds < 1:
        p.error(f"--seeds must be at least 1, got {args.seeds}")
    return args


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    try:
        problems = missing_inputs(a.protocol, a.weights, a.overrides)
        root = a.output_dir or Path(load_config(protocol_path(a.protocol), a.overrides).output_dir)
    except ConfigError as e:
        print(f"transfer_bench: error: {e}", file=sys.stderr)
        return 2
    if problems:
        print(
            f"transfer_bench: {len(problems)} input(s) missing for protocol {a.protocol}; "
            "nothing was started:",
            file=sys.stderr,
        )
        for line in problems:
            print(f"  {line}", file=sys.stderr)
        return 2
    rows = run_transfer(
        a.protocol,
        a.weights,
        seeds=list(range(a.seeds)),
        root=root,
        overrides=a.overrides,
        progress=not a.no_progress,
    )
    paths = write_outputs(rows, root, a.protocol, a.overrides)
    print(f"\ntransfer protocol {a.protocol}, {a.seeds} seed(s) (percent, mean ± spread):")
    print(transfer_table(rows))
    print(f"written: {', '.join(str(p) for p in paths.values())}")
    return 1 if any(r.error for r in rows) else 0


if __name__ == "__main__":
    run_tool(main, "transfer_bench")

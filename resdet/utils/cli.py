"""The command-line options that the training tools (tools/train_det.py, tools/pretrain_cls.py)
share: where the run goes, resuming it, evaluating only, the progress bar."""

from __future__ import annotations

import argparse


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    """--output-dir, --resume, --eval-only, --weights and --no-progress on `p`."""
    p.add_argument("--output-dir", help="overrides output_dir")
    p.add_argument(
        "--resume", action="store_true", help="continue from output_dir's last checkpoint"
    )
    p.add_argument(
        "--eval-only",
        action="store_true",
        help="only evaluate (--weights, else the run's final model)",
    )
    p.add_argument("--weights", help="checkpoint to evaluate with --eval-only")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run_overrides(
    p: argparse.ArgumentParser, args: argparse.Namespace, overrides: list[str], weights_key: str
) -> list[str]:
    """`overrides` with `output_dir=` from --output-dir appended; --weights without --eval-only is
    a usage error that names `weights_key`, the config key that starts training from weights."""
    if args.weights and not args.eval_only:
        p.error(
            f"--weights is for --eval-only; to start training from weights set {weights_key}=<path>"
        )
    return overrides + ([f"output_dir={args.output_dir}"] if args.output_dir else [])


def one_line_warnings() -> None:
    """Show resdet's dataset warnings (what a reader dropped or left out) as `warning: <message>`
    instead of Python's `<file>:<line>: DatasetWarning: <message>` plus the source line; every other
    warning keeps Python's format."""
    import warnings

    from resdet.data.errors import DatasetWarning

    default = warnings.formatwarning

    def fmt(message, category, filename, lineno, line=None) -> str:  # noqa: ANN001
        if issubclass(category, DatasetWarning):
            return f"warning: {message}\n"
        return default(message, category, filename, lineno, line)

    warnings.formatwarning = fmt

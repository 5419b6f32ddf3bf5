"""What the command lines in tools/ share: their one entry helper (`run_tool`), the options of the
training tools (tools/train_det.py, tools/pretrain_cls.py: where the run goes, resuming it,
evaluating only, the progress bar), and dataset warnings in one line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import NoReturn


def run_tool(
    main: Callable[[], object], prog: str, expected: tuple[type[BaseException], ...] | None = None
) -> NoReturn:
    """The entry point of every tool: dataset warnings in one line, then `main()` under
    `resdet.utils.dist.exit_on_failure`: bad input (`expected`, default a config, a dataset, an
    image file, a weights file that cannot be read, an output folder that cannot be written, or
    training stopped early: `resdet.engine.errors.TrainingStopped`) is one `<prog>: error: ...`
    line and exit code 2, any other failure code 1; training interrupted by SIGINT/SIGTERM is one
    `<prog>: interrupted at ...` line and exit code 130/143; an int `main()` returns is the exit
    code, anything else 0."""
    from backbones.weights.files import WeightsFileError
    from resdet.config import ConfigError
    from resdet.data.errors import DatasetError
    from resdet.data.image_io import BadImageError
    from resdet.engine.errors import TrainingInterrupted, TrainingStopped
    from resdet.utils.atomic import OutputDirError
    from resdet.utils.dist import exit_on_failure

    one_line_warnings()
    if expected is None:
        expected = (
            ConfigError,
            DatasetError,
            BadImageError,
            WeightsFileError,
            OutputDirError,
            TrainingStopped,
        )

    def interruptible() -> object:
        try:
            return main()
        except TrainingInterrupted as e:  # its checkpoint is written: a message, not a failure
            sys.stdout.flush()
            print(f"{prog}: {e}", file=sys.stderr, flush=True)
            return e.exit_code

    code = exit_on_failure(interruptible, expected=expected, prog=prog)
    sys.exit(code if isinstance(code, int) else 0)


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    """--output-dir, --resume, --overwrite, --eval-only, --weights and --no-progress on `p`."""
    p.add_argument("--output-dir", help="overrides output_dir")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in output_dir from its last checkpoint (from scratch if none yet)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="start over in an output_dir that already holds a run (its files are removed)",
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

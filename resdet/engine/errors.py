"""Why training stopped early, as exceptions the command lines report.

- `TrainingStopped` (and its subclasses): the run cannot go on as configured; the message is one
  line that names the iteration and the checkpoint to resume from. `resdet.utils.cli.run_tool`
  reports it as `<tool>: error: <message>`, exit code 2, no traceback.
- `TrainingInterrupted`: SIGINT or SIGTERM; a checkpoint of the current iteration was written.
  `run_tool` prints `<tool>: <message>` and exits with `exit_code` (128 + the signal number: 130,
  143), as a shell reports a process ended by that signal.
"""

from __future__ import annotations

from pathlib import Path


class TrainingStopped(Exception):
    """Training stopped before `max_iter`; the one-line message says where and what survives."""


class NonFiniteLossError(FloatingPointError, TrainingStopped):
    """A loss became NaN or infinite; the message gives the iteration and every loss value."""


class NonFiniteStepsError(FloatingPointError, TrainingStopped):
    """`solver.max_nonfinite_steps` steps in a row had non-finite gradients and were skipped."""


class NonFiniteStateError(FloatingPointError, TrainingStopped):
    """The training state to checkpoint holds a NaN or an infinity; nothing was written."""


class TrainingInterrupted(Exception):
    """SIGINT/SIGTERM: `checkpoint` holds iteration `iteration`; `exit_code` is 128 + signal."""

    def __init__(self, signum: int, iteration: int, checkpoint: Path) -> None:
        self.signum, self.iteration, self.checkpoint = signum, iteration, checkpoint
        self.exit_code = 128 + signum
        super().__init__(
            f"interrupted at iteration {iteration}: checkpoint {checkpoint}; --resume continues"
        )

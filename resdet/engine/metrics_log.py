"""Training log sinks on the main process: `metrics.jsonl`, TensorBoard events, a tqdm bar (ETA).

The file layout is `resdet.io.run_dir`'s; this module only appends to it.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

from tqdm import tqdm

from resdet.io.run_dir import metrics_log_line, metrics_log_path, reset_metrics_log


class MetricsLog:
    """One JSON object per logged step in `output_dir/metrics.jsonl`, mirrored to TensorBoard.

    On resume from iteration `start_iter`, lines logged after it by the interrupted run are dropped
    (and TensorBoard purges its later events), so the files read as one uninterrupted run.
    """

    def __init__(
        self,
        output_dir: str | Path,
        *,
        max_iter: int,
        start_iter: int = 0,
        progress: bool = True,
        tensorboard: bool = True,
    ) -> None:
        self.path = metrics_log_path(output_dir)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        reset_metrics_log(output_dir, start_iter)
        self._file = self.path.open("a", encoding="utf-8")
        self._tb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter  # slow import, only where it is used

            self._tb = SummaryWriter(
                log_dir=str(output_dir), purge_step=start_iter + 1 if start_iter else None
            )
        # redirected to a file, a bar redrawn ten times a second would flood the log
        self._bar = tqdm(
            total=max_iter,
            initial=start_iter,
            disable=not progress,
            dynamic_ncols=True,
            desc="train",
            unit="it",
            mininterval=0.1 if sys.stderr.isatty() else 30.0,
        )

    def advance(self, n: int = 1, **postfix: float) -> None:
        """Move the progress bar (rate and ETA come from tqdm) and show `postfix` values."""
        self._bar.update(n)
        if postfix:
            self._bar.set_postfix({k: f"{v:.4g}" for k, v in postfix.items()}, refresh=False)

    def write(self, iteration: int, values: dict[str, Any]) -> None:
        """Append `{"iteration": iteration, **values}` and add each finite number to TensorBoard."""
        self._file.write(metrics_log_line(iteration, values))
        self._file.flush()
        if self._tb is not None:
            for k, v in values.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                    self._tb.add_scalar(k, v, iteration)
            self._tb.flush()

    def close(self) -> None:
        self._bar.close()
        self._file.close()
        if self._tb is not None:
            self._tb.close()

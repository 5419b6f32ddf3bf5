"""The iteration-based training loop: AMP, gradient accumulation and clipping, DDP, checkpoints,
periodic evaluation with the best model kept, logs, and exact resume.

Data contract. `data_loader` is an iterable (usually a `torch.utils.data.DataLoader`) that never
runs out and yields `(images, targets)` per rank: `images: list[Tensor[3, H, W]]` (float RGB 0..1)
and `targets: list[{"boxes": Tensor[N, 4] xyxy absolute pixels, "labels": Tensor[N]}]`. Each yielded
batch is one micro-batch: `solver.ims_per_batch = world_size * grad_accum * len(images)`.

Resuming the data order: `data_loader` may be a factory `start -> iterable`. `train()` calls it
with the number of batches this rank has already consumed (0 on a fresh run; one batch per
micro-step, so `iteration * grad_accum` after a resume); pass it to a sampler that skips that many
batches (e.g. `resdet.data.build_train_loader(..., start_iter=start)` with the per-micro-step global
batch `ims_per_batch // grad_accum`). The count is the trainer's, not a sampler's: a `DataLoader`
with workers pulls batches ahead of use. It is saved in the checkpoint as `sampler["position"]`.
A plain iterable is used as it is (its order does not resume).
Random augmentation resumes exactly when it runs in the main process (`num_workers=0`: the python,
numpy and torch RNG states are restored) or when it is derived from the sample, as
`resdet.data.build_train_loader` does for any `num_workers` (`resdet.data.samplers.SeededItems`:
the global generators seeded by the run seed and the sample's position); state kept inside worker
processes is not checkpointed.

Non-finite steps. After the backward pass (and unscaling, with fp16) a step whose gradients hold a
NaN or an infinity is skipped: no optimizer update (parameters and optimizer state stay; the batch
norm statistics of its forward pass are kept), but the iteration, the learning-rate schedule and the
data position advance, as when AMP's GradScaler skips a step.
Skips are counted (`skipped_steps` in metrics.jsonl, kept in checkpoints) and warned about on
stderr; `solver.max_nonfinite_steps` in a row stop the run (`NonFiniteStepsError`, naming the
iteration and the last checkpoint). With fp16, skips while the loss scale is above 1 are the
scaler finding its scale: counted, but not towards that limit. A non-finite *loss* stops the run
at once (`NonFiniteLossError`). No checkpoint holds a non-finite tensor (`Checkpointer.save`
refuses; `NonFiniteStateError`), so `last_checkpoint` always names a usable state.

Signals. While the loop runs, SIGINT and SIGTERM set a flag (handlers installed for the loop only,
the previous ones restored after); once the iteration in progress is done (with its evaluation or
checkpoint, if one is due), a checkpoint of it is written as any other (atomically, pointer moved)
and `TrainingInterrupted` is raised (exit code 128 + signal number from the tools). Under DDP the
ranks agree on the flag each iteration (one all-reduce), so all stop after the same iteration. A
second SIGINT stops at once (KeyboardInterrupt). During the final precise BN, checkpoint and
evaluation the previous handlers apply.

Model contract: `model(images, targets)` in train mode returns a dict of scalar loss tensors (the
torchvision detector API); the sum is minimised. The model is already on its device and, for DDP,
wrapped (see `resdet.engine.build.prepare_model`).
"""

from __future__ import annotations

import contextlib
import math
import resource
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import torch
import torch.distributed
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from resdet.config.solver import SolverConfig, TestConfig
from resdet.engine.errors import (
    NonFiniteLossError,
    NonFiniteStateError,
    NonFiniteStepsError,
    TrainingInterrupted,
)
from resdet.engine.metrics_log import MetricsLog
from resdet.engine.precise_bn import recompute_bn_stats
from resdet.engine.precision import autocast, check_amp, grad_scaler
from resdet.io.checkpoints import Checkpointer, NonFiniteCheckpointError
from resdet.io.run_dir import (
    BEST,
    FINAL,
    eval_dir,
    periodic_name,
    write_best_metric,
    write_evaluation,
)
from resdet.utils.atomic import atomic_torch_save
from resdet.utils.dist import (
    all_gather_object,
    all_reduce_mean,
    broadcast_object,
    get_rank,
    get_world_size,
)
from resdet.utils.seed import get_rng_state, set_rng_state

__all__ = [
    "Trainer",
    "unwrap",
    "NonFiniteLossError",
    "NonFiniteStepsError",
    "NonFiniteStateError",
    "TrainingInterrupted",
]

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a DDP wrapper (or `model` itself)."""
    return model.module if isinstance(model, DistributedDataParallel) else model


class Trainer:
    """Runs `max_iter` optimizer steps of `model` on batches from `data_loader`.

    Every rank constructs a Trainer and calls `train()`; only rank 0 writes files. Iterations are
    counted as completed optimizer steps: checkpoint `model_0000100.pth` holds the state after 100.
    `evaluate_fn()` is called on every rank (so it may shard and gather) and returns, on rank 0 at
    least, a flat `{metric: value}` dict; rank 0's dict is what counts.
    """

    def __init__(
        self,
        model: nn.Module,
        data_loader: Iterable | Callable[[int], Iterable],
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler,
        checkpointer: Checkpointer,
        *,
        solver: SolverConfig,
        test: TestConfig | None = None,
        output_dir: str | Path,
        evaluate_fn: Callable[[], dict[str, float]] | None = None,
        config: dict[str, Any] | None = None,
        pixel_format: dict[str, Any] | None = None,
        class_names: list[str] | None = None,
        device: torch.device | None = None,
        progress: bool = True,
        tensorboard: bool = True,
    ) -> None:
        """`solver` gives the schedule length, periods, precision, accumulation and clipping;
        `test` the evaluation period and the metric that picks `model_best.pth`. Both are checked
        where they are built (`SolverConfig`/`TestConfig`); only what depends on the device is
        checked here (fp16 needs CUDA)."""
        self.model, self.data_loader = model, data_loader
        self.optimizer, self.scheduler, self.checkpointer = optimizer, scheduler, checkpointer
        self.solver, self.test = solver, test if test is not None else TestConfig()
        self.output_dir = Path(output_dir)
        self.evaluate_fn = evaluate_fn
        self.device = device or next(unwrap(model).parameters()).device
        check_amp(solver.amp, self.device)
        self.scaler = grad_scaler(solver.amp, self.device)
        self.config = config or {}
        if pixel_format is None:  # a detector carries its input format (a `PixelFormat`)
            found = getattr(unwrap(model), "pixel_format", None)
            pixel_format = found.to_dict() if hasattr(found, "to_dict") else found
        self.pixel_format = pixel_format
        self.class_names = None if class_names is None else list(class_names)
        self.progress, self.tensorboard = progress, tensorboard
        self.rank, self.world_size = get_rank(), get_world_size()
        self.is_main = self.rank == 0
        self.iteration = 0  # completed optimizer steps
        self.best: dict[str, Any] | None = None
        self._consumed = 0  # batches this rank has taken from the data loader since training began
        self._pending_rng: dict[str, Any] | None = None
        self._log: MetricsLog | None = None
        self.skipped_steps = 0  # steps skipped for non-finite gradients since training began
        self._nonfinite_run = 0  # of them, in a row up to now (what max_nonfinite_steps limits)
        self._stop_signal = 0  # SIGINT/SIGTERM received during the loop (0: none)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """The full training state (`resdet.io.checkpoints`); a collective: every rank
        calls."""
        rng_ranks = all_gather_object(get_rng_state())
        return {
            **self._weights_state(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": rng_ranks[0],
            "rng_ranks": rng_ranks,
            "sampler": {"position": self._consumed},
            "nonfinite": {"skipped_steps": self.skipped_steps, "in_a_row": self._nonfinite_run},
        }

    def _weights_state(self) -> dict[str, Any]:
        return {
            "format": "resdet",
            "kind": "detector",
            "model": unwrap(self.model).state_dict(),
            "iteration": self.iteration,
            "best": self.best,
            "config": self.config,
            "pixel_format": self.pixel_format,
            "class_names": self.class_names,
        }

    def load_state_dict(self, ckpt: dict[str, Any]) -> None:
        """Restore everything `state_dict` saved; RNG states are applied when `train()` starts."""
        unwrap(self.model).load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        if ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
        self.iteration = int(ckpt["iteration"])
        self.best = ckpt.get("best")
        self._consumed = int(ckpt["sampler"]["position"])
        nonfinite = ckpt.get("nonfinite") or {}
        self.skipped_steps = int(nonfinite.get("skipped_steps", 0))
        self._nonfinite_run = int(nonfinite.get("in_a_row", 0))
        ranks = ckpt.get("rng_ranks") or [ckpt["rng"]]
        # With another world size the per-rank streams cannot be matched: the start seeds stay.
        self._pending_rng = ranks[self.rank] if len(ranks) == self.world_size else None

    def resume_or_load(self, resume: bool = True) -> bool:
        """With `resume`, load the checkpoint `last_checkpoint` names, if any; True if one was."""
        path = self.checkpointer.last() if resume else None
        if path is None:
            return False
        ckpt = self.checkpointer.load(path)
        saved = ckpt.get("pixel_format")
        if saved is not None and self.pixel_format is not None and saved != self.pixel_format:
            raise ValueError(
                f"{path}: trained on pixel format {saved}, but this model expects "
                f"{self.pixel_format}; resuming would silently change the inputs"
            )
        self.load_state_dict(ckpt)
        return True

    @property
    def batches_consumed(self) -> int:
        """Batches this rank took from the data loader since training began (resumed included)."""
        return self._consumed

    def save_checkpoint(self, name: str) -> Path:
        """Write the state to `output_dir/name`, point `last_checkpoint` at it (all ranks call).
        A state with a non-finite tensor is not written: `NonFiniteStateError`, on every rank."""
        try:
            return self.checkpointer.save(name, self.state_dict())
        except NonFiniteCheckpointError as e:
            raise NonFiniteStateError(
                f"the training state after iteration {self.iteration} holds non-finite values "
                f"({e.listed}): {e.path} not written; training stopped at iteration "
                f"{self.iteration}; last good checkpoint: {e.kept or 'none written yet'}"
            ) from None

    def _last_checkpoint_text(self) -> str:
        try:
            last = self.checkpointer.last()
        except FileNotFoundError as e:
            return f"none usable ({e})"
        return str(last) if last is not None else "none written yet"

    # ------------------------------------------------------------------ loop
    def train(self) -> dict[str, float]:
        """Train from `self.iteration` to `max_iter`; returns the final evaluation (or {})."""
        self.model.train()
        loader = self.data_loader
        if callable(loader) and not hasattr(loader, "__iter__"):
            loader = loader(self._consumed)
        data = iter(loader)
        # after iter(): creating the iterator draws from torch's RNG
        if self._pending_rng is not None:
            set_rng_state(self._pending_rng)
            self._pending_rng = None
        if self.is_main:
            self._log = MetricsLog(
                self.output_dir,
                max_iter=self.solver.max_iter,
                start_iter=self.iteration,
                progress=self.progress,
                tensorboard=self.tensorboard,
            )
        try:
            previous = self._install_signal_handlers()
            try:
                self._loop(data)
            finally:
                self._restore_signal_handlers(previous)
            self._precise_bn(data)
            self.save_checkpoint(FINAL)
            return self.evaluate() if self.evaluate_fn is not None else {}
        finally:
            if self._log is not None:
                self._log.close()
                self._log = None

    def _loop(self, data: Iterator) -> None:
        """The iterations up to `max_iter`, with their logs, evaluations and checkpoints; stops
        early (raising) after a stop signal or too many non-finite steps in a row."""
        window: list[dict[str, float]] = []
        while self.iteration < self.solver.max_iter:
            record = self._run_step(data)
            self.iteration += 1
            window.append(record)
            if self._log is not None:
                self._log.advance(total_loss=record["total_loss"], lr=record["lr"])
                if (
                    self.iteration % self.solver.log_period == 0
                    or self.iteration == self.solver.max_iter
                    or self._nonfinite_run >= self.solver.max_nonfinite_steps
                ):
                    summary = _window_summary(window, self.device)
                    summary["skipped_steps"] = self.skipped_steps
                    self._log.write(self.iteration, summary)
            if self.iteration % self.solver.log_period == 0:
                window.clear()
            self._check_nonfinite_run()
            saved = None
            if self.iteration < self.solver.max_iter:
                if self.test.eval_period and self.iteration % self.test.eval_period == 0:
                    self._precise_bn(data)
                    self.evaluate()
                if self.iteration % self.solver.checkpoint_period == 0:
                    saved = self.save_checkpoint(periodic_name(self.iteration))
            signum = self._agreed_stop_signal()
            if signum:
                # at max_iter too: a resumed run then does the final steps exactly as this one would
                if saved is None:
                    saved = self.save_checkpoint(periodic_name(self.iteration))
                raise TrainingInterrupted(signum, self.iteration, saved)

    # ------------------------------------------------------------------ signals
    def _install_signal_handlers(self) -> dict[int, Any] | None:
        """SIGINT/SIGTERM -> `_on_signal` (main thread only: elsewhere Python cannot install them);
        returns the previous handlers."""
        self._stop_signal = 0
        if threading.current_thread() is not threading.main_thread():
            return None
        previous = {sig: signal.getsignal(sig) for sig in _STOP_SIGNALS}
        for sig in _STOP_SIGNALS:
            signal.signal(sig, self._on_signal)
        return previous

    @staticmethod
    def _restore_signal_handlers(previous: dict[int, Any] | None) -> None:
        for sig, handler in (previous or {}).items():
            # None: a handler installed outside Python, which cannot be put back; use the default
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)

    def _on_signal(self, signum: int, frame: Any) -> None:
        if self._stop_signal and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now, without a checkpoint
        self._stop_signal = self._stop_signal or signum

    def _agreed_stop_signal(self) -> int:
        """The stop signal any rank received (the largest number; 0 for none), the same on all."""
        if self.world_size == 1:
            return self._stop_signal
        flag = torch.tensor([self._stop_signal], dtype=torch.int32, device=self.device)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        return int(flag.item())

    # ------------------------------------------------------------------ non-finite steps
    def _check_nonfinite_run(self) -> None:
        n = self._nonfinite_run
        if n < self.solver.max_nonfinite_steps:
            return
        raise NonFiniteStepsError(
            f"non-finite gradients in {n} steps in a row (iterations {self.iteration - n + 1}-"
            f"{self.iteration}, all skipped; solver.max_nonfinite_steps="
            f"{self.solver.max_nonfinite_steps}): training stopped "
            f"at iteration {self.iteration}; last good checkpoint: {self._last_checkpoint_text()}"
            " (lower solver.base_lr, or set solver.clip_grad_norm)"
        )

    def _skip_nonfinite_step(self, params: list[nn.Parameter]) -> None:
        """Count a step with non-finite gradients (which the caller skips) and say so on rank 0."""
        self.skipped_steps += 1
        # fp16: a scale above 1 overflowing is the scaler calibrating itself, not divergence
        if not self.scaler.is_enabled() or self.scaler.get_scale() <= 1.0:
            self._nonfinite_run += 1
        if self.is_main:
            names = {id(p): n for n, p in unwrap(self.model).named_parameters()}
            first = next(
                (names.get(id(p), "?") for p in params if p.grad is not None and not _finite(p)),
                "?",
            )
            sys.stdout.flush()
            print(
                f"warning: iteration {self.iteration + 1}: non-finite gradients (first in "
                f"{first}); step skipped ({self._nonfinite_run} in a row, "
                f"{self.skipped_steps} in all)",
                file=sys.stderr,
                flush=True,
            )

    def _run_step(self, data: Iterator) -> dict[str, float]:
        start = time.perf_counter()
        data_time = 0.0
        sums: dict[str, float] = {}
        ddp = isinstance(self.model, DistributedDataParallel)
        for micro in range(self.solver.grad_accum):
            t = time.perf_counter()
            images, targets = self._next_batch(data)
            data_time += time.perf_counter() - t
            last = micro == self.solver.grad_accum - 1
            with self.model.no_sync() if ddp and not last else contextlib.nullcontext():
                with autocast(self.solver.amp, self.device):
                    loss_dict = self.model(images, targets)
                if not isinstance(loss_dict, dict) or not loss_dict:
                    raise TypeError(
                        f"the model returned {type(loss_dict).__name__} in train mode; "
                        "expected a non-empty dict of loss tensors"
                    )
                total = sum(loss_dict.values())
                values = self._checked_losses(loss_dict, total, micro)
                self.scaler.scale(total / self.solver.grad_accum).backward()
            for k, v in values.items():
                sums[k] = sums.get(k, 0.0) + v / self.solver.grad_accum
        record = dict(sums)
        self.scaler.unscale_(self.optimizer)  # a no-op without fp16
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        finite = _all_finite_grads(params)
        if not finite:
            self._skip_nonfinite_step(params)  # before clipping spreads the NaN to every gradient
        if self.solver.clip_grad_norm is not None:
            record["grad_norm"] = float(
                torch.nn.utils.clip_grad_norm_(params, self.solver.clip_grad_norm)
            )
        record["lr"] = self.optimizer.param_groups[0]["lr"]
        if finite:
            self._nonfinite_run = 0
            self.scaler.step(self.optimizer)
        self.scaler.update()  # fp16: a skipped step lowers the scale (unscale_ saw the inf)
        self.optimizer.zero_grad(set_to_none=True)
        with warnings.catch_warnings():  # a skipped first step is not a misordered schedule
            warnings.filterwarnings("ignore", "Detected call of `lr_scheduler.step()` before")
            self.scheduler.step()
        record["time"] = time.perf_counter() - start
        record["data_time"] = data_time
        return record

    def _next_batch(self, data: Iterator) -> tuple[list[torch.Tensor], list[dict[str, Any]]]:
        """The next (images, targets) from the loader, on the training device, counted."""
        try:
            batch = next(data)
        except StopIteration:
            raise RuntimeError(
                f"the data loader ran out in iteration {self.iteration + 1}: "
                "the engine needs an infinite sampler (see the data contract above)"
            ) from None
        images, targets = _split_batch(batch)
        self._consumed += 1
        images = [im.to(self.device, non_blocking=True) for im in images]
        targets = [
            {
                k: v.to(self.device, non_blocking=True) if torch.is_tensor(v) else v
                for k, v in t.items()
            }
            for t in targets
        ]
        return images, targets

    def _precise_bn(self, data: Iterator) -> None:
        """`test.precise_bn_iters` training batches through the model to set its batch norms'
        statistics (`resdet.engine.precise_bn`); the batches count as consumed, so a resumed
        run draws the same ones."""
        n = self.test.precise_bn_iters
        if not n:
            return

        def forward_one() -> None:
            images, targets = self._next_batch(data)
            with autocast(self.solver.amp, self.device):
                self.model(images, targets)

        recompute_bn_stats(self.model, forward_one, n)

    def _checked_losses(
        self, loss_dict: dict[str, torch.Tensor], total: torch.Tensor, micro: int
    ) -> dict[str, float]:
        """Loss values averaged over ranks; raises on a non-finite one (on every rank at once)."""
        names = [*loss_dict, "total_loss"]
        stacked = torch.stack(
            [v.detach().float().reshape(()) for v in loss_dict.values()]
            + [total.detach().float().reshape(())]
        )
        values = dict(zip(names, all_reduce_mean(stacked).tolist()))
        if not all(math.isfinite(v) for v in values.values()):
            accum = self.solver.grad_accum
            where = f" (micro-batch {micro + 1}/{accum})" if accum > 1 else ""
            listed = ", ".join(f"{k}={v:.6g}" for k, v in values.items())
            raise NonFiniteLossError(
                f"non-finite loss at iteration {self.iteration + 1}{where}: "
                f"{listed}; training stopped; last good checkpoint: "
                f"{self._last_checkpoint_text()}"
            )
        return values

    # ------------------------------------------------------------------ evaluation
    def evaluate(self) -> dict[str, float]:
        """Run `evaluate_fn`, write `eval/metrics.json`, log it, keep `model_best.pth` if better."""
        if self.evaluate_fn is None:
            raise ValueError("no evaluate_fn was given to the Trainer")
        self.model.eval()
        try:
            with torch.no_grad():
                result = self.evaluate_fn()
        finally:
            self.model.train()
        metrics = broadcast_object(
            {k: float(v) for k, v in (result or {}).items()} if self.is_main else None
        )
        if self.is_main:
            write_evaluation(eval_dir(self.output_dir), metrics, iteration=self.iteration)
            if self._log is not None:
                self._log.write(self.iteration, {f"eval/{k}": v for k, v in metrics.items()})
            self._update_best(metrics)
        self.best = broadcast_object(self.best)
        return metrics

    def _update_best(self, metrics: dict[str, float]) -> None:
        if not metrics:
            return
        name = self.test.best_metric or next(iter(metrics))
        if name not in metrics:
            raise KeyError(
                f"test.best_metric {name!r} is not among the evaluation results {sorted(metrics)}"
            )
        value = metrics[name]
        if math.isnan(value):
            return
        if self.best is not None:
            old = self.best["value"]
            if not (value > old if self.test.best_mode == "max" else value < old):
                return
        self.best = {"metric": name, "value": value, "iteration": self.iteration}
        atomic_torch_save(self._weights_state(), self.output_dir / BEST)
        write_best_metric(self.output_dir, self.best)


def _finite(p: torch.Tensor) -> bool:
    return bool(torch.isfinite(p.grad).all())


def _all_finite_grads(params: list[nn.Parameter]) -> bool:
    """True when every gradient is free of NaN and infinity: AMP's fused check (one kernel and one
    host sync per device; its "unscale" by exactly 1 leaves every value as it was), 0.8 ms for
    ResNet-18 on CPU against 12.5 ms for one `isfinite` per tensor."""
    grads: dict[torch.device, list[torch.Tensor]] = {}
    for p in params:
        if p.grad is not None:
            grads.setdefault(p.grad.device, []).append(p.grad)
    for device, group in grads.items():
        found = torch.zeros(1, device=device)
        torch._amp_foreach_non_finite_check_and_unscale_(group, found, torch.ones(1, device=device))
        if found.item():
            return False
    return True


def _split_batch(batch: Any) -> tuple[list[torch.Tensor], list[dict[str, Any]]]:
    if not (isinstance(batch, (tuple, list)) and len(batch) == 2):
        raise TypeError(
            "the data loader must yield (images, targets): a list of [3, H, W] "
            f"tensors and a list of target dicts; got {type(batch).__name__}"
        )
    return batch[0], batch[1]


def _window_summary(window: list[dict[str, float]], device: torch.device) -> dict[str, float]:
    """Means over the iterations since the last log line, plus the last lr and peak memory (MiB)."""
    keys = [k for k in window[-1] if k != "lr"]
    out = {k: sum(r[k] for r in window if k in r) / sum(1 for r in window if k in r) for k in keys}
    out["lr"] = window[-1]["lr"]
    if device.type == "cuda":
        out["max_mem_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    else:  # peak resident set size of this process (ru_maxrss is KiB on Linux, bytes on macOS)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        out["max_mem_mb"] = rss / 2**20 if sys.platform == "darwin" else rss / 2**10
    return out

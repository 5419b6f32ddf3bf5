"""Test helpers: a tiny detector-shaped model, a toy dataset with random augmentation, a
rank-sharded batch sampler that starts at a given batch, and a `make_trainer` that wires them to
the engine.

Also runnable as a script (`python engine_toy.py nan OUTPUT_DIR`) for the exit-code test.
"""

from __future__ import annotations

import os
import random
import signal
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from resdet.config import Config
from resdet.config.solver import SolverConfig, TestConfig
from resdet.engine import Trainer, build_trainer, images_per_rank, prepare_model
from resdet.utils.dist import DistInfo, exit_on_failure, init_distributed, shutdown_distributed
from resdet.utils.seed import seed_all

NUM_IMAGES = 24
SIZE = 8


class ToyDetector(nn.Module):
    """conv -> norm -> pool -> dropout -> (class logits, box); a torchvision-like loss dict.

    `fail_at` = (forward call number, fault) injects one fault, `faults` = {call: fault} several:
    "nan" a NaN loss, "raise" an exception, "inf_grad" infinite gradients behind a finite loss,
    "nan_stat" a NaN in the norm's running mean (the loss stays finite), "sigint" / "sigterm" that
    signal to this process.
    """

    def __init__(
        self,
        norm: str = "bn",
        dropout: float = 0.2,
        fail_at: tuple[int, str] | None = None,
        faults: dict[int, str] | None = None,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.norm = {"bn": nn.BatchNorm2d(6), "gn": nn.GroupNorm(2, 6), "none": nn.Identity()}[norm]
        self.drop = nn.Dropout(dropout)
        self.cls = nn.Linear(6, 3)
        self.box = nn.Linear(6, 4)
        self.faults = dict(faults or {})
        if fail_at is not None:
            self.faults[fail_at[0]] = fail_at[1]
        self.calls = 0

    def forward(
        self, images: list[torch.Tensor], targets: list[dict[str, torch.Tensor]] | None = None
    ):
        fault = None
        if self.training:
            self.calls += 1
            fault = self.faults.get(self.calls)
        if fault == "nan_stat":
            with torch.no_grad():
                self.norm.running_mean[0] = float("nan")
        elif fault in ("sigint", "sigterm"):
            os.kill(os.getpid(), signal.SIGINT if fault == "sigint" else signal.SIGTERM)
        x = torch.stack(images)  # (N, 3, H, W)
        x = F.relu(self.norm(self.conv(x))).mean(dim=(2, 3))  # (N, 6)
        if fault == "inf_grad":
            x.register_hook(lambda g: g * float("inf"))  # into the conv's and norm's gradients
        x = self.drop(x)
        logits, boxes = self.cls(x), self.box(x) * SIZE
        if not self.training:
            return [
                {"boxes": b[None], "scores": lg.softmax(0).max()[None], "labels": lg.argmax()[None]}
                for b, lg in zip(boxes, logits)
            ]
        labels = torch.cat([t["labels"] for t in targets])
        gt = torch.cat([t["boxes"] for t in targets])
        losses = {
            "loss_cls": F.cross_entropy(logits, labels),
            "loss_box": F.smooth_l1_loss(boxes / SIZE, gt / SIZE),
        }
        if fault == "raise":
            raise RuntimeError(f"injected failure at forward call {self.calls}")
        if fault == "nan":
            losses["loss_box"] = losses["loss_box"] * float("nan")
        return losses


class ToyDataset(torch.utils.data.Dataset):
    """Fixed random images; a read flips with python's RNG, adds numpy noise (tests RNG resume)."""

    def __init__(self, augment: bool = True) -> None:
        self.augment = augment
        g = torch.Generator().manual_seed(1234)
        self.images = torch.rand(NUM_IMAGES, 3, SIZE, SIZE, generator=g)
        self.labels = torch.randint(0, 3, (NUM_IMAGES,), generator=g)
        xy = torch.rand(NUM_IMAGES, 2, generator=g) * SIZE / 2
        self.boxes = torch.cat([xy, xy + SIZE / 2], dim=1)

    def __len__(self) -> int:
        return NUM_IMAGES

    def __getitem__(self, i: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        img, box = self.images[i], self.boxes[i].clone()
        if not self.augment:
            return img, {"boxes": box[None], "labels": self.labels[i][None]}
        if random.random() < 0.5:
            img = img.flip(-1)
            box = torch.stack([SIZE - box[2], box[1], SIZE - box[0], box[3]])
        img = img + torch.from_numpy(np.random.normal(0, 0.01, img.shape).astype(np.float32))
        return img, {"boxes": box[None], "labels": self.labels[i][None]}


class ToySampler(torch.utils.data.Sampler):
    """Infinite batch sampler: global batch `p` of epoch `e` = permutation(seed + e)[slot p], rank r
    takes its `batch_size` slice; starts at batch `start` (what the engine's loader factory
    gets)."""

    def __init__(
        self, batch_size: int, seed: int = 0, rank: int = 0, world_size: int = 1, start: int = 0
    ) -> None:
        self.batch_size, self.seed, self.rank, self.world_size = batch_size, seed, rank, world_size
        self.position = start

    def __iter__(self):
        per_epoch = NUM_IMAGES // (self.batch_size * self.world_size)
        while True:
            epoch, slot = divmod(self.position, per_epoch)
            perm = torch.randperm(
                NUM_IMAGES, generator=torch.Generator().manual_seed(self.seed + epoch)
            )
            start = (slot * self.world_size + self.rank) * self.batch_size
            self.position += 1
            yield perm[start : start + self.batch_size].tolist()


def collate(batch):
    return [b[0] for b in batch], [b[1] for b in batch]


def make_trainer(
    output_dir: str | Path,
    solver: SolverConfig,
    *,
    model: nn.Module | None = None,
    dist: DistInfo | None = None,
    evaluate_fn=None,
    test: TestConfig | None = None,
    tensorboard: bool = False,
    augment: bool = True,
) -> Trainer:
    """A Trainer on the toy data through `build_trainer` (`solver.ims_per_batch`: global batch).

    The data order resumes through a `start -> DataLoader` factory (the `start_iter` style)."""
    dist = dist or DistInfo(0, 1, 0, torch.device("cpu"))
    cfg = Config(solver=solver, test=test or TestConfig(), output_dir=str(output_dir))
    model = prepare_model(model if model is not None else ToyDetector(), solver, dist)

    def loader(start: int = 0) -> torch.utils.data.DataLoader:
        batches = ToySampler(
            images_per_rank(solver, dist.world_size),
            seed=7,
            rank=dist.rank,
            world_size=dist.world_size,
            start=start,
        )
        return torch.utils.data.DataLoader(
            ToyDataset(augment), batch_sampler=batches, collate_fn=collate
        )

    return build_trainer(
        cfg, model, loader, dist, evaluate_fn=evaluate_fn, progress=False, tensorboard=tensorboard
    )


def ddp_worker(
    rank: int,
    world_size: int,
    port: int,
    output_dir: str,
    solver: SolverConfig,
    fail_rank: int | None,
) -> None:
    """One rank of a gloo run (started by torch.multiprocessing); fails on `fail_rank` if given."""
    os.environ.update(
        RANK=str(rank),
        WORLD_SIZE=str(world_size),
        LOCAL_RANK=str(rank),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )

    def main() -> None:
        dist = init_distributed(device="cpu", timeout_s=60)
        seed_all(0)  # identical initial weights on every rank
        fail = (2, "raise") if rank == fail_rank else None
        model = ToyDetector(norm="gn", dropout=0.0, fail_at=fail)
        seed_all(0, rank)
        make_trainer(output_dir, solver, model=model, dist=dist, augment=False).train()
        shutdown_distributed()

    exit_on_failure(main)


if __name__ == "__main__" and sys.argv[1] == "nan":

    def _nan_run() -> None:
        seed_all(0)
        solver = SolverConfig(
            max_iter=8, base_lr=0.05, ims_per_batch=4, checkpoint_period=2, log_period=1
        )
        make_trainer(sys.argv[2], solver, model=ToyDetector(fail_at=(5, "nan"))).train()

    exit_on_failure(_nan_run)

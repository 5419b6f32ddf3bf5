"""2-process gloo DDP: same update as one process with the same global batch; a failing rank takes
every rank down with a non-zero exit."""

import socket

import torch
import torch.multiprocessing as mp
from engine_toy import ToyDetector, ddp_worker, make_trainer

from resdet.config.solver import SolverConfig
from resdet.io.checkpoints import load_checkpoint_file
from resdet.utils.seed import seed_all


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(tmp_path, solver, fail_rank=None, timeout=120):
    ctx = mp.start_processes(
        ddp_worker,
        args=(2, free_port(), str(tmp_path), solver, fail_rank),
        nprocs=2,
        join=False,
        start_method="spawn",
    )
    for p in ctx.processes:  # wait for each rank on its own: ctx.join() would kill the survivors
        p.join(timeout)
    return [p.exitcode for p in ctx.processes]


def test_two_rank_gloo_equals_one_process(tmp_path):
    # 2 ranks x 2 accumulation steps x 1 image == 1 process x 4 images; momentum and weight decay on
    common = dict(
        max_iter=4, base_lr=0.1, ims_per_batch=4, checkpoint_period=100, weight_decay=1e-3
    )
    assert spawn(tmp_path / "ddp", SolverConfig(**common, grad_accum=2)) == [0, 0]

    seed_all(0)  # the initial weights of the DDP ranks
    single = make_trainer(
        tmp_path / "one",
        SolverConfig(**common),
        model=ToyDetector(norm="gn", dropout=0.0),
        augment=False,
    )
    start = {k: v.clone() for k, v in single.model.state_dict().items()}
    single.train()
    ddp = load_checkpoint_file(tmp_path / "ddp" / "model_final.pth")
    one = single.model.state_dict()
    for k, v in one.items():
        assert (v - start[k]).abs().max() > 1e-3, (
            k
        )  # every tensor moved: the comparison means something
        torch.testing.assert_close(ddp["model"][k], v, rtol=0, atol=1e-6, msg=k)
    assert len(ddp["rng_ranks"]) == 2


def test_failing_rank_stops_every_rank(tmp_path):
    solver = SolverConfig(max_iter=50, base_lr=0.1, ims_per_batch=4, checkpoint_period=100)
    assert spawn(tmp_path, solver, fail_rank=1, timeout=90) == [1, 1]
    assert not (tmp_path / "model_final.pth").exists()

"""Learning-rate schedule, batch scaling rule, weight-decay groups, clipping and
precision options."""

import json
import math

import pytest
import torch
from engine_toy import ToyDetector, make_trainer
from torch import nn

from resdet.config import ConfigError, config_from_dict
from resdet.config.solver import SolverConfig
from resdet.engine import WarmupSchedule, build_optimizer, param_groups
from resdet.utils.seed import seed_all


def lrs(n, **kw):
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
    sched = WarmupSchedule(opt, **kw)
    out = []
    for _ in range(n):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_warmup_then_multistep_by_hand():
    # warmup from 0.1 * 0.1 over 4 iterations: 0.1 * (0.1 * (1 - i/4) + i/4); then
    # x0.1 at 6 and at 8
    got = lrs(10, max_iter=10, steps=[6, 8], gamma=0.1, warmup_iters=4, warmup_factor=0.1)
    want = [0.01, 0.0325, 0.055, 0.0775, 0.1, 0.1, 0.01, 0.01, 0.001, 0.001]
    assert got == pytest.approx(want, rel=1e-12)


def test_cosine_by_hand():
    got = lrs(11, max_iter=10, method="cosine")
    assert (
        got[0] == pytest.approx(0.1)
        and got[5] == pytest.approx(0.05)
        and got[10] == pytest.approx(0.0)
    )
    assert got[2] == pytest.approx(0.1 * (1 + math.cos(math.pi * 0.2)) / 2)
    floor = lrs(
        11, max_iter=10, method="cosine", final_factor=0.1, warmup_iters=2, warmup_factor=0.5
    )
    assert floor[0] == pytest.approx(0.05)  # warmup multiplies the cosine
    assert floor[1] == pytest.approx(0.1 * 0.75 * (0.1 + 0.9 * (1 + math.cos(math.pi * 0.1)) / 2))
    assert floor[10] == pytest.approx(0.01)


def test_schedule_resumes_from_state_dict():
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
    a = WarmupSchedule(opt, max_iter=10, steps=[3])
    for _ in range(4):
        opt.step()
        a.step()
    opt2 = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
    b = WarmupSchedule(opt2, max_iter=10, steps=[3])
    b.load_state_dict(a.state_dict())
    opt2.step()
    b.step()
    assert b.get_last_lr() == pytest.approx([0.01])
    with pytest.raises(ValueError, match="max_iter"):
        WarmupSchedule(opt2, max_iter=10, steps=[20])


def test_linear_scaling_rule_and_config_checks():
    assert SolverConfig(base_lr=0.02, ims_per_batch=16).lr == 0.02  # no reference: as written
    assert SolverConfig(base_lr=0.02, ims_per_batch=4, reference_batch=16).lr == pytest.approx(
        0.005
    )
    cfg = config_from_dict(
        {"solver": {"amp": "bf16", "lr_scheduler": "cosine", "clip_grad_norm": 1.0}}
    )
    assert cfg.solver.amp == "bf16"
    with pytest.raises(ConfigError, match="solver.amp"):
        config_from_dict({"solver": {"amp": "fp8"}})
    with pytest.raises(ConfigError, match="steps must be increasing"):
        config_from_dict({"solver": {"steps": [5, 3]}})


def test_no_weight_decay_on_norm_and_bias():
    model = ToyDetector(norm="bn")
    groups = {
        g["weight_decay"]: {id(p) for p in g["params"]}
        for g in param_groups(model, 1e-2, weight_decay_norm=0.0, weight_decay_bias=0.0)
    }
    decayed = {id(model.conv.weight), id(model.cls.weight), id(model.box.weight)}
    assert groups[1e-2] == decayed
    assert groups[0.0] == {id(p) for p in model.parameters()} - decayed
    assert len(param_groups(model, 1e-2)) == 1  # default: decay everything

    # behaviour: with zero gradients only weight decay moves parameters
    opt = build_optimizer(
        model, lr=1.0, momentum=0.0, weight_decay=0.5, weight_decay_norm=0.0, weight_decay_bias=0.0
    )
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    for n, p in model.named_parameters():
        want = before[n] * 0.5 if n.endswith("weight") and not n.startswith("norm") else before[n]
        torch.testing.assert_close(p.detach(), want, msg=n)


def test_grad_clipping_bounds_the_step(tmp_path):
    seed_all(0)
    solver = SolverConfig(
        max_iter=1,
        base_lr=1.0,
        ims_per_batch=4,
        momentum=0.0,
        weight_decay=0.0,
        clip_grad_norm=0.01,
        log_period=1,
    )
    trainer = make_trainer(tmp_path, solver, model=ToyDetector(dropout=0.0))
    before = torch.cat([p.detach().flatten().clone() for p in trainer.model.parameters()])
    trainer.train()
    after = torch.cat([p.detach().flatten() for p in trainer.model.parameters()])
    # plain SGD with lr 1: the step is the clipped gradient, whose norm is exactly the clip value
    assert (after - before).norm().item() == pytest.approx(0.01, rel=1e-4)
    assert '"grad_norm"' in (tmp_path / "metrics.jsonl").read_text()


def test_bf16_autocast_on_cpu_trains_and_fp16_needs_cuda(tmp_path):
    seed_all(0)
    solver = SolverConfig(max_iter=12, base_lr=0.2, ims_per_batch=4, amp="bf16", log_period=4)
    trainer = make_trainer(tmp_path, solver)
    dtypes = set()
    trainer.model.conv.register_forward_hook(lambda m, i, out: dtypes.add(out.dtype))
    trainer.train()
    assert dtypes == {torch.bfloat16}
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["total_loss"] < rows[0]["total_loss"]
    with pytest.raises(ValueError, match="fp16 needs a CUDA device"):
        make_trainer(tmp_path / "x", SolverConfig(amp="fp16"))

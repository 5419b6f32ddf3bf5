"""Precise BN: the statistics are the equal-weight average of the batches' own statistics."""

import torch
from engine_toy import ToyDataset, ToyDetector, ToySampler, make_trainer
from torch import nn
from torchvision.ops import FrozenBatchNorm2d

from resdet.config.solver import SolverConfig
from resdet.config.solver import TestConfig as EvalConfig  # not collected as a test class
from resdet.engine.precise_bn import recompute_bn_stats
from resdet.io.checkpoints import load_checkpoint_file
from resdet.utils.seed import seed_all


def _batch_stats(features: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Hand computation: mean over batches of each batch's channel mean and unbiased variance."""
    means = torch.stack([f.mean(dim=(0, 2, 3)) for f in features])
    vars_ = torch.stack([f.transpose(0, 1).flatten(1).var(dim=1, unbiased=True) for f in features])
    return means.mean(0), vars_.mean(0)


def test_statistics_are_the_average_of_batch_statistics_whatever_came_before():
    torch.manual_seed(0)
    conv, bn = nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4, momentum=0.3)
    model = nn.Sequential(conv, bn).eval()
    bn.running_mean.fill_(50.0)  # stale statistics: must not leak into the result
    bn.running_var.fill_(9.0)
    # batches of different sizes and scales: an exponential average would weight them unequally
    batches = [torch.randn(n, 3, 6, 6) * s + s for n, s in [(2, 1.0), (5, 3.0), (3, 0.5)]]
    it = iter(batches)
    assert recompute_bn_stats(model, lambda: model(next(it)), len(batches)) == 1
    with torch.no_grad():
        mean, var = _batch_stats([conv(b) for b in batches])
    assert torch.allclose(bn.running_mean, mean, atol=1e-5)
    assert torch.allclose(bn.running_var, var, rtol=1e-5)
    assert bn.momentum == 0.3 and not model.training  # restored


def test_frozen_norms_are_left_alone_and_nothing_runs():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), FrozenBatchNorm2d(4))
    calls = []
    assert recompute_bn_stats(model, lambda: calls.append(1), 5) == 0
    assert calls == []


def test_final_checkpoint_holds_statistics_of_the_batches_after_training(tmp_path):
    seed_all(0)
    solver = SolverConfig(max_iter=4, base_lr=0.05, ims_per_batch=4, log_period=1)
    trainer = make_trainer(tmp_path, solver, test=EvalConfig(precise_bn_iters=3), augment=False)
    trainer.train()
    assert trainer.batches_consumed == 4 + 3
    state = load_checkpoint_file(tmp_path / "model_final.pth")["model"]
    # the three batches after the 4 training ones, through the final weights, by hand
    data = ToyDataset(augment=False)
    sampler = iter(ToySampler(4, seed=7, start=4))
    conv = ToyDetector().conv
    conv.load_state_dict({"weight": state["conv.weight"], "bias": state["conv.bias"]})
    with torch.no_grad():
        features = [conv(data.images[next(sampler)]) for _ in range(3)]
    mean, var = _batch_stats(features)
    assert torch.allclose(state["norm.running_mean"], mean, atol=1e-6)
    assert torch.allclose(state["norm.running_var"], var, rtol=1e-5)

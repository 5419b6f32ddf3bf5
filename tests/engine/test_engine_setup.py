"""`build_trainer` wiring from a Config: scaled lr, per-rank batch, layout, checkpoint metadata."""

import pytest
import torch
from engine_toy import ToyDetector, make_trainer

from backbones.spec import CAFFE_PIXELS
from resdet.config import config_from_dict
from resdet.config.solver import SolverConfig
from resdet.engine import images_per_rank, prepare_model
from resdet.io.checkpoints import load_checkpoint_file
from resdet.utils.dist import DistInfo
from resdet.utils.seed import seed_all

CPU = DistInfo(0, 1, 0, torch.device("cpu"))


def test_trainer_from_config_uses_scaled_lr_and_records_metadata(tmp_path):
    seed_all(0)
    model = ToyDetector()
    model.pixel_format = CAFFE_PIXELS
    solver = SolverConfig(
        max_iter=2, base_lr=0.08, ims_per_batch=4, reference_batch=16, log_period=1
    )
    trainer = make_trainer(tmp_path, solver, model=model)
    assert trainer.solver is solver  # the trainer reads its settings from the section, not copies
    lrs = [g["lr"] for g in trainer.optimizer.param_groups]
    assert lrs == [pytest.approx(0.02)]  # 0.08 * 4 / 16
    trainer.train()
    ck = load_checkpoint_file(tmp_path / "model_final.pth")
    assert ck["pixel_format"] == CAFFE_PIXELS.to_dict()
    assert config_from_dict(ck["config"]).solver == solver


def test_images_per_rank_and_channels_last():
    s = SolverConfig(ims_per_batch=16, grad_accum=2)
    assert images_per_rank(s, 4) == 2
    with pytest.raises(ValueError, match="not divisible"):
        images_per_rank(s, 3)
    model = prepare_model(ToyDetector(), SolverConfig(), CPU, channels_last=True)
    assert model.conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert not model.conv.weight.is_contiguous()


def test_sync_bn_refused_on_cpu_ddp():
    with pytest.raises(ValueError, match="sync_bn needs CUDA"):
        prepare_model(
            ToyDetector(), SolverConfig(sync_bn=True), DistInfo(0, 2, 0, torch.device("cpu"))
        )


def test_grad_accumulation_equals_the_full_batch(tmp_path):
    # 2 micro-batches of 2 images == 1 batch of 4 (per-sample norm, no dropout: identical math)
    common = dict(
        max_iter=3, base_lr=0.1, ims_per_batch=4, weight_decay=1e-3, checkpoint_period=100
    )
    runs = []
    for accum in (1, 2):
        seed_all(0)
        t = make_trainer(
            tmp_path / str(accum),
            SolverConfig(**common, grad_accum=accum),
            model=ToyDetector(norm="gn", dropout=0.0),
            augment=False,
        )
        t.train()
        runs.append(t.model.state_dict())
    for k, v in runs[0].items():
        torch.testing.assert_close(runs[1][k], v, rtol=0, atol=1e-6, msg=k)

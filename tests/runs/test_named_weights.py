"""`resdet:shapes_r18`, the demo's backbone: read from $RESDET_CACHE when there, produced there by
the shapes pretraining as a training run's first step (shrunk to seconds here), never by
`build_model`, accepted by the weights check."""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from backbones.resnet import ResNet
from backbones.spec import TORCHVISION_PIXELS
from resdet import build_model, load_config
from resdet.config import ConfigError
from resdet.io.named_weights import NAMED_SOURCES
from resdet.runs import named_weights
from resdet.runs.detection import check_weights_present
from tests.tools.tiny_runs import TINY_CLS

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "configs" / "demo_shapes.yaml"

#: configs/cls_shapes.yaml shrunk to a few seconds (tiny_runs.TINY_CLS), two iterations
TINY_PRETRAINING = (*TINY_CLS, "solver.max_iter=2", "solver.steps=[1]", "test.eval_period=0")


def test_demo_names_the_source_and_the_weights_check_accepts_it(private_cache):
    cfg = load_config(DEMO)
    assert cfg.model.backbone.weights == "resdet:shapes_r18"
    check_weights_present(cfg)  # not in the cache yet: still fine, it is produced on first use
    assert not private_cache.exists()
    with pytest.raises(ConfigError, match="resdet:shapes_r18"):  # the known names are listed
        check_weights_present(load_config(DEMO, ["model.backbone.weights=resdet:nope"]))


def test_build_model_reads_the_cache_and_never_trains(private_cache):
    with pytest.raises(FileNotFoundError, match="resdet:shapes_r18 is not in the cache yet"):
        build_model(load_config(DEMO), num_classes=5)
    assert not (private_cache / "pretrained").exists()


def test_a_cached_file_is_used_without_training(private_cache, monkeypatch):
    torch.manual_seed(0)
    net = ResNet(18, num_classes=5)
    path = private_cache / "pretrained" / "shapes_r18.pth"
    path.parent.mkdir(parents=True)
    torch.save(
        {
            "format": "resdet",
            "kind": "classifier",
            "model": net.state_dict(),
            "pixel_format": TORCHVISION_PIXELS.to_dict(),
        },
        path,
    )

    def no_training(*args, **kwargs):
        raise AssertionError("the cached file should have been used")

    monkeypatch.setattr(named_weights, "_produce", no_training)
    assert named_weights.produce_named_weights("resdet:shapes_r18") == str(path)
    assert named_weights.produce_named_weights("torchvision:resnet18") == "torchvision:resnet18"
    det = build_model(load_config(DEMO), num_classes=5)
    torch.testing.assert_close(det.backbone.bottom_up.conv1.weight, net.conv1.weight)


def test_first_use_pretrains_into_the_cache_atomically(private_cache, monkeypatch, capsys):
    spec = NAMED_SOURCES["shapes_r18"]
    assert (
        spec.config.resolve() == (ROOT / "configs" / "cls_shapes.yaml").resolve()
    )  # what tools/pretrain_cls.py runs
    monkeypatch.setitem(
        NAMED_SOURCES, "shapes_r18", dataclasses.replace(spec, overrides=TINY_PRETRAINING)
    )
    torch.manual_seed(123)
    np.random.seed(123)
    random.seed(123)
    before = (torch.rand(1), np.random.rand(), random.random())
    torch.manual_seed(123)
    np.random.seed(123)
    random.seed(123)

    path = Path(named_weights.produce_named_weights("resdet:shapes_r18", progress=False))
    assert path == private_cache / "pretrained" / "shapes_r18.pth"
    out = capsys.readouterr().out
    first = out.splitlines()[0]
    assert first.startswith("resdet:shapes_r18: not in the cache yet, training it now")
    assert str(path) in first and "saved to" in out
    assert sorted(p.name for p in path.parent.iterdir()) == ["shapes_r18.pth"]  # no leftovers
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    assert ckpt["format"] == "resdet" and ckpt["kind"] == "classifier" and ckpt["iteration"] == 2
    # the caller's random streams are as they were: a run is the same with or without a cache
    assert (torch.rand(1), np.random.rand(), random.random()) == before

    # the second use reads the file
    monkeypatch.setattr(named_weights, "_produce", lambda *a: pytest.fail("produced twice"))
    assert named_weights.produce_named_weights("resdet:shapes_r18") == str(path)

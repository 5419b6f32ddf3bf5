"""The classification recipes: they load, hold the paper's values, and build the
paper's networks."""

from __future__ import annotations

from pathlib import Path

import pytest
from torch import nn

from resdet.classification.model import build_classifier
from resdet.config.classification import load_cls_config
from resdet.config.loader import ConfigError

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
CIFAR = {
    f"cls_{'plain' if plain else 'resnet'}{depth}_cifar10.yaml": (depth, plain)
    for depth, plain in [
        (20, False),
        (32, False),
        (44, False),
        (56, False),
        (110, False),
        (20, True),
        (32, True),
        (44, True),
        (56, True),
    ]
}


def weighted_layers(net: nn.Module) -> int:
    """Convolutions and fully connected layers on the main path (option-A shortcuts have none)."""
    return sum(isinstance(m, (nn.Conv2d, nn.Linear)) for m in net.modules())


@pytest.mark.parametrize("name", sorted(CIFAR))
def test_cifar_recipes_follow_section_4_2(name):
    cfg = load_cls_config(CONFIGS / name)
    depth, plain = CIFAR[name]
    s = cfg.solver
    assert (cfg.model.arch, cfg.model.depth, cfg.model.plain, cfg.model.shortcut) == (
        "cifar",
        depth,
        plain,
        "A",
    )
    assert (s.ims_per_batch, s.base_lr, s.steps, s.max_iter, s.gamma) == (
        128,
        0.1,
        [32000, 48000],
        64000,
        0.1,
    )
    assert (s.weight_decay, s.momentum, s.lr) == (1e-4, 0.9, 0.1)
    assert (cfg.data.format, cfg.data.augment, cfg.data.pad, cfg.data.crop_size) == (
        "cifar10",
        "cifar",
        4,
        32,
    )
    assert cfg.data.test_split == "test" and not cfg.test.ten_crop
    if depth == 110:  # 0.01 for about 400 iterations, then 0.1
        assert (s.warmup_method, s.warmup_iters, s.warmup_factor * s.base_lr) == (
            "constant",
            400,
            pytest.approx(0.01),
        )
    else:
        assert s.warmup_iters == 0


@pytest.mark.parametrize("depth", [20, 56])
def test_cifar_nets_have_the_papers_depth_and_plain_twins_the_same_parameters(depth):
    nets = {
        plain: build_classifier(
            load_cls_config(
                CONFIGS / f"cls_{'plain' if plain else 'resnet'}{depth}_cifar10.yaml"
            ).model,
            10,
        )
        for plain in (False, True)
    }
    for net in nets.values():
        assert weighted_layers(net) == depth
    counts = {plain: sum(p.numel() for p in net.parameters()) for plain, net in nets.items()}
    assert counts[False] == counts[True]


def test_imagenet_recipe_follows_section_3_4():
    cfg = load_cls_config(CONFIGS / "cls_r50_imagenet.yaml")
    s, d = cfg.solver, cfg.data
    assert (cfg.model.arch, cfg.model.depth, cfg.model.shortcut) == ("imagenet", 50, "B")
    assert (s.ims_per_batch, s.lr, s.weight_decay, s.momentum, s.gamma) == (
        256,
        0.1,
        1e-4,
        0.9,
        0.1,
    )
    assert (d.augment, tuple(d.short_side), d.crop_size, d.test_short_side) == (
        "imagenet",
        (256, 480),
        224,
        256,
    )
    assert cfg.test.ten_crop
    # /10 at epochs 30 and 60 of 90, counted in iterations of 256 images over the
    # 1,281,167 of ILSVRC-2012
    epoch = -(-1281167 // 256)
    assert s.steps == [30 * epoch, 60 * epoch] and s.max_iter == 90 * epoch
    # other depths by override, as the recipe says
    assert (
        load_cls_config(CONFIGS / "cls_r50_imagenet.yaml", ["model.depth=101"]).model.depth == 101
    )


def test_shapes_recipes():
    cfg = load_cls_config(
        CONFIGS / "cls_shapes.yaml"
    )  # the default: its weights feed detection backbones
    assert cfg.model.arch == "imagenet" and cfg.data.format == "shapes"
    fig6 = load_cls_config(CONFIGS / "cls_shapes_fig6.yaml", ["model.depth=56", "model.plain=true"])
    assert (fig6.model.arch, fig6.model.shortcut, fig6.data.format, fig6.data.augment) == (
        "cifar",
        "A",
        "shapes",
        "cifar",
    )


def test_bad_values_name_the_key_and_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"_base_: {CONFIGS / 'cls_resnet20_cifar10.yaml'}\nmodel:\n  depth: 18\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*6n\+2"):
        load_cls_config(bad)
    with pytest.raises(ConfigError, match=r"unknown key 'data\.crop'"):
        load_cls_config(CONFIGS / "cls_shapes.yaml", ["data.crop=3"])
    with pytest.raises(ConfigError, match=r"data\.short_side"):
        load_cls_config(CONFIGS / "cls_r50_imagenet.yaml", ["data.short_side=[200,480]"])


def test_fig6_cpu_budget_compresses_the_papers_schedule_proportionally():
    paper = load_cls_config(CONFIGS / "cls_resnet20_cifar10.yaml").solver
    cpu = load_cls_config(CONFIGS / "cls_cifar10_fig6_cpu.yaml")
    s = cpu.solver
    assert [x / s.max_iter for x in s.steps] == [x / paper.max_iter for x in paper.steps]
    assert (s.ims_per_batch, s.base_lr, s.weight_decay, s.momentum) == (128, 0.1, 1e-4, 0.9)
    assert cpu.model.shortcut == "A" and cpu.data.augment == "cifar"
    assert s.max_iter % cpu.test.eval_period == 0  # the last test point is the final model

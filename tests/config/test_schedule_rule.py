"""The shortened-run rule of `resdet.config.solver`: `solver.max_iter` overridden alone scales the
schedule; an explicit schedule that does not fit is a one-line error naming both keys."""

import sys
from pathlib import Path

import pytest

from resdet.config import ConfigError, load_config
from resdet.config.classification import load_cls_config

ROOT = Path(__file__).resolve().parents[2]
SCHEDULE = "solver:\n  max_iter: 64000\n  steps: [32000, 48000]\n  warmup_iters: 400\n"


def write(p: Path, text: str) -> Path:
    p.write_text(text)
    return p


@pytest.mark.parametrize(
    "load", [load_config, load_cls_config], ids=["detection", "classification"]
)
def test_max_iter_alone_scales_steps_and_warmup(tmp_path, capsys, load):
    path = write(tmp_path / "recipe.yaml", SCHEDULE)
    cfg = load(path, ["solver.max_iter=20"])
    assert (cfg.solver.max_iter, cfg.solver.steps, cfg.solver.warmup_iters) == (20, [10, 15], 0)
    out = capsys.readouterr().out.splitlines()
    assert out == [
        f"{path}: solver.max_iter=20 overrides 64000: solver.steps scaled to [10, 15], "
        "solver.warmup_iters to 0"
    ]
    # a key given beside max_iter is taken as written; the others still scale
    cfg = load(path, ["solver.max_iter=32000", "solver.warmup_iters=7"])
    assert (cfg.solver.steps, cfg.solver.warmup_iters) == ([16000, 24000], 7)
    # the file alone, or max_iter set to the file's value, changes nothing
    assert (
        load(path).solver.steps
        == load(path, ["solver.max_iter=64000"]).solver.steps
        == [32000, 48000]
    )


def test_shipped_recipes_shorten():
    cfg = load_config(ROOT / "configs" / "demo_shapes.yaml", ["solver.max_iter=20"])
    assert cfg.solver.max_iter == 20 and all(s <= 20 for s in cfg.solver.steps)
    cfg = load_cls_config(ROOT / "configs" / "cls_shapes.yaml", ["solver.max_iter=20"])
    assert cfg.solver.max_iter == 20 and all(s <= 20 for s in cfg.solver.steps)


@pytest.mark.parametrize(
    "load", [load_config, load_cls_config], ids=["detection", "classification"]
)
def test_explicit_steps_that_do_not_fit_name_both_keys(tmp_path, load):
    path = write(tmp_path / "recipe.yaml", SCHEDULE)
    with pytest.raises(ConfigError) as err:
        load(path, ["solver.max_iter=20", "solver.steps=[30000]"])
    message = str(err.value)
    assert "\n" not in message and str(path) in message
    assert "solver.steps [30000] go past solver.max_iter=20" in message


@pytest.mark.parametrize(
    "load", [load_config, load_cls_config], ids=["detection", "classification"]
)
def test_inconsistent_schedule_in_the_yaml_is_still_an_error(tmp_path, load):
    path = write(tmp_path / "bad.yaml", "solver:\n  max_iter: 100\n  steps: [50, 200]\n")
    with pytest.raises(
        ConfigError,
        match=rf"{path}: solver: solver.steps \[50, 200\] go past "
        r"solver.max_iter=100",
    ):
        load(path)
    with pytest.raises(
        ConfigError, match="go past solver.max_iter=100"
    ):  # overrides elsewhere scale nothing
        load(path, ["solver.base_lr=0.1"])


def test_tools_print_the_error_in_one_line(tmp_path, monkeypatch, capsys):
    from tools import pretrain_cls

    path = write(tmp_path / "recipe.yaml", SCHEDULE)
    monkeypatch.setattr(
        sys, "argv", ["pretrain_cls.py", str(path), "solver.max_iter=20", "solver.steps=[30000]"]
    )
    assert pretrain_cls.cli() == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("pretrain_cls: error: ")
    assert "solver.max_iter=20" in err[0]
    from tools import train_det

    assert (
        train_det.main(
            [str(ROOT / "configs" / "demo_shapes.yaml"), "solver.max_iter=20", "solver.steps=[300]"]
        )
        == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "solver.steps [300] go past solver.max_iter=20" in err[0]

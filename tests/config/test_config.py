"""The config loader: inheritance, overrides, strictness, round trip."""

from pathlib import Path

import pytest

from resdet.config import ConfigError, load_config, save_config


def write(p: Path, text: str) -> Path:
    p.write_text(text)
    return p


def test_base_inheritance_and_overrides(tmp_path):
    write(
        tmp_path / "base.yaml",
        "model:\n  backbone:\n    depth: 101\nsolver:\n  base_lr: 0.01\n  max_iter: 7\n",
    )
    child = write(tmp_path / "child.yaml", "_base_: base.yaml\nsolver:\n  max_iter: 10\n")
    cfg = load_config(child, ["solver.base_lr=0.5", "model.backbone.norm=GN", "solver.steps=[3,6]"])
    assert cfg.model.backbone.depth == 101  # from the base
    assert cfg.solver.max_iter == 10  # child wins over base
    assert cfg.solver.base_lr == 0.5  # override wins over both
    assert cfg.model.backbone.norm == "GN"
    assert cfg.solver.steps == [3, 6]


def test_round_trip(tmp_path):
    cfg = load_config(write(tmp_path / "a.yaml", "seed: 3\nsolver:\n  steps: [1, 2]\n"))
    save_config(cfg, tmp_path / "out.yaml")
    assert load_config(tmp_path / "out.yaml") == cfg


@pytest.mark.parametrize(
    "text,needle",
    [
        ("model:\n  backbone:\n    dept: 50\n", "model.backbone.dept"),
        ("solver:\n  max_iter: ten\n", "solver.max_iter"),
        ("solver:\n  base_lr: true\n", "solver.base_lr"),
        ("model:\n  backbone:\n    norm: LayerNorm\n", "model.backbone.norm"),
        ("a: !!python/object/apply:os.system [ls]\n", "python"),
    ],
)
def test_bad_files_name_file_and_key(tmp_path, text, needle):
    path = write(tmp_path / "bad.yaml", text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(path) in str(err.value) and needle in str(err.value)


def test_bad_override_names_key(tmp_path):
    path = write(tmp_path / "ok.yaml", "seed: 1\n")
    with pytest.raises(ConfigError, match="override.*solver.nope"):
        load_config(path, ["solver.nope=1"])
    with pytest.raises(ConfigError, match="key.sub=value"):
        load_config(path, ["solver.base_lr"])


def test_base_cycle_and_missing(tmp_path):
    write(tmp_path / "a.yaml", "_base_: b.yaml\n")
    write(tmp_path / "b.yaml", "_base_: a.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_config(tmp_path / "a.yaml")
    with pytest.raises(ConfigError, match="not found"):
        load_config(write(tmp_path / "c.yaml", "_base_: nowhere.yaml\n"))


def test_choices_come_from_the_backbone_constants(tmp_path):
    from typing import get_args, get_type_hints

    from backbones.norm import NORMS
    from backbones.resnet import SHORTCUTS
    from resdet.config.classification import ClsModelConfig, load_cls_config
    from resdet.config.model import BackboneConfig

    hints, cls_hints = get_type_hints(BackboneConfig), get_type_hints(ClsModelConfig)
    assert get_args(hints["norm"]) == NORMS and get_args(hints["shortcut"]) == SHORTCUTS
    assert get_args(cls_hints["shortcut"]) == SHORTCUTS
    assert set(get_args(cls_hints["norm"])) == set(NORMS) - {"FrozenBN"}
    path = write(tmp_path / "cls.yaml", "model:\n  shortcut: D\n")
    with pytest.raises(
        ConfigError, match=rf"{path}: model.shortcut: 'D' is not one of \['A', 'B', 'C'\]"
    ):
        load_cls_config(path)


def test_a_moved_key_names_its_new_place(tmp_path):
    path = write(tmp_path / "old.yaml", "solver:\n  channels_last: true\n")
    with pytest.raises(
        ConfigError,
        match=rf"{path}: key 'solver.channels_last' is now "
        r"model.input.channels_last \(detection\)",
    ):
        load_config(path)


def test_box_loss_beta_has_one_source():
    """The heads have no `smooth_l1_beta` default of their own: the config's value is used."""
    from resdet import build_model

    cfg = load_config(
        Path(__file__).resolve().parents[2] / "configs" / "demo_shapes.yaml",
        ["model.rpn.smooth_l1_beta=0.25", "model.roi_heads.smooth_l1_beta=0.5"],
    )
    model = build_model(cfg, num_classes=3, load_weights=False)
    assert (model.rpn.smooth_l1_beta, model.roi_heads.smooth_l1_beta) == (0.25, 0.5)

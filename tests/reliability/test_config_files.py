"""Config files as people write them: a wrong `_base_`, a file that is not UTF-8, a key given twice
and a non-finite number are one `train_det: error:` line naming the file (and the key's lines);
`1e-3` is a number, in files and on the command line."""

from __future__ import annotations

from pathlib import Path

import pytest

from resdet.config import load_config
from tools import train_det

ROOT = Path(__file__).resolve().parents[2]


def error_line(capsys, config: Path, *overrides: str) -> str:
    assert train_det.main([str(config), *overrides]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("train_det: error: "), err
    return err[0]


@pytest.mark.parametrize(
    "text, named",
    [
        (b"_base_: 5\n", "`_base_` must be a file name"),
        (b"seed: 1  # caf\xe9 in latin-1\n", "not UTF-8"),
        (b"seed: 1\nsolver:\n  base_lr: 0.1\n  base_lr: 0.2\n",
         "'base_lr' is given twice (lines 3 and 4)"),
    ],
)  # fmt: skip
def test_bad_files_are_one_line(tmp_path, capsys, text, named):
    config = tmp_path / "bad.yaml"
    config.write_bytes(text)
    line = error_line(capsys, config)
    assert str(config) in line and named in line


def test_a_non_finite_number_is_refused(tmp_path, capsys):
    line = error_line(capsys, ROOT / "configs" / "demo_shapes.yaml", "solver.base_lr=.nan")
    assert "solver.base_lr" in line and "finite" in line


def test_numbers_read_as_written(tmp_path):
    config = tmp_path / "sci.yaml"
    config.write_text(
        f"_base_: {ROOT / 'configs' / 'demo_shapes.yaml'}\nsolver:\n  base_lr: 1e-3\n"
    )
    assert load_config(config).solver.base_lr == 0.001
    assert load_config(config, ["solver.weight_decay=5E-5"]).solver.weight_decay == 5e-5

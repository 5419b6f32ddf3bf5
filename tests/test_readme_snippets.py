"""The README's "Use it elsewhere" blocks run as written.

A block whose first line is ``# needs: <package>`` runs only where the package imports; detectron2
is not on PyPI, so without it the detectron2 block runs against ``tests/backbones/d2_standin``'s
stand-in of the few detectron2 names it uses (real detectron2 is preferred where installed).
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

README = Path(__file__).parents[1] / "README.md"
sys.path.insert(0, str(Path(__file__).parent / "backbones"))
import d2_standin  # noqa: E402


def _blocks(section: str) -> list[str]:
    text = README.read_text()
    start = text.index(f"## {section}\n")
    end = text.find("\n## ", start + 1)
    return re.findall(r"```python\n(.*?)```", text[start:end], flags=re.S)


BLOCKS = _blocks("Use it elsewhere")


def test_the_section_has_its_five_blocks():
    needs = [re.match(r"# needs: (\w+)", b) for b in BLOCKS]
    assert len(BLOCKS) == 5
    assert [m.group(1) for m in needs if m] == ["detectron2", "mmdet"]


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_block_runs(index, monkeypatch):
    code = BLOCKS[index]
    need = re.match(r"# needs: (\w+)", code)
    if need and importlib.util.find_spec(need.group(1)) is None:
        if need.group(1) != "detectron2":
            pytest.skip(f"{need.group(1)} is not installed")
        for name, module in d2_standin.modules().items():
            monkeypatch.setitem(sys.modules, name, module)
    elif need:
        try:
            importlib.import_module(need.group(1))
        except ImportError as e:  # installed without what it needs
            pytest.skip(f"{need.group(1)} does not import: {e}")
    sys.modules.pop("backbones.interop.detectron2", None)
    try:
        exec(compile(code, f"README.md block {index}", "exec"), {"__name__": "readme"})
    except ImportError as e:
        if "mmcv._ext" not in str(e.__cause__ or ""):
            raise
        pytest.skip(str(e))  # mmcv-lite: the registry needs mmcv's compiled ops
    finally:
        sys.modules.pop("backbones.interop.detectron2", None)

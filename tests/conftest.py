"""Fixtures for every test folder."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

#: real test files (COCO and VOC subsets), beside the checkout; a fresh clone has none
SHARED_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


def _shared_data(sub: str) -> Path:
    path = SHARED_DATA / sub
    if not path.exists():
        pytest.skip(
            f"{path} is absent (real test files live in ../shared/data; a fresh clone has none)"
        )
    return path.resolve()


@pytest.fixture
def shared_data() -> Callable[[str], Path]:
    """``shared_data(sub)``: the resolved path of ``../shared/data/<sub>``; skips the test when it
    is absent."""
    return _shared_data


@pytest.fixture
def private_cache(tmp_path, monkeypatch) -> Path:
    """$RESDET_CACHE set to this test's own (not yet created) `<tmp_path>/cache`."""
    monkeypatch.setenv("RESDET_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"

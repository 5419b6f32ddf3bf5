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

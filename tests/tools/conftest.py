"""Fixtures for the tool tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch


@pytest.fixture
def plain_convolutions(monkeypatch):
    """oneDNN off: on the tiny (32-64 px) inputs of these tests its kernel creation for each new
    shape costs more than the convolutions."""
    monkeypatch.setattr(torch.backends.mkldnn, "enabled", False)


@pytest.fixture
def private_cache(tmp_path, monkeypatch) -> Path:
    """$RESDET_CACHE set to this test's own (not yet created) `<tmp_path>/cache`."""
    monkeypatch.setenv("RESDET_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"

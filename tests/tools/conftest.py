"""Fixtures for the tool tests."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture
def plain_convolutions(monkeypatch):
    """oneDNN off: on the tiny (32-64 px) inputs of these tests its kernel creation for each new
    shape costs more than the convolutions."""
    monkeypatch.setattr(torch.backends.mkldnn, "enabled", False)

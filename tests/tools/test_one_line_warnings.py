"""The command lines show a dataset warning as one `warning: ...` line, others as Python does."""

import warnings

from resdet.data.errors import DatasetWarning
from resdet.utils.cli import one_line_warnings


def test_dataset_warnings_in_one_line(monkeypatch):
    monkeypatch.setattr(warnings, "formatwarning", warnings.formatwarning)
    one_line_warnings()
    shown = warnings.formatwarning("dropped 2 boxes", DatasetWarning, "catalog.py", 120, "code")
    assert shown == "warning: dropped 2 boxes\n"
    other = warnings.formatwarning("careful", UserWarning, "x.py", 3, "code")
    assert other.startswith("x.py:3: UserWarning: careful")

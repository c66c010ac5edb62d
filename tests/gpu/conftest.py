"""Every test in tests/gpu is marked ``gpu`` and skipped, with the reason, where CUDA is not available."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

HERE = Path(__file__).parent


def pytest_collection_modifyitems(config, items):
    # this hook sees the whole session's items, so only the ones under this folder are touched
    skip = None if torch.cuda.is_available() else pytest.mark.skip(reason="needs CUDA: torch.cuda.is_available() "
                                                                          "is False on this machine")
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.gpu)
            if skip is not None:
                item.add_marker(skip)

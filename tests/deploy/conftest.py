from __future__ import annotations

import helm_python
import pytest

from .rendering import CHART


@pytest.fixture(scope="session")
def chart():
    """The chart loaded once; Helm charts are immutable and safe to share."""
    with helm_python.Chart.load(CHART) as loaded:
        yield loaded

"""Data-area fixtures: a source cache assembled from the committed miniature packages."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mofi_platform.databuild.fixtures import fixture_dir, fixture_sources


@pytest.fixture()
def dirs():
    """source key -> miniature unpacked package (the extractors' ``dirs`` argument)."""
    return fixture_sources


@pytest.fixture()
def fixture_cache(tmp_path) -> Path:
    """A cache dir laid out as `mofi data fetch` leaves it, holding the miniature packages (nothing downloaded)."""
    cache = tmp_path / "cache"
    for src in sorted((fixture_dir() / "sources").iterdir()):
        dest = cache / "unpacked" / src.name
        shutil.copytree(src, dest)
        (dest / ".unpacked").write_text("fixture")
    return cache

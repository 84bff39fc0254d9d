"""The committed test fixture (tests/fixtures): a tiny redistributable slice of every source.

Why a library module: tests of every area (NER, scorer, writer, training) need the same real images,
alt-texts and entities without a fetch; this is the one place that knows where they live and how
they are laid out. ``tests/fixtures/make_fixtures.py`` regenerates them from a fetched cache.
"""

from __future__ import annotations

import json
from pathlib import Path

from mofi_platform.databuild.corpus import MIME_BY_EXT, CorpusSample

__all__ = [
    "FixturePair",
    "fixture_dir",
    "fixture_sources",
    "load_fixture_pairs",
    "fixture_kb_path",
    "fixture_benchmark_dir",
    "fixture_bad_dir",
]


#: A fixture pair has exactly a corpus sample's fields, so it can stand in wherever the corpus is read.
FixturePair = CorpusSample


def fixture_dir() -> Path:
    """tests/fixtures of this checkout (the package is installed editable from the repository)."""
    path = Path(__file__).resolve().parents[1] / "tests" / "fixtures"
    if not path.is_dir():
        raise FileNotFoundError(f"no test fixture at {path}: it ships with the repository, not the wheel")
    return path


def fixture_sources(key: str) -> Path:
    """Miniature unpacked source package, laid out like ``mofi_platform.databuild.fetch.unpacked_dir``."""
    root = fixture_dir() / "sources" / key
    return root / "package" if (root / "package").is_dir() else root


def fixture_kb_path() -> Path:
    return fixture_dir() / "kb.jsonl"


def fixture_benchmark_dir() -> Path:
    return fixture_dir() / "benchmark"


def fixture_bad_dir() -> Path:
    return fixture_dir() / "bad"


def load_fixture_pairs() -> list[FixturePair]:
    folder = fixture_dir() / "corpus"
    out = []
    for line in (folder / "pairs.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        image = folder / row["image"]
        out.append(
            FixturePair(
                row["pair_id"],
                row["text"],
                row["source"],
                row["licence"],
                row["original_path"],
                image.read_bytes(),
                MIME_BY_EXT[image.suffix.lstrip(".")],
            )
        )
    return out

"""A raw image-text pair as an extractor finds it, and the stable pair id.

Why the id is derived, not assigned: re-running an extractor (or a tar member renamed) must give
the same pair the same id, so Kafka replays and shard rewrites deduplicate instead of duplicating.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

__all__ = ["RawPair", "pair_id"]


def pair_id(source: str, original_path: str) -> str:
    """First 16 hex chars of sha1("<source>:<original_path>")."""
    return hashlib.sha1(f"{source}:{original_path}".encode()).hexdigest()[:16]


@dataclass(frozen=True)
class RawPair:
    source: str
    licence: str
    original_path: str  # path inside the source package (and inside the .rcc for GCompris)
    text: str  # noisy alt-text, exactly as the source words it
    data: bytes  # the image file as shipped
    is_svg: bool = False
    photo: bool = False  # photographs are stored as JPEG, drawings as PNG

    @property
    def pair_id(self) -> str:
        return pair_id(self.source, self.original_path)

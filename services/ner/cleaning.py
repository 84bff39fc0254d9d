"""Blanking photo credits, URLs, licences and file-name noise out of alt-texts before NER.

Why: the corpus keeps each source's words as they are (DATA.md, Raw corpus), and those words carry
credits and catalogue noise: "M 1 - image: Stephane Dumont" would label a nebula photo with the city
of Dumont, "www.grasslands.org - image: Grasslands Observatory" with grassland and lookout. Cleaning
belongs to NER, not to the corpus: the raw text stays the record of what the source said, and a rule
changed here applies to every text on the next extraction without rebuilding shards.

Why blanks: each stripped span becomes spaces of the same length, so the offsets of mentions found in
the cleaned text are offsets into the original text, which is what the service reports.

Every rule is one entry of :data:`RULES`, named for what it removes; ``tests/ner/test_cleaning.py``
checks them on real corpus lines (``tests/fixtures/credit_lines.jsonl``).
"""

from __future__ import annotations

import re

__all__ = ["RULES", "credit_spans", "clean_text"]

_WEB = r"(?:org|com|net|edu|gov|int|info|io|ua|de|fr|uk|it|es|nl|ru|jp|cn|au|ca|ch)"

#: (name, pattern): every match is blanked. Order does not matter (spans are merged).
RULES: tuple[tuple[str, re.Pattern[str]], ...] = (
    # "... - image: Stephane Dumont", "credit: NASA": a credit runs to the end of its line (not the emoji
    # short name in "information source :information_source:")
    (
        "credit",
        re.compile(
            r"(?:\s+[-–—|]\s+|\s*[,;]\s*|\s+|^)(?<![\w:])(?:images?|photos?|photograph|pictures?|credits?|courtesy|"
            r"author|photographer|source)\s*:(?!\S)[^\n]*",
            re.I | re.M,
        ),
    ),
    # "photo by Jane Doe", "image courtesy of ESO" (up to a comma, bracket or line end)
    ("photo_by", re.compile(r"\b(?:photo(?:graph)?|image|picture)s?\s+(?:by|courtesy of)\s+[^,;()\n]+", re.I)),
    # "© 2019 Jane Doe", "(c) Jane Doe", "Copyright Adam Block" (a bare "copyright" keyword stays)
    ("copyright", re.compile(r"(?:©|\([cC]\)|\b[Cc]opyright\s+(?=[A-Z0-9©]))\s*[^,;()\n]*")),
    # "CC-BY-SA 4.0", "CC BY 2.0", "CC0" (upper case: "circled cc" is an emoji's name)
    ("licence", re.compile(r"\bCC[- ]?(?:BY(?:[- ](?:SA|ND|NC))*|0)(?:[- ]?\d\.\d)?\b")),
    # "https://example.org/a.jpg", "www.grasslands.org", "http www.treebui"
    ("url", re.compile(r"\bhttps?:/+\S+|(?:\bhttps?:?/*\s+)?\bwww\.\S+", re.I)),
    ("email", re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")),
    # "olegbr.astroclub.kiev.ua", "grasslands.org/m1"
    ("domain", re.compile(rf"\b[\w-]+(?:\.[\w-]+)*\.{_WEB}\b(?:/\S*)?", re.I)),
    # web page names "n4216.shtml", "fs-ccd.htm", "view-image.php"
    ("web_page", re.compile(r"\S+\.(?:s?html?|php|aspx?|jsp|cgi)\b(?:#\S*)?", re.I)),
    # query strings: every "?key=" / "&key=" and numeric value ("?image=182654&picture=old-hammer" keeps
    # "old-hammer"); with three or more parameters, all of it
    ("query", re.compile(r"\?[^\s?=&]+=[^\s&]*(?:&[^=&\n]+=[^\s&]*){2,}|[?&][^\s?=&]+=(?:\d+\b)?")),
    # an image file's extension ("Sheep.jpg" keeps "Sheep")
    ("file_extension", re.compile(r"(?<=\w)\.(?:jpe?g|png|gif|svg|tiff?|webp|bmp)\b", re.I)),
    # Wikimedia Commons / Flickr numeric ids "(48875955288)"
    ("commons_id", re.compile(r"\(\d{6,}\)")),
    # camera file names "IMG 5109", "IMG_5109", "DSC05807", "DSCN1716", "DSC_0012", "P1010123"
    ("camera_file", re.compile(r"\b(?:IMG|DSC[NF]?|DCIM|PICT)[ _-]?\d{3,}\b|\bP\d{7}\b")),
    # ESO / Hubble release ids "eso1021d", "heic1513b", "opo9935c", "potw1015a"; user folders "~peterv"
    ("release_id", re.compile(r"\b(?:eso|heic|opo|potw)\d{4}[a-z]{0,2}\b|(?<!\S)~\w+", re.I)),
)


def credit_spans(text: str) -> list[tuple[int, int, str]]:
    """(start, end, rule) of every span the rules remove, by start; overlapping spans are kept apart."""
    return sorted((m.start(), m.end(), name) for name, rx in RULES for m in rx.finditer(text) if m.end() > m.start())


def clean_text(text: str) -> str:
    """``text`` with every credit, URL, licence and file-name span replaced by spaces of the same length."""
    spans = credit_spans(text)
    if not spans:
        return text
    chars = list(text)
    for start, end, _ in spans:
        chars[start:end] = " " * (end - start)
    return "".join(chars)

"""IFCT 2017 food photos (AGPL: fetched at build time, never redistributed) named from the descriptions table."""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator
from pathlib import Path

from mofi_platform.databuild.pairs import RawPair

__all__ = ["ifct_pairs"]

LICENCE = "AGPL-3.0-only"


def ifct_pairs(dirs: Callable[[str], Path]) -> Iterator[RawPair]:
    with (dirs("ifct-descriptions") / "index.csv").open(encoding="utf-8") as fh:
        rows = {r["code"]: r for r in csv.DictReader(fh)}
    assets = dirs("ifct-pictures") / "assets"
    for image in sorted(assets.glob("*.jp*g")):
        row = rows.get(image.stem)
        if row is None:
            continue
        scie = (row.get("scie") or "").strip()
        text = f"{row['name']} ({scie})" if scie else row["name"]
        yield RawPair("ifct", LICENCE, f"assets/{image.name}", text, image.read_bytes(), photo=True)

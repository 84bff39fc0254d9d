"""The recipe ablation's table: its columns and how each cell is written, read from ``results.json``.

Why one home: ``benchmarks/train_ablation.py`` writes ``results.json`` (one row per recipe) and the
Markdown table pasted into RESULTS.md from it; the demo report shows the same table from the same
file. Both take the columns and their precision from here, so the report and RESULTS.md print the
same numbers the same way.

The numbers in RESULTS.md are committed as ``benchmarks/ablation/results.json``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Column", "AblationTable", "columns", "load_ablation", "markdown_table"]


@dataclass(frozen=True)
class Column:
    """A column of the table: the row field it shows (``domain``: a key of that mapping) and its precision."""

    title: str
    key: str
    domain: str | None = None
    digits: int | None = None  # None: the value as written
    metric: bool = False  # higher is better; the best value is highlighted

    def value(self, row: Mapping[str, Any]) -> Any:
        value = row.get(self.key)
        return (value or {}).get(self.domain) if self.domain else value

    def cell(self, row: Mapping[str, Any]) -> str:
        """The value as RESULTS.md writes it: fixed digits for metrics, ``n/a`` where the row has none."""
        value = self.value(row)
        if value is None:
            return "n/a"
        return f"{value:.{self.digits}f}" if self.digits is not None else str(value)


def columns(rows: Sequence[Mapping[str, Any]]) -> list[Column]:
    """The columns for ``rows``: one per domain of ``map_per_domain``; a field no row carries is left out."""
    domains = sorted({d for r in rows for d in r.get("map_per_domain") or {}})
    cols = [Column("row", "row"), Column("mAP", "map", digits=4, metric=True)]
    cols += [Column(f"mAP {d}", "map_per_domain", domain=d, digits=4, metric=True) for d in domains]
    cols += [
        Column("zero-shot top-1", "zero_shot_top1", digits=3, metric=True),
        Column("linear probe top-1", "linear_probe_top1", digits=3, metric=True),
        Column("train s", "train_seconds"),
    ]
    return [c for c in cols if c.domain or any(c.key in r for r in rows)]


def markdown_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """The pipe table of RESULTS.md's Results section."""
    cols = columns(rows)
    lines = ["| " + " | ".join(c.title for c in cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(c.cell(r) for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"


@dataclass
class AblationTable:
    """The rows of one ``results.json``, with its note (what the columns mean, how they were measured)."""

    path: Path
    rows: list[dict[str, Any]]
    note: str = ""

    @property
    def columns(self) -> list[Column]:
        return columns(self.rows)

    def best(self, col: Column) -> str | None:
        """The best cell of a metric column as written (None: not a metric, or fewer than two values)."""
        values = [col.value(r) for r in self.rows]
        values = [v for v in values if isinstance(v, (int, float))]
        if not col.metric or len(values) < 2:
            return None
        return col.cell({col.key: {col.domain: max(values)}} if col.domain else {col.key: max(values)})


def load_ablation(path: str | Path) -> AblationTable:
    """Read a ``results.json`` written by ``benchmarks/train_ablation.py``."""
    path = Path(path)
    doc = json.loads(path.read_text(encoding="utf-8"))
    return AblationTable(path=path, rows=list(doc.get("rows") or []), note=str(doc.get("note") or ""))

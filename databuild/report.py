"""The build report: what each source gave, what was rejected and why, text lengths, KB size by source.

Why a JSON file plus a text rendering: `mofi data build` prints it, `mofi data report` reprints it
later, and DATA.md quotes its numbers, all from the same ``report.json``.
"""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["REPORT_NAME", "load_report", "render_report"]

REPORT_NAME = "report.json"


def load_report(build_dir: str | Path) -> dict:
    path = Path(build_dir) / REPORT_NAME
    if not path.exists():
        raise FileNotFoundError(f"no build report at {path}: run `mofi data build` first")
    return json.loads(path.read_text())


def _table(header: list[str], rows: list[list]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return out


def render_report(report: dict) -> str:
    """Markdown tables (readable on a terminal too)."""
    lines = [f"# Data build report ({report.get('built', '')})", ""]
    if report.get("packages"):
        lines += ["## Source packages", ""]
        lines += _table(
            ["key", "client", "package", "version", "licence", "sha256"],
            [
                [p["key"], p["client"], p["name"], p["version"], p["licence"], p["sha256"][:12]]
                for p in report["packages"]
            ],
        )
        lines.append("")
    corpus = report.get("corpus", [])
    if corpus:
        lines += ["## Corpus", "", f"Output: `{report.get('out', '')}`", ""]
        sel = report.get("selection", {})
        if sel.get("max_per_source") or sel.get("pairs"):
            parts = [f"at most {sel['max_per_source']} pairs per source"] if sel["max_per_source"] else []
            if sel["pairs"]:
                kind = "dense (whole entities drawn by many sources)" if sel.get("subset") == "dense" else "seeded"
                parts.append(f"a {kind} subset of {sel['pairs']} pairs (seed {sel['seed']})")
            lines += ["Selection: " + ", then ".join(parts), ""]
        rows = []
        for c in corpus:
            t = c.get("text_chars", {})
            rej = ", ".join(f"{k} {v}" for k, v in sorted(c["rejected"].items())) or "-"
            rows.append(
                [
                    c["source"],
                    c["found"],
                    c["selected"],
                    c["kept"],
                    rej,
                    f"{t.get('min', '-')}/{t.get('median', '-')}/{t.get('mean', '-')}/{t.get('max', '-')}",
                    c["shards"],
                ]
            )
        rows.append(
            [
                "**total**",
                sum(c["found"] for c in corpus),
                sum(c["selected"] for c in corpus),
                sum(c["kept"] for c in corpus),
                sum(sum(c["rejected"].values()) for c in corpus),
                "",
                sum(c["shards"] for c in corpus),
            ]
        )
        lines += _table(
            [
                "source",
                "found",
                "selected",
                "kept",
                "rejected (reason count)",
                "text chars min/median/mean/max",
                "shards",
            ],
            rows,
        )
        lines.append("")
    kb = report.get("kb")
    if kb:
        lines += [
            "## Knowledge base",
            "",
            f"{kb['entities']} entities, {kb['aliases']} distinct aliases, "
            f"loads in {kb['load_seconds']} s (`{kb['path']}`)",
            "",
        ]
        lines += _table(
            ["source", "entities", "merged into another", "duplicate ids"],
            [[s, n, kb["merged"].get(s, 0), kb["dup_ids"].get(s, 0)] for s, n in sorted(kb["by_source"].items())],
        )
        lines.append("")
        if same := kb.get("same_as"):
            rules = ", ".join(f"{r} {n}" for r, n in sorted(same["by_rule"].items())) or "none"
            lines += [
                f"Same-as links: {same['alias_entities']} alias entities onto {same['canonical_entities']} "
                f"canonical ones ({rules})",
                "",
            ]
    bench = report.get("benchmark")
    if bench:
        lines += ["## Benchmark", "", f"`{bench['dir']}`", ""]
        lines += _table(
            ["domain", "classes", "images"],
            [[d, bench["classes"][d], bench["images"][d]] for d in sorted(bench["classes"])],
        )
        lines += [
            "",
            "Rejected: " + (", ".join(f"{k} {v}" for k, v in sorted(bench["rejected"].items())) or "none"),
            "",
        ]
    if report.get("seconds"):
        lines.append(f"Build time: {report['seconds']} s")
    return "\n".join(lines)

"""The demo report as one self-contained ``index.html``: what :mod:`.collect` gathered, through the templates.

Why one file with the stylesheet inlined and ``data:`` images: the report is opened from a laptop, a CI
artefact or a pod's volume, often without network; nothing in it fetches anything. The page lives in
``templates/`` (Jinja2, autoescaped: alt-texts are untrusted) and ``static/report.css``; plots are
drawn here with matplotlib and embedded as PNG.

Every section is built on its own: a section whose input is missing says "not available", and one
that fails (reading its input or rendering it) shows its error while the rest of the report is still
written.
"""

from __future__ import annotations

import base64
import io
import logging
import re
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

from mofi.objstore import ObjectStore
from mofi_platform.pipelines.report.ablation import load_ablation
from mofi_platform.pipelines.report.collect import (
    TOP_ENTITIES,
    I2EStats,
    SearchExample,
    as_hit,
    collect_i2e,
    eval_table,
    map_bars,
    search_sheets,
    training_table,
)

__all__ = ["build_report"]

log = logging.getLogger(__name__)

_HERE = Path(__file__).parent


def _fmt(value: Any) -> str:
    """A value as the report writes it: thousands separated, short floats, yes/no, n/a for None."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 100 else f"{value:.4f}".rstrip("0").rstrip(".") if value else "0"
    return str(value)


def _clip(text: Any, n: int = 220) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1] + "\u2026"


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(_HERE / "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(fmt=_fmt, clip=_clip)
    env.tests.update(
        location=lambda text: bool(re.match(r"^[a-z][a-z0-9+.-]*://|^/", text)),  # a URI or an absolute path
        plain_number=lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    )
    env.globals.update(top_entities=TOP_ENTITIES)
    return env


_ENV = _environment()


def _macros() -> Any:
    """The section macros of ``templates/sections.html.j2``, callable from Python."""
    return _ENV.get_template("sections.html.j2").module


def _png_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _score_plot(kept: list[float], dropped: list[float], threshold: float | None) -> str | None:
    """Histogram of kept and dropped entities' CLIP scores with the threshold, as a PNG data URI."""
    if not kept and not dropped:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    allv = kept + dropped
    lo, hi = min(allv), max(allv)
    if threshold is not None:
        lo, hi = min(lo, threshold), max(hi, threshold)
    if hi - lo < 1e-6:
        lo, hi = lo - 0.05, hi + 0.05
    bins = [lo + (hi - lo) * i / 30 for i in range(31)]
    fig, ax = plt.subplots(figsize=(6.4, 2.8))
    if dropped:
        ax.hist(dropped, bins=bins, color="#cf222e", alpha=0.65, label=f"dropped ({len(dropped):,})")
    if kept:
        ax.hist(kept, bins=bins, color="#1a7f37", alpha=0.75, label=f"kept ({len(kept):,})")
    if threshold is not None:
        ax.axvline(threshold, color="#24292f", linestyle="--", linewidth=1, label=f"threshold {threshold:g}")
    ax.set_xlabel("CLIP image-text cosine")
    ax.set_ylabel("entities")
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, frameon=False, loc="lower left", bbox_to_anchor=(0, 1.0), ncol=3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return _png_uri(buf.getvalue())


def _curves(runs: Mapping[str, list[dict[str, Any]]], chance: Mapping[str, float] | None) -> str:
    from mofi_platform.training.curves import plot_training_curves

    with tempfile.TemporaryDirectory() as tmp:
        return _png_uri(plot_training_curves(dict(runs), Path(tmp) / "curves.png", chance).read_bytes())


@dataclass
class _Section:
    id: str
    name: str
    html: Markup


def _guard(title: str, fn: Callable[[], str]) -> Markup:
    """A section's HTML, or its error: one failing input never costs the rest of the report."""
    try:
        return Markup(fn())
    except Exception as e:  # noqa: BLE001 - shown in the report and logged with its traceback
        log.exception("report: section %r failed", title)
        return Markup(_macros().failed(type(e).__name__, str(e)))


def _ablation_section(results: Path | None) -> str:
    macros = _macros()
    if results is None:
        return macros.na("no ablation results (results.json) were given")
    if not results.is_file():
        return macros.na(f"{results} does not exist")
    table = load_ablation(results)
    if not table.rows:
        return macros.na(f"{results} has no rows")
    return macros.ablation(table)


def build_report(
    out_dir: str | Path,
    settings: Any,
    summary: Mapping[str, Any] | None = None,
    eval_results: Mapping[str, Any] | None = None,
    run_metrics: Mapping[str, list[dict[str, Any]]] | None = None,
    ablation_results: str | Path | None = None,
    searches: Sequence[SearchExample] = (),
    max_examples: int = 12,
    max_hits: int = 24,
    max_stat_shards: int = 256,
    example_shards: int = 4,
    title: str = "MOFI demo report",
    store: ObjectStore | None = None,
) -> Path:
    """Write ``out_dir/index.html`` (self-contained) and return its path.

    ``settings`` is a :class:`mofi.settings.Settings` (its ``s3``, ``writer`` and ``scorer`` sections
    are read); ``eval_results`` is the JSON ``mofi eval`` writes (or a mapping of name -> such JSON);
    ``run_metrics`` maps a run name to ``mofi_platform.training.checkpointer.read_metrics`` output;
    ``ablation_results`` is the ``results.json`` of ``benchmarks/train_ablation.py``; hits in ``searches``
    are :class:`SearchHit` (dicts or ``mofi.v1.SearchHit`` messages are converted).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    store = store or ObjectStore(settings.s3)
    threshold = getattr(getattr(settings, "scorer", None), "threshold", None)
    hit_ids = {as_hit(h).pair_id for q in searches for h in list(q.hits)[:max_hits]}
    macros = _macros()

    stats: I2EStats | None = None

    def i2e() -> str:
        nonlocal stats
        stats = collect_i2e(
            store,
            settings,
            hit_ids,
            max_examples=max_examples,
            max_stat_shards=max_stat_shards,
            example_shards=example_shards,
        )
        return macros.i2e(stats, threshold, _score_plot(stats.kept_scores, stats.dropped_scores, threshold))

    def training() -> str:
        runs = {k: v for k, v in (run_metrics or {}).items() if v}
        table = eval_table(eval_results)
        chance = next(
            (r["class_loss_chance"] for _, r in (table.rows if table else []) if r.get("class_loss_chance")), None
        )
        return macros.training(
            _curves(runs, {"class_loss": chance["value"]} if chance else None) if runs else None,
            training_table(runs) if runs else None,
            table,
            chance,
            [(label, map_bars(r)) for label, r in table.rows] if table else [],
        )

    sections = [
        ("summary", "Run summary", lambda: macros.summary(summary)),
        ("i2e", "I2E dataset", i2e),
        (
            "examples",
            "Kept and dropped entities",
            lambda: macros.examples(stats, threshold) if stats else macros.na("the I2E dataset could not be read"),
        ),
        ("training", "Training and evaluation", training),
        (
            "ablation",
            "Recipe ablation (RESULTS.md)",
            lambda: _ablation_section(Path(ablation_results) if ablation_results is not None else None),
        ),
        (
            "search",
            "Retrieval",
            lambda: (
                macros.searches(search_sheets(list(searches), stats, max_hits))
                if searches
                else macros.na("no searches were run")
            ),
        ),
    ]
    doc = _ENV.get_template("report.html.j2").render(
        title=title,
        bucket=settings.s3.i2e_bucket,
        css=Markup((_HERE / "static" / "report.css").read_text()),
        generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        sections=[_Section(sid, name, _guard(name, fn)) for sid, name, fn in sections],
    )
    path = out_dir / "index.html"
    path.write_text(doc, encoding="utf-8")
    log.info("report: wrote %s (%.1f kB)", path, path.stat().st_size / 1024)
    return path

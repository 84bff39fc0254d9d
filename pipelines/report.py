"""The end-to-end demo's HTML report: one self-contained ``index.html`` that shows what every stage made.

Sections: the run summary; I2E statistics read from the object store (shards, images, entities,
sources, entities per image, top entities, CLIP score distribution, pairs dropped for having no
entity); examples of kept and dropped entities with their images; training curves and evaluation
results; the recipe ablation table from RESULTS.md; retrieval contact sheets for searches.

Why one file with inline CSS and ``data:`` images: the report is opened from a laptop, a CI artefact
or a pod's volume, often without network; nothing in it fetches anything. Images are downscaled
thumbnails (JPEG, at most :data:`THUMB_PX` pixels a side), so the file stays a few megabytes.

Why hits are plain :class:`SearchHit` values: gRPC search answers carry no image bytes. The report
resolves each hit's image by pair id from the I2E shards: manifests list their pair ids, so only
the shards holding a hit are opened beyond those read for statistics.

Why statistics are split: counts that manifests carry (shards, images, per-entity image counts) cover
the whole dataset at a few kilobytes per shard; per-sample statistics (sources, entities per image,
CLIP scores) need the shards themselves and are read from at most ``max_stat_shards`` of them, and
the report says when that is a subset.

Every section is built on its own: a section whose input is missing says "not available", and
one that fails shows its error while the rest of the report is still written.
"""

from __future__ import annotations

import base64
import html
import io
import itertools
import logging
import re
import tempfile
from collections import Counter
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from tqdm import tqdm

from mofi.i2e import I2ESample, iter_shard, list_shards, read_manifest
from mofi.objstore import ObjectStore
from mofi_platform.services.scorer.drops import count_no_entity, iter_no_entity, no_entity_prefix

__all__ = [
    "SearchHit",
    "SearchExample",
    "EntityExample",
    "I2EStats",
    "THUMB_PX",
    "build_report",
    "collect_i2e",
    "thumbnail_data_uri",
    "parse_markdown_table",
]

log = logging.getLogger(__name__)

THUMB_PX = 160
_NO_ENTITY_EXAMPLES = 6
_TOP_ENTITIES = 20


# --------------------------------------------------------------------------------------------- inputs


@dataclass
class SearchHit:
    """One search result; mirrors ``mofi.v1.SearchHit`` (protos/mofi/v1/embedder.proto)."""

    pair_id: str
    score: float
    entity_names: list[str] = field(default_factory=list)
    text: str = ""
    source: str = ""
    entity_ids: list[str] = field(default_factory=list)

    @classmethod
    def from_proto(cls, hit: Any) -> "SearchHit":
        """From a ``mofi.v1.SearchHit`` message (or anything with its fields)."""
        return cls(pair_id=hit.pair_id, score=float(hit.score), entity_names=list(hit.entity_names),
                   text=hit.text, source=hit.source, entity_ids=list(hit.entity_ids))


@dataclass
class SearchExample:
    """A query (text, image bytes, or both) and its hits, best first; ``title`` labels the sheet."""

    query_text: str | None = None
    query_image: bytes | None = None
    hits: list[SearchHit] = field(default_factory=list)
    title: str | None = None


@dataclass
class EntityExample:
    """An I2E image shown with its kept and dropped entities."""

    pair_id: str
    source: str
    text: str
    thumb: str | None
    kept: list[dict[str, Any]]
    dropped: list[dict[str, Any]] | None  # None: the sample carries no dropped list


@dataclass
class I2EStats:
    """What the report shows about the I2E dataset; see :func:`collect_i2e`."""

    prefix: str
    no_entity_prefix: str
    shards: int = 0
    images: int = 0
    entities: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> {name, count}
    scanned_shards: int = 0
    scanned_images: int = 0
    unreadable_shards: list[str] = field(default_factory=list)
    sources: Counter = field(default_factory=Counter)
    entities_per_image: Counter = field(default_factory=Counter)
    kept_scores: list[float] = field(default_factory=list)
    dropped_scores: list[float] = field(default_factory=list)
    with_dropped_list: int = 0
    no_entity: int = 0
    no_entity_examples: list[dict[str, Any]] = field(default_factory=list)
    examples: list[EntityExample] = field(default_factory=list)
    hit_thumbs: dict[str, str] = field(default_factory=dict)
    hit_meta: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def entity_labels(self) -> int:
        """Image-entity pairs over the whole dataset (from manifests)."""
        return sum(int(row.get("count", 0)) for row in self.entities.values())


# ----------------------------------------------------------------------------------------- collection


def thumbnail_data_uri(data: bytes, size: int = THUMB_PX) -> str | None:
    """A ``data:image/jpeg`` URI of the image scaled to fit ``size`` px; None if it does not decode."""
    from PIL import Image, ImageOps

    try:
        with Image.open(io.BytesIO(data)) as raw:
            raw.draft("RGB", (size * 2, size * 2))  # JPEG: decode at reduced scale
            im = ImageOps.exif_transpose(raw)
            if im.mode in ("RGBA", "LA", "P", "PA"):
                im = im.convert("RGBA")
                bg = Image.new("RGB", im.size, (255, 255, 255))
                bg.paste(im, mask=im.getchannel("A"))
                im = bg
            else:
                im = im.convert("RGB")
            im.thumbnail((size, size), Image.Resampling.LANCZOS)
            buf = io.BytesIO()
            im.save(buf, "JPEG", quality=82, optimize=True)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        log.warning("report: undecodable image (%s)", e)
        return None
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _pick_examples(candidates: list[I2ESample], n: int) -> list[I2ESample]:
    """Up to ``n`` samples, those with dropped entities first, alternating between sources."""
    by_source: dict[str, list[I2ESample]] = {}
    for s in sorted(candidates, key=lambda s: not s.meta.get("dropped")):
        by_source.setdefault(str(s.meta.get("source", "")), []).append(s)
    out: list[I2ESample] = []
    for row in itertools.zip_longest(*by_source.values()):
        out += [s for s in row if s is not None]
    return out[:n]


def collect_i2e(store: ObjectStore, settings: Any, hit_pair_ids: Iterable[str] = (), max_examples: int = 12,
                max_stat_shards: int = 256, example_shards: int = 4) -> I2EStats:
    """Read what the report shows about the I2E dataset from the object store.

    Every manifest is read (counts over the whole dataset); the first ``max_stat_shards`` shards are
    read for per-sample statistics, ``example_shards`` of them spread over the list also for examples, and any
    other shard only when it holds one of ``hit_pair_ids`` (its thumbnail).
    """
    prefix = f"s3://{settings.s3.i2e_bucket}/{settings.writer.prefix}"
    st = I2EStats(prefix=prefix, no_entity_prefix=no_entity_prefix(settings.s3.i2e_bucket))
    wanted = set(hit_pair_ids)
    shards = list_shards(store, prefix)
    st.shards = len(shards)
    pair_shard: dict[str, str] = {}
    def manifest(uri: str) -> tuple[str, dict[str, Any] | None]:
        try:
            return uri, read_manifest(store, uri)
        except Exception as e:  # deleted or damaged since listing: reported, not fatal
            log.warning("report: cannot read the manifest of %s: %s", uri, e)
            return uri, None

    readable: list[str] = []
    with ThreadPoolExecutor(8) as pool:
        for uri, m in tqdm(pool.map(manifest, shards), total=len(shards), desc="report: I2E manifests", unit="shard"):
            if m is None:
                st.unreadable_shards.append(uri)
                continue
            readable.append(uri)
            pair_ids = m.get("pair_ids", [])
            st.images += int(m.get("count", len(pair_ids)))
            for pid in pair_ids:
                if pid in wanted:
                    pair_shard[pid] = uri
            for eid, row in (m.get("entities") or {}).items():
                agg = st.entities.setdefault(eid, {"name": row.get("name", eid), "count": 0})
                agg["count"] += int(row.get("count", 0))

    stat_shards = readable[:max(0, max_stat_shards)]
    stat_set = set(stat_shards)
    # Examples come from shards spread over the dataset (shards are written source by source).
    example_set = set(stat_shards[::max(1, len(stat_shards) // max(1, example_shards))][:example_shards])
    per_shard = max(1, 4 * max_examples // max(1, example_shards))
    to_open = stat_shards + sorted(set(pair_shard.values()) - stat_set)
    candidates: list[I2ESample] = []
    for uri in tqdm(to_open, desc="report: I2E shards", unit="shard"):
        try:
            samples = list(iter_shard(store, uri))
        except Exception as e:  # a damaged shard is reported, not fatal
            log.warning("report: cannot read %s: %s", uri, e)
            st.unreadable_shards.append(uri)
            continue
        taken = 0
        for s in samples:
            if uri in stat_set:
                kept = s.meta.get("entities") or []
                st.scanned_images += 1
                st.sources[str(s.meta.get("source") or "unknown")] += 1
                st.entities_per_image[len(kept)] += 1
                st.kept_scores += [float(e["score"]) for e in kept if "score" in e]
                if "dropped" in s.meta:
                    st.with_dropped_list += 1
                    st.dropped_scores += [float(e["score"]) for e in s.meta["dropped"] or [] if "score" in e]
                if uri in example_set and taken < per_shard:
                    candidates.append(s)
                    taken += 1
            if s.pair_id in wanted and s.pair_id not in st.hit_thumbs:
                thumb = thumbnail_data_uri(s.image_bytes)
                if thumb:
                    st.hit_thumbs[s.pair_id] = thumb
                st.hit_meta[s.pair_id] = s.meta
        if uri in stat_set:
            st.scanned_shards += 1

    for s in _pick_examples(candidates, max_examples):
        dropped = s.meta.get("dropped")
        st.examples.append(EntityExample(
            pair_id=s.pair_id, source=str(s.meta.get("source", "")), text=str(s.meta.get("text", "")),
            thumb=thumbnail_data_uri(s.image_bytes), kept=list(s.meta.get("entities") or []),
            dropped=list(dropped) if dropped is not None else None))

    st.no_entity = count_no_entity(store, settings.s3.i2e_bucket)
    st.no_entity_examples = list(itertools.islice(iter_no_entity(store, settings.s3.i2e_bucket), _NO_ENTITY_EXAMPLES))
    return st


def parse_markdown_table(text: str) -> tuple[str | None, list[str], list[list[str]], str] | None:
    """The first pipe table outside code fences: (nearest heading, header, rows, note after it)."""

    def cells(line: str) -> list[str]:
        line = line.strip()
        if line.startswith("|"):
            line = line[1:]
        if line.endswith("|") and not line.endswith("\\|"):
            line = line[:-1]
        return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line)]

    sep = re.compile(r"^\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?$")
    lines = text.splitlines()
    heading, fenced = None, False
    for i, line in enumerate(lines):
        s = line.strip()
        if s.startswith("```") or s.startswith("~~~"):
            fenced = not fenced
            continue
        if fenced:
            continue
        if s.startswith("#"):
            heading = s.lstrip("#").strip()
        elif s.startswith("|") and i + 1 < len(lines) and sep.match(lines[i + 1].strip()):
            header = cells(s)
            rows, j = [], i + 2
            while j < len(lines) and lines[j].strip().startswith("|"):
                rows.append(cells(lines[j]))
                j += 1
            while j < len(lines) and not lines[j].strip():
                j += 1
            note = []
            while j < len(lines) and lines[j].strip() and not lines[j].lstrip().startswith(("#", "|")):
                note.append(lines[j].strip())
                j += 1
            return heading, header, rows, " ".join(note)
    return None


# ------------------------------------------------------------------------------------------ rendering


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _inline_md(text: str) -> str:
    """Escaped text with `code` and **bold** rendered (the only markup our tables use)."""
    out = _e(text)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", out)


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 100 else f"{value:.4f}".rstrip("0").rstrip(".") if value else "0"
    return str(value)


def _is_num(text: str) -> bool:
    return bool(re.fullmatch(r"[-+]?[\d,]*\.?\d+(e[-+]?\d+)?%?", text.strip()))


def _na(what: str) -> str:
    return f'<p class="na">Not available: {_e(what)}</p>'


def _png_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _stat_tiles(items: Sequence[tuple[str, str, Any, str | None]]) -> str:
    """Tiles of (key, label, value, hint); ``data-stat``/``data-value`` carry the raw number."""
    out = []
    for key, label, value, hint in items:
        title = f' title="{_e(hint)}"' if hint else ""
        out.append(f'<div class="tile" data-stat="{_e(key)}" data-value="{_e(value)}"{title}>'
                   f'<b>{_e(_fmt(value))}</b><span>{_e(label)}</span></div>')
    return f'<div class="tiles">{"".join(out)}</div>'


def _bar_table(rows: Sequence[tuple[Any, ...]], label: str, what: str) -> str:
    """Rows of (name, count) or (name, count, id); the id is shown small (names need not be unique)."""
    if not rows:
        return _na(f"no {what}")
    top = max(r[1] for r in rows) or 1
    body = []
    for name, c, *rest in rows:
        ident = f' <span class="id">{_e(rest[0])}</span>' if rest else ""
        body.append(f'<tr><td class="lbl" title="{_e(name)}">{_e(name)}{ident}</td><td class="num">{c:,}</td>'
                    f'<td class="bar"><div style="width:{100 * c / top:.1f}%"></div></td></tr>')
    body = "".join(body)
    return f'<table class="bars"><tr><th>{_e(label)}</th><th class="num">images</th><th></th></tr>{body}</table>'


def _histogram(counter: Counter, xlabel: str) -> str:
    if not counter:
        return _na("no images read")
    lo, hi = min(counter), max(counter)
    top = max(counter.values()) or 1
    cols = []
    for k in range(lo, hi + 1):
        n = counter.get(k, 0)
        cols.append(f'<div class="col" data-bin="{k}" data-count="{n}" title="{k}: {n:,} images">'
                    f'<span class="n">{n:,}</span><div class="fill" style="height:{100 * n / top:.1f}%"></div>'
                    f'<span class="x">{k}</span></div>')
    cols = "".join(cols)
    return f'<div class="hist">{cols}</div><p class="axis">{_e(xlabel)}</p>'


def _score_plot(kept: list[float], dropped: list[float], threshold: float | None) -> str:
    if not kept and not dropped:
        return _na("no CLIP scores read")
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
    return f'<img class="plot" alt="CLIP score distribution" src="{_png_uri(buf.getvalue())}">'


def _chips(entities: Iterable[Mapping[str, Any]] | None, kind: str) -> str:
    out = []
    for ent in entities or []:
        name = ent.get("name") or ent.get("id") or "?"
        score = ent.get("score")
        s = f'<span class="s">{float(score):.3f}</span>' if isinstance(score, (int, float)) else ""
        title = f' title="{_e(ent.get("id", ""))}"' if ent.get("id") else ""
        out.append(f'<span class="chip {kind}"{title}>{_e(name)}{s}</span>')
    return "".join(out)


def _thumb(uri: str | None, alt: str, pair_id: str, cls: str = "") -> str:
    if not uri:
        return '<div class="thumb missing"><span>no image</span></div>'
    return (f'<div class="thumb"><img class="{cls}" src="{uri}" alt="{_e(alt[:120])}" '
            f'data-pair-id="{_e(pair_id)}" loading="lazy"></div>')


def _clip(text: str, n: int = 220) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1] + "\u2026"


# ------------------------------------------------------------------------------------------- sections


def _section_summary(summary: Mapping[str, Any] | None) -> str:
    if not summary:
        return _na("the run passed no summary")
    rows = []
    for k, v in summary.items():
        text = _fmt(v)
        cell = f"<code>{_e(text)}</code>" if re.match(r"^[a-z][a-z0-9+.-]*://|^/", text) else _e(text)
        num = ' class="tab"' if isinstance(v, (int, float)) and not isinstance(v, bool) else ""
        rows.append(f'<tr data-key="{_e(k)}"><th>{_e(k)}</th><td{num}>{cell}</td></tr>')
    return f'<table class="kv">{"".join(rows)}</table>'


def _section_i2e(st: I2EStats, threshold: float | None) -> str:
    if st.shards == 0 and st.no_entity == 0:
        return _na(f"no I2E shards under {st.prefix}/ and no no-entity records under {st.no_entity_prefix}")
    mean_ents = st.entity_labels / st.images if st.images else 0.0
    dropped_in_shards = len(st.dropped_scores)
    tiles = _stat_tiles([
        ("shards", "shards", st.shards, f"complete shards under {st.prefix}/"),
        ("images", "images", st.images, "from shard manifests"),
        ("entities", "distinct entities", len(st.entities), "from shard manifests"),
        ("entity_labels", "image-entity labels", st.entity_labels, "from shard manifests"),
        ("entities_per_image", "entities per image (mean)", round(mean_ents, 2), None),
        ("no_entity", "pairs with no entity left", st.no_entity, f"objects under {st.no_entity_prefix}"),
        ("dropped_in_shards", "entities dropped in kept images", dropped_in_shards,
         f"from the 'dropped' lists of {st.with_dropped_list:,} scanned images"),
    ])
    scope = (f"Per-image statistics below are from all {st.scanned_shards:,} shards ({st.scanned_images:,} images)."
             if st.scanned_shards == st.shards - len(st.unreadable_shards) else
             f"Per-image statistics below are from the first {st.scanned_shards:,} of {st.shards:,} shards "
             f"({st.scanned_images:,} images); counts above cover every shard.")
    warn = ""
    if st.unreadable_shards:
        warn = (f'<p class="warn">{len(st.unreadable_shards)} shard(s) could not be read: '
                + ", ".join(f"<code>{_e(u)}</code>" for u in st.unreadable_shards[:5]) + "</p>")
    top = sorted(st.entities.items(), key=lambda kv: (-kv[1]["count"], kv[1]["name"]))[:_TOP_ENTITIES]
    top_rows = [(row["name"], row["count"], eid) for eid, row in top]
    source_rows = sorted(st.sources.items(), key=lambda kv: (-kv[1], kv[0]))
    no_drop_note = ("" if st.with_dropped_list else
                    '<p class="note">These shards carry no per-image dropped lists; the red bars are absent.</p>')
    return f"""
<p class="lead">Images with the entities the CLIP scorer kept, read from <code>{_e(st.prefix)}/</code>.</p>
{tiles}
<p class="note">{_e(scope)}</p>{warn}
<div class="cols">
  <div><h3>Images per source</h3>{_bar_table(source_rows, "source", "sources")}</div>
  <div><h3>Kept entities per image</h3>{_histogram(st.entities_per_image, "kept entities per image")}</div>
</div>
<div class="cols">
  <div><h3>Top {_TOP_ENTITIES} entities by image count</h3>{_bar_table(top_rows, "entity", "entities")}</div>
  <div><h3>CLIP score of kept and dropped entities</h3>{_score_plot(st.kept_scores, st.dropped_scores, threshold)}
  {no_drop_note}</div>
</div>"""


def _section_examples(st: I2EStats, threshold: float | None) -> str:
    legend = ('<p class="legend"><span class="chip keep">kept<span class="s">score</span></span>'
              '<span class="chip drop">dropped<span class="s">score</span></span>'
              + (f" CLIP threshold {threshold:g}" if threshold is not None else "") + "</p>")
    if st.examples:
        cards = []
        for ex in st.examples:
            dropped = (_chips(ex.dropped, "drop") or '<span class="muted">none dropped</span>'
                       if ex.dropped is not None else '<span class="muted">dropped candidates not recorded</span>')
            cards.append(f"""<div class="card example" data-pair-id="{_e(ex.pair_id)}">
{_thumb(ex.thumb, ex.text, ex.pair_id, "example")}
<div class="body"><p class="alt" title="{_e(ex.text)}">{_e(_clip(ex.text))}</p>
<div class="chips">{_chips(ex.kept, "keep")}</div><div class="chips">{dropped}</div>
<p class="meta">{_e(ex.source)} &middot; <code>{_e(ex.pair_id)}</code></p></div></div>""")
        kept_html = f'<div class="grid">{"".join(cards)}</div>'
    else:
        kept_html = _na("no I2E images to show")
    if st.no_entity_examples:
        rows = []
        for rec in st.no_entity_examples:
            rows.append(f"""<div class="card noent" data-pair-id="{_e(rec.get("pair_id", ""))}"><div class="body">
<p class="alt" title="{_e(rec.get("text", ""))}">{_e(_clip(rec.get("text", "")))}</p>
<div class="chips">{_chips(rec.get("dropped"), "drop") or '<span class="muted">no candidates</span>'}</div>
<p class="meta">{_e(rec.get("source", ""))} &middot; <code>{_e(rec.get("pair_id", ""))}</code></p></div></div>""")
        more = st.no_entity - len(st.no_entity_examples)
        tail = f'<p class="note">and {more:,} more under <code>{_e(st.no_entity_prefix)}</code></p>' if more > 0 else ""
        noent_html = f'<div class="grid wide">{"".join(rows)}</div>{tail}'
    else:
        noent_html = _na("no pair was dropped for having no entity left")
    return f"""{legend}{kept_html}
<h3>Pairs dropped because no entity survived ({st.no_entity:,})</h3>
<p class="note">The image is not stored for these pairs; the alt-text and the rejected candidates are.</p>
{noent_html}"""


def _section_training(run_metrics: Mapping[str, list[dict[str, Any]]] | None, eval_results: Any) -> str:
    parts = ["<h3>Training curves</h3>"]
    runs = {k: v for k, v in (run_metrics or {}).items() if v}
    if runs:
        from mofi_platform.training.curves import PANELS, plot_training_curves

        with tempfile.TemporaryDirectory() as tmp:
            png = plot_training_curves(runs, Path(tmp) / "curves.png").read_bytes()
        parts.append(f'<img class="plot wide" alt="training curves" src="{_png_uri(png)}">')
        cols = [p for p in PANELS if any(p in m for ms in runs.values() for m in ms)]
        head = "".join(f'<th class="num">{_e(c.replace("_", " "))} (last 5)</th>' for c in cols)
        body = []
        for name, ms in sorted(runs.items()):
            tail = ms[-5:]
            vals = "".join(
                f'<td class="num">{_fmt(sum(m.get(c, 0.0) for m in tail) / len(tail))}</td>' for c in cols)
            last = _fmt(ms[-1].get("step", len(ms)))
            body.append(f'<tr><td>{_e(name)}</td><td class="num">{_e(last)}</td>{vals}</tr>')
        parts.append(f'<div class="scroll"><table><tr><th>run</th><th class="num">last step</th>{head}</tr>'
                     f'{"".join(body)}</table></div>')
    else:
        parts.append(_na("no training metrics were passed"))
    parts.append("<h3>Evaluation</h3>")
    parts.append(_eval_table(eval_results))
    return "".join(parts)


def _eval_rows(results: Any) -> list[tuple[str, Mapping[str, Any]]]:
    if not isinstance(results, Mapping) or not results:
        return []
    if "map" in results or "map_per_domain" in results:
        return [(str(results.get("model") or "model"), results)]
    return [(str(k), v) for k, v in results.items() if isinstance(v, Mapping)]


def _eval_table(results: Any) -> str:
    rows = _eval_rows(results)
    if not rows:
        return _na("no evaluation results (mofi eval output) were passed")
    domains = sorted({d for _, r in rows for d in (r.get("map_per_domain") or {})})
    head = (["model", "version", "mAP"] + [f"mAP {d}" for d in domains]
            + ["zero-shot top-1", "linear probe top-1", "images", "classes"])
    body = []
    for label, r in rows:
        per = r.get("map_per_domain") or {}
        cells = [f"<td>{_e(label)}</td>", f'<td>{_e(_fmt(r.get("version")))}</td>',
                 f'<td class="num" data-metric="map">{_e(_fmt(r.get("map")))}</td>']
        cells += [f'<td class="num" data-metric="map_{_e(d)}">{_e(_fmt(per.get(d)))}</td>' for d in domains]
        cells += [f'<td class="num" data-metric="{k}">{_e(_fmt(r.get(k)))}</td>'
                  for k in ("zero_shot_top1", "linear_probe_top1", "num_images", "num_classes")]
        body.append(f'<tr>{"".join(cells)}</tr>')
    ths = "".join(f'<th class="{"num" if i > 1 else ""}">{_e(h)}</th>' for i, h in enumerate(head))
    bench = {str(r.get("benchmark")) for _, r in rows if r.get("benchmark")}
    cap = f'<p class="note">Benchmark: {", ".join(f"<code>{_e(b)}</code>" for b in sorted(bench))}</p>' if bench else ""
    return f'<div class="scroll"><table class="eval"><tr>{ths}</tr>{"".join(body)}</table></div>{cap}'


def _section_results(results_md: Path | None) -> str:
    if results_md is None:
        return _na("no RESULTS.md was given")
    path = Path(results_md)
    if not path.is_file():
        return _na(f"{path} does not exist")
    parsed = parse_markdown_table(path.read_text(encoding="utf-8", errors="replace"))
    if parsed is None:
        return _na(f"{path} has no markdown table")
    heading, header, rows, note = parsed
    width = len(header)
    rows = [(r + [""] * width)[:width] for r in rows]
    best: dict[int, float] = {}
    for c, h in enumerate(header):
        vals = [r[c] for r in rows]
        nums = [float(v.replace(",", "").rstrip("%")) for v in vals if _is_num(v)]
        if c and re.search(r"map|top-?1|acc", h, re.I) and len(nums) > 1:
            best[c] = max(nums)
    numeric = {c for c in range(1, width) if any(_is_num(r[c]) for r in rows)}
    ths = "".join(f'<th class="{"num" if c in numeric else ""}">{_inline_md(h)}</th>' for c, h in enumerate(header))
    trs = []
    for r in rows:
        tds = []
        for c, v in enumerate(r):
            cls = []
            if _is_num(v) or v.strip().lower() in ("n/a", "na", "-", "\u2014"):
                cls.append("num")
                if c in best and _is_num(v) and float(v.replace(",", "").rstrip("%")) == best[c]:
                    cls.append("best")
            tds.append(f'<td class="{" ".join(cls)}">{_inline_md(v)}</td>')
        trs.append(f"<tr>{''.join(tds)}</tr>")
    cap = f'<p class="note">{_inline_md(note)}</p>' if note else ""
    where = f", section \u201c{_e(heading)}\u201d" if heading else ""
    src = f'<p class="lead">From <code>{_e(path.name)}</code>{where}. Best value per metric column in bold.</p>'
    return f'{src}<div class="scroll"><table class="ablation"><tr>{ths}</tr>{"".join(trs)}</table></div>{cap}'


def _as_hit(h: Any) -> SearchHit:
    if isinstance(h, SearchHit):
        return h
    if isinstance(h, Mapping):
        return SearchHit(pair_id=str(h["pair_id"]), score=float(h.get("score", 0.0)),
                         entity_names=list(h.get("entity_names", [])), text=str(h.get("text", "")),
                         source=str(h.get("source", "")), entity_ids=list(h.get("entity_ids", [])))
    return SearchHit.from_proto(h)


def _section_searches(searches: Sequence[SearchExample], st: I2EStats | None, max_hits: int) -> str:
    if not searches:
        return _na("no searches were run")
    thumbs = st.hit_thumbs if st else {}
    metas = st.hit_meta if st else {}
    sheets = []
    for n, q in enumerate(searches, 1):
        hits = [_as_hit(h) for h in q.hits][:max_hits]
        if q.query_image:
            qthumb = thumbnail_data_uri(q.query_image)
            query = _thumb(qthumb, q.query_text or "query image", f"query-{n}", "query")
            kind = "image \u2192 image"
        else:
            query = ""
            kind = "text \u2192 image"
        if q.query_text:
            query += f'<p class="qtext">\u201c{_e(q.query_text)}\u201d</p>'
        tiles = []
        for rank, h in enumerate(hits, 1):
            meta = metas.get(h.pair_id, {})
            names = h.entity_names or [e.get("name", "") for e in meta.get("entities", [])]
            text = h.text or meta.get("text", "")
            source = h.source or meta.get("source", "")
            chips = "".join(f'<span class="chip ent">{_e(x)}</span>' for x in names if x)
            tiles.append(f"""<div class="card hit" data-pair-id="{_e(h.pair_id)}" data-rank="{rank}">
<span class="rank">#{rank}</span><span class="score">{h.score:.3f}</span>
{_thumb(thumbs.get(h.pair_id), text, h.pair_id, "hit")}
<div class="body"><div class="chips">{chips}</div><p class="alt small" title="{_e(text)}">{_e(_clip(text, 90))}</p>
<p class="meta">{_e(source)} &middot; <code>{_e(h.pair_id)}</code></p></div></div>""")
        grid = f'<div class="grid hits">{"".join(tiles)}</div>' if tiles else _na("the search returned no hits")
        title = q.title or kind
        sheets.append(f"""<div class="sheet"><div class="query"><p class="kind">{_e(title)}</p>{query}
<p class="meta">{len(q.hits):,} hit(s)</p></div>{grid}</div>""")
    return "".join(sheets)


# ------------------------------------------------------------------------------------------- document

_CSS = """
:root{--bg:#f3f5f8;--card:#fff;--ink:#1f2328;--muted:#5b6570;--line:#dde3ea;--accent:#2f6feb;
--keep:#116329;--keep-bg:#d7f5dd;--drop:#b3261e;--drop-bg:#ffe4e1;--ent:#0b4f9c;--ent-bg:#e2edff}
*{box-sizing:border-box}
body{margin:0;font:14px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;
color:var(--ink);background:var(--bg)}
code{font:12px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;background:#eef1f5;padding:1px 4px;
border-radius:4px;word-break:break-all}
header{background:linear-gradient(120deg,#0b1e33,#1d4470 60%,#2a5f8f);color:#fff;padding:28px 32px 24px}
header h1{margin:0;font-size:26px;letter-spacing:-.01em}
header p{margin:6px 0 0;opacity:.85}
header code{background:rgba(255,255,255,.14);color:#fff}
nav{position:sticky;top:0;z-index:5;display:flex;flex-wrap:wrap;gap:4px 18px;padding:10px 32px;
background:rgba(255,255,255,.94);border-bottom:1px solid var(--line);backdrop-filter:blur(6px)}
nav a{color:var(--accent);text-decoration:none;font-weight:500}
nav a:hover{text-decoration:underline}
main{max-width:1280px;margin:0 auto;padding:24px 24px 64px}
section{background:var(--card);border:1px solid var(--line);border-radius:14px;padding:20px 24px 24px;
margin:0 0 24px;box-shadow:0 1px 3px rgba(16,24,40,.05)}
h2{margin:0 0 12px;font-size:20px}
h2 .n{color:var(--muted);font-weight:400;margin-right:6px}
h3{font-size:12px;margin:22px 0 8px;color:var(--muted);text-transform:uppercase;letter-spacing:.06em}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{padding:6px 10px;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
th{background:#f4f6f9;font-weight:600}
.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.tab{font-variant-numeric:tabular-nums}
.scroll{overflow-x:auto}
td.best{font-weight:700;color:var(--keep)}
table.kv{width:auto;min-width:50%}
table.kv th{width:220px;background:none;color:var(--muted);font-weight:500}
.lead{margin:0 0 14px;color:var(--muted)}
.note{color:var(--muted);font-size:12px;margin:8px 0}
.warn{color:var(--drop)}
.na{color:var(--muted);font-style:italic;background:#f6f8fa;border:1px dashed #c9d1d9;padding:10px 14px;
border-radius:8px;margin:6px 0}
.tiles{display:grid;grid-template-columns:repeat(auto-fill,minmax(150px,1fr));gap:12px;margin-bottom:6px}
.tile{background:linear-gradient(180deg,#f8fafc,#eef2f7);border:1px solid var(--line);border-radius:12px;
padding:12px 14px}
.tile b{display:block;font-size:24px;line-height:1.2;font-variant-numeric:tabular-nums}
.tile span{color:var(--muted);font-size:12px}
.cols{display:grid;grid-template-columns:repeat(auto-fit,minmax(360px,1fr));gap:8px 32px}
table.bars td{padding:3px 8px;border:0}
table.bars th{background:none;border-bottom:1px solid var(--line);padding:3px 8px}
table.bars td.lbl .id{color:var(--muted);font-size:11px}
table.bars td.lbl{max-width:240px;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
table.bars td.bar{width:50%;vertical-align:middle}
.bar div{height:10px;min-width:2px;background:linear-gradient(90deg,#5b8def,#2f6feb);border-radius:5px}
.hist{display:flex;align-items:stretch;gap:8px;height:170px;padding:0 4px;border-bottom:1px solid var(--line)}
.hist .col{flex:1;max-width:64px;display:flex;flex-direction:column;justify-content:flex-end;align-items:center;
position:relative;padding-bottom:20px}
.hist .fill{width:100%;min-height:2px;background:linear-gradient(180deg,#5b8def,#2f6feb);border-radius:5px 5px 0 0}
.hist .n{font-size:11px;color:var(--muted)}
.hist .x{position:absolute;bottom:0;font-size:12px}
.axis{text-align:center;color:var(--muted);font-size:12px;margin:4px 0 0}
img.plot{max-width:100%;height:auto;display:block}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(200px,1fr));gap:14px}
.grid.wide{grid-template-columns:repeat(auto-fill,minmax(280px,1fr))}
.card{position:relative;border:1px solid var(--line);border-radius:12px;overflow:hidden;background:#fff;
display:flex;flex-direction:column;box-shadow:0 1px 2px rgba(16,24,40,.04)}
.card .body{padding:8px 10px 10px}
.thumb{height:170px;display:flex;align-items:center;justify-content:center;background:#f7f8fa;
border-bottom:1px solid var(--line)}
.thumb img{width:100%;height:160px;object-fit:contain}
.thumb.missing{color:var(--muted);font-size:12px;
background:repeating-linear-gradient(45deg,#f4f6f9,#f4f6f9 8px,#eceff3 8px,#eceff3 16px)}
.alt{margin:0 0 6px;font-size:13px;overflow-wrap:anywhere}
.alt.small{font-size:12px;color:var(--muted)}
.meta{margin:6px 0 0;color:var(--muted);font-size:11px;overflow-wrap:anywhere}
.muted{color:var(--muted);font-size:12px}
.chips{margin:2px 0}
.chip{display:inline-block;border-radius:999px;padding:1px 9px;margin:2px 4px 2px 0;font-size:12px;line-height:1.6}
.chip.keep{background:var(--keep-bg);color:var(--keep)}
.chip.drop{background:var(--drop-bg);color:var(--drop);text-decoration:line-through}
.chip.ent{background:var(--ent-bg);color:var(--ent)}
.chip .s{font:11px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;margin-left:6px;opacity:.85;
display:inline-block;text-decoration:none}
.legend{margin:0 0 12px;color:var(--muted);font-size:12px}
.sheet{display:grid;grid-template-columns:220px 1fr;gap:18px;padding:16px 0;border-top:1px solid var(--line)}
.sheet:first-child{border-top:0;padding-top:0}
.query{background:#f6f8fa;border:1px solid var(--line);border-radius:12px;padding:12px;align-self:start;
position:sticky;top:56px}
.query .thumb{border:0;background:none;height:auto}
.query .thumb img{height:auto;max-height:196px;border-radius:8px}
.kind{margin:0 0 8px;font-size:11px;text-transform:uppercase;letter-spacing:.06em;color:var(--muted);font-weight:600}
.qtext{font-size:17px;font-weight:600;margin:4px 0;overflow-wrap:anywhere}
.grid.hits{grid-template-columns:repeat(auto-fill,minmax(170px,1fr))}
.hit .thumb{height:150px}
.hit .thumb img{height:140px}
.rank,.score{position:absolute;top:6px;z-index:1;font-size:11px;font-weight:700;padding:1px 7px;border-radius:999px}
.rank{left:6px;background:#1f2328;color:#fff}
.score{right:6px;background:rgba(255,255,255,.92);border:1px solid var(--line);font-family:ui-monospace,Menlo,monospace}
footer{color:var(--muted);font-size:12px;text-align:center;margin-top:8px}
@media (max-width:720px){main{padding:12px}section{padding:14px}.sheet{grid-template-columns:1fr}
.query{position:static}header,nav{padding-left:16px;padding-right:16px}}
"""


def _guard(title: str, fn: Callable[[], str]) -> str:
    """A section's HTML, or its error: one failing input never costs the rest of the report."""
    try:
        return fn()
    except Exception as e:  # noqa: BLE001 - shown in the report and logged with its traceback
        log.exception("report: section %r failed", title)
        return f'<p class="warn">This section could not be built: {_e(type(e).__name__)}: {_e(e)}</p>'


def build_report(
    out_dir: str | Path,
    settings: Any,
    summary: Mapping[str, Any] | None = None,
    eval_results: Mapping[str, Any] | None = None,
    run_metrics: Mapping[str, list[dict[str, Any]]] | None = None,
    results_md: str | Path | None = None,
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
    ``run_metrics`` maps a run name to ``mofi_platform.training.trainer.read_metrics`` output; hits in ``searches``
    are :class:`SearchHit` (dicts or ``mofi.v1.SearchHit`` messages are converted).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    store = store or ObjectStore(settings.s3)
    threshold = getattr(getattr(settings, "scorer", None), "threshold", None)
    hit_ids = {_as_hit(h).pair_id for q in searches for h in list(q.hits)[:max_hits]}

    stats: I2EStats | None = None

    def i2e() -> str:
        nonlocal stats
        stats = collect_i2e(store, settings, hit_ids, max_examples=max_examples,
                            max_stat_shards=max_stat_shards, example_shards=example_shards)
        return _section_i2e(stats, threshold)

    sections = [
        ("summary", "Run summary", lambda: _section_summary(summary)),
        ("i2e", "I2E dataset", i2e),
        ("examples", "Kept and dropped entities",
         lambda: _section_examples(stats, threshold) if stats else _na("the I2E dataset could not be read")),
        ("training", "Training and evaluation", lambda: _section_training(run_metrics, eval_results)),
        ("ablation", "Recipe ablation (RESULTS.md)",
         lambda: _section_results(Path(results_md) if results_md is not None else None)),
        ("search", "Retrieval", lambda: _section_searches(list(searches), stats, max_hits)),
    ]
    body = []
    for n, (sid, name, fn) in enumerate(sections, 1):
        body.append(f'<section id="{sid}"><h2><span class="n">{n}.</span>{_e(name)}</h2>{_guard(name, fn)}</section>')
    nav = "".join(f'<a href="#{sid}">{_e(name)}</a>' for sid, name, _ in sections)
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    doc = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<title>{_e(title)}</title>
<style>{_CSS}</style></head>
<body>
<header><h1>{_e(title)}</h1>
<p>Noisy image-text pairs &rarr; NER &rarr; CLIP scoring &rarr; I2E &rarr; MOFI training &rarr; search.
Generated {_e(now)} from <code>s3://{_e(settings.s3.i2e_bucket)}</code>.</p></header>
<nav>{nav}</nav>
<main>{"".join(body)}
<footer>Self-contained: every image is embedded; nothing is fetched when this page is opened.</footer></main>
</body></html>
"""
    path = out_dir / "index.html"
    path.write_text(doc, encoding="utf-8")
    log.info("report: wrote %s (%.1f kB)", path, path.stat().st_size / 1024)
    return path

"""What the demo report shows, gathered into plain values; :mod:`.render` turns them into HTML.

Why apart from the page: reading the object store, resolving search hits and averaging metrics are
facts about the run, testable without HTML; how they look lives in ``templates/`` and ``static/``.

Why hits are plain :class:`SearchHit` values: gRPC search answers carry no image bytes. The report
resolves each hit's image by pair id from the I2E shards: manifests list their pair ids, so only
the shards holding a hit are opened beyond those read for statistics.

Why statistics are split: counts that manifests carry (shards, images, per-entity image counts) cover
the whole dataset at a few kilobytes per shard; per-sample statistics (sources, entities per image,
CLIP scores) need the shards themselves and are read from at most ``max_stat_shards`` of them, and
the report says when that is a subset.

Images are downscaled thumbnails (JPEG, at most :data:`THUMB_PX` pixels a side) carried as
``data:`` URIs, so the written page stays a few megabytes and fetches nothing.
"""

from __future__ import annotations

import base64
import itertools
import logging
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from tqdm import tqdm

from mofi.i2e import I2ESample, iter_shard, list_shards, read_manifest, shards_prefix
from mofi.i2e.layout import no_entity_prefix
from mofi.images import WHITE, ImageRejected, decode_rgb, thumbnail_jpeg
from mofi.objstore import ObjectStore
from mofi.settings import DataSettings
from mofi_platform.services.scorer.drops import count_no_entity, iter_no_entity

__all__ = [
    "SearchHit",
    "SearchExample",
    "EntityExample",
    "I2EStats",
    "HitCard",
    "SearchSheet",
    "EvalTable",
    "MapBar",
    "TrainingTable",
    "THUMB_PX",
    "TOP_ENTITIES",
    "as_hit",
    "collect_i2e",
    "eval_table",
    "map_bars",
    "search_sheets",
    "thumbnail_data_uri",
    "training_table",
]

log = logging.getLogger(__name__)

THUMB_PX = 160
TOP_ENTITIES = 20
_NO_ENTITY_EXAMPLES = 6


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
    def from_proto(cls, hit: Any) -> SearchHit:
        """From a ``mofi.v1.SearchHit`` message (or anything with its fields)."""
        return cls(
            pair_id=hit.pair_id,
            score=float(hit.score),
            entity_names=list(hit.entity_names),
            text=hit.text,
            source=hit.source,
            entity_ids=list(hit.entity_ids),
        )


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

    @property
    def mean_entities(self) -> float:
        """Kept entities per image over the whole dataset (from manifests)."""
        return self.entity_labels / self.images if self.images else 0.0

    @property
    def scanned_all(self) -> bool:
        """Whether the per-image statistics cover every readable shard."""
        return self.scanned_shards == self.shards - len(self.unreadable_shards)

    def top_entities(self, n: int = TOP_ENTITIES) -> list[tuple[str, int, str]]:
        """(name, images, id) of the ``n`` entities with the most images."""
        top = sorted(self.entities.items(), key=lambda kv: (-kv[1]["count"], kv[1]["name"]))[:n]
        return [(row["name"], row["count"], eid) for eid, row in top]

    def source_rows(self) -> list[tuple[str, int]]:
        """(source, scanned images), most images first."""
        return sorted(self.sources.items(), key=lambda kv: (-kv[1], kv[0]))

    def per_image_bins(self) -> list[tuple[int, int]]:
        """(kept entities, scanned images) for every count from the least to the most, gaps as 0."""
        if not self.entities_per_image:
            return []
        return [
            (k, self.entities_per_image.get(k, 0))
            for k in range(min(self.entities_per_image), max(self.entities_per_image) + 1)
        ]


# ----------------------------------------------------------------------------------------- collection


def thumbnail_data_uri(data: bytes, size: int = THUMB_PX, max_pixels: int = DataSettings.max_pixels) -> str | None:
    """A ``data:image/jpeg`` URI of the image scaled to fit ``size`` px; None if it does not decode."""
    try:
        image = decode_rgb(data, max_pixels=max_pixels, min_side=size * 2, background=WHITE, upright=True)
    except ImageRejected as e:
        log.warning("report: undecodable image (%s)", e)
        return None
    return "data:image/jpeg;base64," + base64.b64encode(thumbnail_jpeg(image, size, quality=82)).decode("ascii")


def _pick_examples(candidates: list[I2ESample], n: int) -> list[I2ESample]:
    """Up to ``n`` samples, those with dropped entities first, alternating between sources."""
    by_source: dict[str, list[I2ESample]] = {}
    for s in sorted(candidates, key=lambda s: not s.meta.get("dropped")):
        by_source.setdefault(str(s.meta.get("source", "")), []).append(s)
    out: list[I2ESample] = []
    for row in itertools.zip_longest(*by_source.values()):
        out += [s for s in row if s is not None]
    return out[:n]


def collect_i2e(
    store: ObjectStore,
    settings: Any,
    hit_pair_ids: Iterable[str] = (),
    max_examples: int = 12,
    max_stat_shards: int = 256,
    example_shards: int = 4,
) -> I2EStats:
    """Read what the report shows about the I2E dataset from the object store.

    Every manifest is read (counts over the whole dataset); the first ``max_stat_shards`` shards are
    read for per-sample statistics, ``example_shards`` of them spread over the list also for examples, and any
    other shard only when it holds one of ``hit_pair_ids`` (its thumbnail).
    """
    prefix = shards_prefix(settings).rstrip("/")
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

    stat_shards = readable[: max(0, max_stat_shards)]
    stat_set = set(stat_shards)
    # Examples come from shards spread over the dataset (shards are written source by source).
    example_set = set(stat_shards[:: max(1, len(stat_shards) // max(1, example_shards))][:example_shards])
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
        st.examples.append(
            EntityExample(
                pair_id=s.pair_id,
                source=str(s.meta.get("source", "")),
                text=str(s.meta.get("text", "")),
                thumb=thumbnail_data_uri(s.image_bytes),
                kept=list(s.meta.get("entities") or []),
                dropped=list(dropped) if dropped is not None else None,
            )
        )

    st.no_entity = count_no_entity(store, settings.s3.i2e_bucket)
    st.no_entity_examples = list(itertools.islice(iter_no_entity(store, settings.s3.i2e_bucket), _NO_ENTITY_EXAMPLES))
    return st


# ----------------------------------------------------------------------------- what the sections show


def as_hit(h: Any) -> SearchHit:
    """A :class:`SearchHit` from itself, a dict of its fields or a ``mofi.v1.SearchHit`` message."""
    if isinstance(h, SearchHit):
        return h
    if isinstance(h, Mapping):
        return SearchHit(
            pair_id=str(h["pair_id"]),
            score=float(h.get("score", 0.0)),
            entity_names=list(h.get("entity_names", [])),
            text=str(h.get("text", "")),
            source=str(h.get("source", "")),
            entity_ids=list(h.get("entity_ids", [])),
        )
    return SearchHit.from_proto(h)


@dataclass
class HitCard:
    """One hit as shown: what the search returned, filled in from its I2E sample where it said nothing."""

    rank: int
    pair_id: str
    score: float
    thumb: str | None
    names: list[str]
    text: str
    source: str


@dataclass
class SearchSheet:
    """A query beside its hits; ``query_thumb`` is set for image queries (None if it did not decode)."""

    title: str
    number: int
    query_text: str | None
    image_query: bool
    query_thumb: str | None
    total_hits: int
    hits: list[HitCard]


def search_sheets(searches: Sequence[SearchExample], st: I2EStats | None, max_hits: int) -> list[SearchSheet]:
    """Each search with its first ``max_hits`` hits, their images and metadata taken from ``st``."""
    thumbs = st.hit_thumbs if st else {}
    metas = st.hit_meta if st else {}
    sheets = []
    for n, q in enumerate(searches, 1):
        cards = []
        for rank, h in enumerate([as_hit(h) for h in q.hits][:max_hits], 1):
            meta = metas.get(h.pair_id, {})
            cards.append(
                HitCard(
                    rank=rank,
                    pair_id=h.pair_id,
                    score=h.score,
                    thumb=thumbs.get(h.pair_id),
                    names=[x for x in h.entity_names or [e.get("name", "") for e in meta.get("entities", [])] if x],
                    text=h.text or meta.get("text", ""),
                    source=h.source or meta.get("source", ""),
                )
            )
        image = bool(q.query_image)
        kind = "image \u2192 image" if image else "text \u2192 image"
        sheets.append(
            SearchSheet(
                title=q.title or kind,
                number=n,
                query_text=q.query_text,
                image_query=image,
                query_thumb=thumbnail_data_uri(q.query_image) if q.query_image else None,
                total_hits=len(q.hits),
                hits=cards,
            )
        )
    return sheets


@dataclass
class EvalTable:
    """``mofi eval`` results, one row per model: (label, result JSON), and the domains and benchmarks they span."""

    rows: list[tuple[str, Mapping[str, Any]]]
    domains: list[str]
    benchmarks: list[str]


def eval_table(results: Any) -> EvalTable | None:
    """From one ``mofi eval`` JSON or a mapping of name -> such JSON; None when there is none."""
    if not isinstance(results, Mapping) or not results:
        return None
    if "map" in results or "map_per_domain" in results:
        rows = [(str(results.get("model") or "model"), results)]
    else:
        rows = [(str(k), v) for k, v in results.items() if isinstance(v, Mapping)]
    if not rows:
        return None
    return EvalTable(
        rows=rows,
        domains=sorted({d for _, r in rows for d in (r.get("map_per_domain") or {})}),
        benchmarks=sorted({str(r.get("benchmark")) for _, r in rows if r.get("benchmark")}),
    )


@dataclass
class MapBar:
    """One bar of the mAP chart: ``key`` says what it is (model, baseline, published, chance, seen, unseen)."""

    key: str
    label: str
    value: float


def map_bars(results: Mapping[str, Any]) -> list[MapBar]:
    """The model's mAP beside its references, then over seen and unseen classes (what the results carry)."""
    baseline = results.get("baseline") or {}
    published = results.get("published") or {}
    bars = [
        ("model", f"{results.get('model') or 'model'} ({results.get('image_size') or '?'} px)", results.get("map")),
        ("baseline", f"frozen ImageNet baseline ({baseline.get('image_size', '?')} px)", baseline.get("map")),
        ("published", f"published model {published.get('version', '')}".strip(), published.get("map")),
        ("chance", "chance (random embeddings)", (results.get("chance") or {}).get("map")),
        ("seen", f"model, seen classes ({len(results.get('seen_classes') or [])})", results.get("map_seen")),
        ("unseen", f"model, unseen classes ({len(results.get('unseen_classes') or [])})", results.get("map_unseen")),
        ("baseline_seen", "baseline, seen classes", baseline.get("map_seen")),
        ("baseline_unseen", "baseline, unseen classes", baseline.get("map_unseen")),
    ]
    return [MapBar(key, label, float(value)) for key, label, value in bars if isinstance(value, (int, float))]


@dataclass
class TrainingTable:
    """Per run: its name, last step and the mean of each loss over its last five logged steps."""

    losses: list[str]
    rows: list[tuple[str, Any, list[float]]]


def training_table(runs: Mapping[str, list[dict[str, Any]]]) -> TrainingTable:
    """The table beside the training curves of ``runs`` (run name -> metrics rows, none empty)."""
    from mofi_platform.training.curves import PANELS

    losses = [p for p in PANELS if any(p in m for ms in runs.values() for m in ms)]
    rows = []
    for name, ms in sorted(runs.items()):
        tail = ms[-5:]
        rows.append((name, ms[-1].get("step", len(ms)), [sum(m.get(c, 0.0) for m in tail) / len(tail) for c in losses]))
    return TrainingTable(losses=losses, rows=rows)

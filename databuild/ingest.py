"""Bring-your-own-data sources for `mofi produce`: WebDataset tar shards, manifests and caption folders.

Why these three: they are the forms image-text data arrives in. img2dataset (LAION, DataComp) writes
WebDataset tars of ``{key}.jpg|png|webp`` + ``{key}.txt`` + ``{key}.json``; curated sets come as a
Parquet, CSV or JSONL table of image path (or ``s3://`` URI) and caption; small collections are a
folder of images with a ``.txt`` caption beside each.

Why units and positions: every source is an ordered list of units (a shard, the manifest, the
folder) whose items come in a fixed order, so "the first n items of unit u" names exactly what was
sent. :class:`Progress` keeps, per unit, how many leading items were acknowledged by the broker (or
rejected), and a restart skips them; a unit done whole is never opened again. Pair ids derive from the
source name and the item's position (:func:`~mofi_platform.databuild.pairs.pair_id`), so an item sent
twice (acknowledged after the last progress save) carries the same key and the writer drops the copy.

Why bad items are values, not exceptions: one missing file or broken JPEG in a million must not stop
a run; each becomes a :class:`Rejected` with a reason, counted and reported at the end.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Protocol

from minio.error import MinioException

from mofi.i2e.records import sniffed_mime
from mofi.images import ImageRejected, decode_rgb
from mofi.objstore import ObjectStore, parse_uri
from mofi_platform.databuild.corpus import CorpusSample
from mofi_platform.databuild.pairs import pair_id

__all__ = [
    "Rejected",
    "Source",
    "WebDatasetSource",
    "ManifestSource",
    "FolderSource",
    "Progress",
    "Checks",
    "BadItems",
    "IMAGE_EXTS",
    "MANIFEST_FORMATS",
]

#: Image members / files a source takes, in order of preference when a WebDataset key has several.
IMAGE_EXTS = ("jpg", "jpeg", "png", "webp")
MANIFEST_FORMATS = ("parquet", "csv", "jsonl")
_ACCEPTED_MIMES = ("image/png", "image/jpeg", "image/webp")
#: Rejections a rerun retries (the unit is not marked done): the data may be readable next time.
RETRIED = frozenset({"unreadable_shard"})


@dataclass(frozen=True)
class Rejected:
    """An item that cannot become a pair: ``kind`` is the counted category, ``detail`` the whole reason."""

    position: str
    kind: str
    detail: str


@dataclass(frozen=True)
class Checks:
    """What every item must pass before it is sent (the stages downstream would reject it anyway)."""

    max_text_chars: int
    max_pixels: int

    def sample(
        self, source: str, position: str, text: str | None, image: bytes | None, licence: str, original: str
    ) -> CorpusSample | Rejected:
        if image is None:
            return Rejected(position, "missing_image", "no image")
        if text is None:
            return Rejected(position, "missing_caption", "no caption")
        text = text.strip()
        if not text:
            return Rejected(position, "empty_caption", "empty caption")
        if len(text) > self.max_text_chars:
            return Rejected(
                position, "caption_too_long", f"caption of {len(text)} characters exceeds {self.max_text_chars}"
            )
        try:
            decode_rgb(image, max_pixels=self.max_pixels)
        except ImageRejected as e:
            kind = "image_too_large" if e.reason == "too_many_pixels" else "undecodable_image"
            return Rejected(position, kind, str(e))
        mime = sniffed_mime(image)
        if mime not in _ACCEPTED_MIMES:
            return Rejected(position, "unsupported_image", "image is not PNG, JPEG or WebP")
        return CorpusSample(pair_id(source, position), text, source, licence, original, image, mime)


Item = tuple[int, CorpusSample | Rejected]


class Source(Protocol):
    """Units in a fixed order, each yielding its items in a fixed order (see the module docstring)."""

    name: str  # the pairs' ``source`` field and the first part of their ids

    def units(self) -> Iterator[str]: ...

    def items(self, unit: str, skip: int) -> Iterator[Item]:
        """``(index in unit, sample or Rejected)`` for the unit's items from index ``skip`` on."""
        ...


def _text(data: bytes | None) -> str | None:
    return None if data is None else data.decode("utf-8", "replace")


@dataclass
class WebDatasetSource:
    """img2dataset output: ``spec`` is a folder or ``s3://`` prefix of ``.tar`` shards, a brace pattern
    (``shards-{00000..00099}.tar``, local or ``s3://``) or one shard; read as a stream by webdataset."""

    spec: str
    name: str
    licence: str
    checks: Checks
    store: ObjectStore

    def units(self) -> Iterator[str]:
        from webdataset.shardlists import expand_urls

        if "{" in self.spec:
            yield from expand_urls(self.spec)
        elif self.spec.endswith(".tar"):
            yield self.spec
        else:
            yield from (u for u in self.store.list(self.spec) if u.endswith(".tar"))

    def items(self, unit: str, skip: int) -> Iterator[Item]:
        from webdataset.tariterators import group_by_keys, tar_file_expander

        shard = PurePosixPath(parse_uri(unit)[1]).name
        errors: list[Exception] = []

        def end_shard(e: Exception) -> bool:
            errors.append(e)
            return False  # a broken tar stream cannot be resynchronised: end the shard, report it

        n = -1
        try:
            with self.store.open(unit) as stream:
                members = tar_file_expander([{"url": unit, "stream": stream}], handler=end_shard)
                for n, sample in enumerate(group_by_keys(members, handler=end_shard)):
                    if n < skip:
                        continue
                    yield n, self._sample(shard, sample)
        except (OSError, MinioException) as e:  # a missing shard of a brace pattern, say
            errors.append(e)
        if errors:
            yield n + 1, Rejected(f"{shard}#{n + 1}", "unreadable_shard", f"{unit}: {errors[0]}")

    def _sample(self, shard: str, parts: dict) -> CorpusSample | Rejected:
        position = f"{shard}/{parts['__key__']}"
        image = next((parts[e] for e in IMAGE_EXTS if e in parts), None)
        meta: dict = {}
        if "json" in parts:
            with contextlib.suppress(ValueError):
                meta = json.loads(parts["json"]) or {}
        meta = meta if isinstance(meta, dict) else {}
        licence = str(meta.get("license") or meta.get("licence") or self.licence)
        original = str(meta.get("url") or position)
        return self.checks.sample(self.name, position, _text(parts.get("txt")), image, licence, original)


@dataclass
class ManifestSource:
    """A Parquet, CSV or JSONL table with an image column (path relative to the manifest, absolute path or
    ``s3://`` URI) and a caption column; one unit, rows read in batches (never the whole table)."""

    path: str
    name: str
    licence: str
    checks: Checks
    store: ObjectStore
    image_column: str = "image"
    caption_column: str = "caption"
    batch_rows: int = 1024

    @property
    def format(self) -> str:
        suffix = Path(self.path).suffix.lower().lstrip(".")
        fmt = {"pq": "parquet", "json": "jsonl", "ndjson": "jsonl"}.get(suffix, suffix)
        if fmt not in MANIFEST_FORMATS:
            raise ValueError(f"{self.path}: manifest must be .parquet, .csv or .jsonl")
        return fmt

    def units(self) -> Iterator[str]:
        yield self.path

    def _rows(self) -> Iterator[dict]:
        cols = [self.image_column, self.caption_column]
        if self.format == "parquet":
            import pyarrow.parquet as pq

            pf = pq.ParquetFile(self.path)
            missing = set(cols) - set(pf.schema_arrow.names)
            if missing:
                raise ValueError(f"{self.path} has no column {', '.join(sorted(missing))} ({pf.schema_arrow.names})")
            for batch in pf.iter_batches(batch_size=self.batch_rows, columns=cols):
                yield from batch.to_pylist()
        elif self.format == "csv":
            import pyarrow as pa
            from pyarrow import csv

            header = csv.open_csv(self.path).schema.names
            missing = set(cols) - set(header)
            if missing:
                raise ValueError(f"{self.path} has no column {', '.join(sorted(missing))} ({header})")
            convert = csv.ConvertOptions(include_columns=cols, column_types={c: pa.string() for c in cols})
            for batch in csv.open_csv(self.path, convert_options=convert):
                yield from batch.to_pylist()
        else:
            with open(self.path, encoding="utf-8") as fh:
                for line in fh:
                    if line.strip():
                        try:
                            row = json.loads(line)
                        except ValueError:
                            row = None
                        yield row if isinstance(row, dict) else {}

    def items(self, unit: str, skip: int) -> Iterator[Item]:
        base = Path(self.path).resolve().parent
        for n, row in enumerate(self._rows()):
            if n < skip:
                continue
            ref, caption = row.get(self.image_column), row.get(self.caption_column)
            position = f"{Path(self.path).name}:{n}"
            if not row:
                yield n, Rejected(position, "malformed_row", f"row {n} is not a JSON object")
                continue
            if not ref:
                yield n, Rejected(position, "missing_image", f"row {n} has no {self.image_column!r}")
                continue
            ref = str(ref)
            uri = ref if parse_uri(ref)[0] is not None or os.path.isabs(ref) else str(base / ref)
            image = self._read(uri)
            if image is None:
                yield n, Rejected(position, "missing_image", f"{uri} not found")
                continue
            text = None if caption is None else str(caption)
            yield n, self.checks.sample(self.name, f"{position}:{ref}", text, image, self.licence, ref)

    def _read(self, uri: str) -> bytes | None:
        try:
            return self.store.get_bytes(uri)
        except Exception:  # a missing or unreadable image is this row's problem, never the run's
            return None


@dataclass
class FolderSource:
    """A folder of images (``IMAGE_EXTS``) with a ``<stem>.txt`` caption beside each, walked in name order."""

    root: str
    name: str
    licence: str
    checks: Checks

    def units(self) -> Iterator[str]:
        yield self.root

    def _walk(self) -> Iterator[tuple[str, Path | None, Path | None]]:
        """``(relative stem, image, caption)`` per stem with an image or a caption, in sorted order."""
        root = Path(self.root)
        for folder, dirs, files in os.walk(root):
            dirs.sort()
            stems: dict[str, dict[str, Path]] = {}
            for f in sorted(files):
                stem, _, ext = f.rpartition(".")
                ext = ext.lower()
                if stem and (ext in IMAGE_EXTS or ext == "txt"):
                    stems.setdefault(stem, {}).setdefault("txt" if ext == "txt" else "image", Path(folder) / f)
            for stem, found in stems.items():
                rel = (Path(folder) / stem).relative_to(root).as_posix()
                yield rel, found.get("image"), found.get("txt")

    def items(self, unit: str, skip: int) -> Iterator[Item]:
        for n, (rel, image, caption) in enumerate(self._walk()):
            if n < skip:
                continue
            original = image.relative_to(self.root).as_posix() if image else rel
            text = caption.read_text(encoding="utf-8", errors="replace") if caption else None
            data = image.read_bytes() if image else None
            yield n, self.checks.sample(self.name, rel, text, data, self.licence, original)


@dataclass
class BadItems:
    """Rejections by kind, with the first few examples of each for the report."""

    examples_per_kind: int = 3
    counts: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def add(self, r: Rejected) -> None:
        self.counts[r.kind] += 1
        shown = self.examples.setdefault(r.kind, [])
        if len(shown) < self.examples_per_kind:
            shown.append(f"{r.position}: {r.detail}")

    def total(self) -> int:
        return sum(self.counts.values())

    def report(self) -> str:
        if not self.counts:
            return "no bad items"
        lines = [f"{self.total()} bad items skipped:"]
        for kind, n in self.counts.most_common():
            lines.append(f"  {kind:18} {n}")
            lines.extend(f"      e.g. {ex}" for ex in self.examples[kind])
        return "\n".join(lines)


class Progress:
    """Per unit, the count of leading items acknowledged by the broker or rejected, saved as JSON.

    ``done(unit, index)`` may arrive in any order (the producer acknowledges per partition); the
    saved count only grows over an unbroken run of done indexes, so a restart never skips an item
    whose delivery was not confirmed. ``finish(unit, count)`` marks a unit whose items all came.
    """

    def __init__(self, path: Path | None, source: str, save_every_s: float = 2.0) -> None:
        self.path, self.source, self.save_every_s = path, source, save_every_s
        self._lock = threading.Lock()
        self.acked: dict[str, int] = {}
        self.complete: set[str] = set()
        self._pending: dict[str, set[int]] = {}
        self._ends: dict[str, int] = {}
        self._saved = time.monotonic()
        if path is not None and path.exists():
            saved = json.loads(path.read_text())
            if saved.get("source") != source:
                raise ValueError(f"{path} records the progress of {saved.get('source')!r}, not {source!r}")
            self.acked = {u: int(v["acked"]) for u, v in saved["units"].items()}
            self.complete = {u for u, v in saved["units"].items() if v.get("complete")}

    def skip(self, unit: str) -> int | None:
        """Items of ``unit`` to skip; None when the unit is done whole."""
        return None if unit in self.complete else self.acked.get(unit, 0)

    def done(self, unit: str, index: int) -> None:
        with self._lock:
            pending = self._pending.setdefault(unit, set())
            pending.add(index)
            n = self.acked.get(unit, 0)
            while n in pending:
                pending.remove(n)
                n += 1
            self.acked[unit] = n
            if self._ends.get(unit) == n:
                self.complete.add(unit)

    def finish(self, unit: str, count: int) -> None:
        with self._lock:
            self._ends[unit] = count
            if self.acked.get(unit, 0) >= count:
                self.complete.add(unit)

    def maybe_save(self) -> None:
        if time.monotonic() - self._saved >= self.save_every_s:
            self.save()

    def save(self) -> None:
        if self.path is None:
            return
        with self._lock:
            units = {u: {"acked": n, "complete": u in self.complete} for u, n in sorted(self.acked.items())}
            units.update({u: {"acked": self.acked.get(u, 0), "complete": True} for u in self.complete})
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=self.path.name, suffix=".tmp", dir=self.path.parent)
        with os.fdopen(fd, "w") as fh:
            json.dump({"source": self.source, "units": units}, fh, indent=1, sort_keys=True)
        os.replace(tmp, self.path)  # a crash mid-save leaves the previous progress, never half a file
        self._saved = time.monotonic()


def stream(source: Source, progress: Progress, bad: BadItems) -> Iterator[tuple[CorpusSample, Callable[[], None]]]:
    """The source's valid samples, each with the callback that marks it acknowledged; rejected items are
    counted in ``bad`` and marked done at once; units done in an earlier run are not opened."""
    for unit in source.units():
        skip = progress.skip(unit)
        if skip is None:
            continue
        count = skip
        for index, item in source.items(unit, skip):
            count = index + 1
            if isinstance(item, Rejected):
                bad.add(item)
                if item.kind not in RETRIED:
                    progress.done(unit, index)
            else:
                yield item, _marker(progress, unit, index)
        progress.finish(unit, count)


def _marker(progress: Progress, unit: str, index: int) -> Callable[[], None]:
    return lambda: progress.done(unit, index)


def progress_path(state_dir: str | Path, source: str, spec: Iterable[str]) -> Path:
    """The default progress file of one source spec under ``state_dir``."""
    digest = hashlib.sha1("\0".join(spec).encode()).hexdigest()[:12]
    return Path(state_dir) / "produce-progress" / f"{source}-{digest}.json"


def default_name(spec: str) -> str:
    """A source name from a spec: the folder, prefix or file stem ("laion-shards", "captions")."""
    key = parse_uri(spec.split("{")[0].rstrip("/"))[1] or spec
    name = PurePosixPath(key.rstrip("/")).name.rsplit(".", 1)[0] or "data"
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in name).strip("-") or "data"

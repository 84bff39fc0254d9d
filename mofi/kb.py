"""The entity knowledge base: JSONL entities with an alias index.

Why JSONL plus an index: the file is diffable, streams into S3 and a pod's init container as one
object, and services need no database. Alias lookup is by normalised string (casefold, NFKC, collapsed
whitespace, punctuation stripped at the ends), which is how NER mentions are matched against it.

Why an index file next to the JSONL: parsing and indexing the built KB (125k entities, 26 MB) takes
seconds, most of it JSON parsing and building 125k entity objects. :meth:`KnowledgeBase.load` therefore
keeps the file's bytes, indexes aliases to row numbers and parses an entity's line only when a lookup
returns it; for files of :data:`INDEX_MIN_BYTES` and more it also writes that index (aliases -> rows,
ids, line spans) as ``<file>.idx`` (or, where the KB's folder is read-only, under the temp folder) and
later loads read it back instead of parsing the JSONL. The index records the JSONL's SHA-256, so an
edited or replaced KB is never served from a stale index.

Why same-as links: one concept must be one entity everywhere downstream (one training class), but the
sources name it several times ("tiger" is an emoji, a WordNet synset and a Tux Paint stamp). An entity
with ``same_as`` set is an alias of the canonical entity it names: ``get`` still returns it by its own
id, :meth:`KnowledgeBase.canonical` maps its id to the canonical one, and ``lookup`` returns canonical
entities only (an alias entity's names find its canonical entity), so mention linking yields canonical
ids without knowing about the links. Files without the field load as before.

Why a version id: an I2E record names the knowledge base that labelled it, so a dataset labelled by
two KBs (the built-in one, then one imported from Wikidata) can be told apart and its entity ids
resolved against the right file. The id is a content hash of the KB's JSONL file (for a KB built in
memory, of the file :func:`write_kb` would write), so the same file gives the same id wherever it lives.
"""

from __future__ import annotations

import hashlib
import json
import logging
import marshal
import os
import tempfile
import unicodedata
from array import array
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from itertools import accumulate
from pathlib import Path

__all__ = [
    "Entity",
    "KnowledgeBase",
    "normalize_alias",
    "write_kb",
    "entity_line",
    "parse_entity",
    "kb_version",
    "INDEX_MIN_BYTES",
    "index_paths",
]

log = logging.getLogger(__name__)

#: JSONL files at least this large get an index file (smaller ones index in milliseconds).
INDEX_MIN_BYTES = 1 << 20
_INDEX_FORMAT = 2  # 2: alias rows resolve to canonical rows; "links" holds them

#: ASCII characters of Unicode category P* (what the general path strips), plus whitespace.
_ASCII_STRIP = "".join(c for c in map(chr, range(128)) if unicodedata.category(c).startswith("P")) + " "


def _is_punct(ch: str) -> bool:
    return unicodedata.category(ch).startswith("P") or ch.isspace()


def normalize_alias(s: str) -> str:
    """The form aliases and mentions are compared in: "  The Eiffel-Tower. " -> "the eiffel-tower"."""
    if s.isascii():  # fast path, same result: NFKC is the identity and casefold is lower() on ASCII
        return " ".join(s.lower().split()).strip(_ASCII_STRIP)
    s = " ".join(unicodedata.normalize("NFKC", s).casefold().split())
    start, end = 0, len(s)
    while start < end and _is_punct(s[start]):
        start += 1
    while end > start and _is_punct(s[end - 1]):
        end -= 1
    return s[start:end]


@dataclass(frozen=True)
class Entity:
    id: str
    name: str
    aliases: tuple[str, ...]
    description: str
    type: str
    source: str
    prior: float = 0.0
    same_as: str = ""  # the canonical entity's id when this entity is an alias of it

    @classmethod
    def from_dict(cls, d: dict) -> Entity:
        return cls(
            str(d["id"]),
            str(d["name"]),
            tuple(d.get("aliases") or ()),
            str(d.get("description", "")),
            str(d.get("type", "")),
            str(d.get("source", "")),
            float(d.get("prior", 0.0)),
            str(d.get("same_as") or ""),
        )

    def to_dict(self) -> dict:
        d = asdict(self)
        d["aliases"] = list(self.aliases)
        if not self.same_as:
            del d["same_as"]  # canonical entities' lines stay as they were
        return d


def entity_line(entity: Entity) -> str:
    """The entity's JSONL line (with its newline), as the KB file holds it."""
    return json.dumps(entity.to_dict(), ensure_ascii=False) + "\n"


def kb_version(sha256_hex: str) -> str:
    """The version id of a KB file whose SHA-256 is ``sha256_hex``: ``kb-`` and its first 16 hex digits."""
    return f"kb-{sha256_hex[:16]}"


def parse_entity(path: str | Path, n: int, line: bytes | str) -> Entity:
    """Line ``n`` of the KB file ``path`` as an entity, or ValueError naming the file and line."""
    try:
        return Entity.from_dict(json.loads(line))
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise ValueError(f"{path}:{n}: not an entity record ({e})") from None


def _links(ids: Sequence[str], same_as: Sequence[str], pos: dict[str, int]) -> dict[int, int]:
    """Row -> canonical row for every entity whose ``same_as`` names another entity (chains followed;
    a link to an id the KB lacks is ignored, a cycle is an error)."""
    direct = {row: pos[target] for row, target in enumerate(same_as) if target and target in pos and target != ids[row]}
    links: dict[int, int] = {}
    for row, target in direct.items():
        seen = {row}
        while target in direct:
            if target in seen:
                raise ValueError(f"same_as cycle through entity id {ids[row]!r}")
            seen.add(target)
            target = direct[target]
        links[row] = target
    return links


def _build_index(
    ids: Sequence[str], forms: Iterable[Sequence[str]], priors: Sequence[float], links: dict[int, int]
) -> tuple[dict[str, int], array, array]:
    """Alias -> code: a canonical row number (one entity), or ``~k`` for the k-th multi-entity alias, whose
    canonical rows (by descending prior, then id) are ``flat[offsets[k]:offsets[k + 1]]``. An alias
    entity's names index its canonical entity."""
    index: dict[str, int] = {}
    multi: list[list[int]] = []
    for row, names in enumerate(forms):
        row = links.get(row, row)
        for alias in {normalize_alias(a) for a in names}:
            if not alias:
                continue
            code = index.get(alias)
            if code is None:
                index[alias] = row
            elif code == row:
                continue
            elif code >= 0:
                index[alias] = ~len(multi)
                multi.append([code, row])
            else:
                multi[~code].append(row)
    groups = [sorted(set(rows), key=lambda r: (-priors[r], ids[r])) for rows in multi]
    flat = array("q")
    for rows in groups:
        flat.extend(rows)
    offsets = array("q", [0])
    offsets.extend(accumulate(len(rows) for rows in groups))
    return index, offsets, flat


def _positions(ids: Sequence[str]) -> dict[str, int]:
    pos = dict(zip(ids, range(len(ids))))
    if len(pos) != len(ids):
        seen: set[str] = set()
        for i in ids:
            if i in seen:
                raise ValueError(f"duplicate entity id {i!r}")
            seen.add(i)
    return pos


def index_paths(path: str | Path, sha256: str) -> list[Path]:
    """Where the index of the JSONL at ``path`` (content hash ``sha256``) is looked for, in order: next to
    it, then in a private folder under the temp folder (for a KB on a read-only volume)."""
    path = Path(path)
    return [path.with_name(path.name + ".idx"), Path(tempfile.gettempdir()) / "mofi-kb-index" / f"{sha256}.idx"]


def _private(folder: Path) -> bool:
    """Ours and writable by nobody else (the temp folder is shared; the KB's own folder is trusted as the KB is)."""
    try:
        st = folder.stat()
    except OSError:
        return False
    return st.st_uid == os.getuid() and not st.st_mode & 0o022


class KnowledgeBase:
    """Entities by id and by normalised alias. ``lookup`` returns canonical entities by descending prior."""

    def __init__(self, entities: Iterable[Entity]) -> None:
        rows = list(entities)
        ids = [e.id for e in rows]
        self._pos: dict[str, int] | None = _positions(ids)
        self._ids = ids
        self._rows: list[Entity | None] = list(rows)  # filled lazily when loaded from an index
        self._data: bytes = b""
        self._spans = array("q")
        self._links = _links(ids, [e.same_as for e in rows], self._pos)
        self._version = ""
        self._index, self._offsets, self._flat = _build_index(
            ids, ((e.name, *e.aliases) for e in rows), [e.prior for e in rows], self._links
        )

    @classmethod
    def _lazy(
        cls,
        data: bytes,
        spans: array,
        ids: list[str],
        index: dict[str, int],
        offsets: array,
        flat: array,
        links: dict[int, int],
        pos: dict[str, int] | None = None,
    ) -> KnowledgeBase:
        """Entities parsed from ``data[spans[2i]:spans[2i + 1]]`` on first use."""
        kb = cls.__new__(cls)
        kb._pos, kb._ids, kb._rows = pos, ids, [None] * len(ids)
        kb._data, kb._spans = data, spans
        kb._index, kb._offsets, kb._flat, kb._links = index, offsets, flat, links
        kb._version = ""
        return kb

    @classmethod
    def load(cls, path: str | Path, index_file: bool | None = None) -> KnowledgeBase:
        """Read a JSONL file; a malformed line raises ValueError naming the line number.

        ``index_file``: read and write the index file (None: for files of ``INDEX_MIN_BYTES`` or more).
        """
        data = Path(path).read_bytes()
        use_index = len(data) >= INDEX_MIN_BYTES if index_file is None else index_file
        sha = hashlib.sha256(data).hexdigest()
        if use_index:
            for n, candidate in enumerate(index_paths(path, sha)):
                kb = cls._read_index(candidate, data, sha) if n == 0 or _private(candidate.parent) else None
                if kb is not None:
                    kb._version = kb_version(sha)
                    return kb
        kb = cls._parse(path, data)
        if use_index and kb._spans:
            kb._write_index(path, sha)
        kb._version = kb_version(sha)
        return kb

    @classmethod
    def _parse(cls, path: str | Path, data: bytes) -> KnowledgeBase:
        lines = data.split(b"\n")
        ends = list(accumulate(len(line) + 1 for line in lines))
        keep = [n for n, line in enumerate(lines) if line.strip()]
        try:  # one C-level parse of the whole file; per-line parsing only to name a bad line
            rows = json.loads(b"[" + b",".join([lines[n] for n in keep]) + b"]")
            ids = [d["id"] for d in rows]
            if not all(type(i) is str for i in ids):
                raise TypeError("non-string id")
            forms = [(d["name"], *(d.get("aliases") or ())) for d in rows]
            pos = _positions(ids)
            links = _links(ids, [str(d.get("same_as") or "") for d in rows], pos)
            index, offsets, flat = _build_index(ids, forms, [float(d.get("prior", 0.0)) for d in rows], links)
        except (ValueError, KeyError, TypeError, AttributeError):  # the per-entity path names the problem
            return cls([parse_entity(path, n + 1, lines[n]) for n in keep])
        spans = array("q")
        for n in keep:
            spans.append(ends[n] - len(lines[n]) - 1)
            spans.append(ends[n] - 1)
        return cls._lazy(data, spans, ids, index, offsets, flat, links, pos)

    @classmethod
    def _read_index(cls, candidate: Path, data: bytes, sha: str) -> KnowledgeBase | None:
        try:
            saved = marshal.loads(candidate.read_bytes())  # loads(bytes): load(file) reads object by object
            if saved.get("format") != _INDEX_FORMAT or saved.get("sha256") != sha:
                return None
            spans, offsets, flat = array("q"), array("q"), array("q")
            spans.frombytes(saved["spans"])
            offsets.frombytes(saved["offsets"])
            flat.frombytes(saved["flat"])
            ids, index, links = saved["ids"], saved["index"], saved["links"]
            if len(spans) != 2 * len(ids) or not offsets or offsets[-1] != len(flat):
                return None
        except FileNotFoundError:
            return None
        except (OSError, EOFError, ValueError, TypeError, KeyError, AttributeError) as e:
            log.warning("ignoring unreadable knowledge-base index %s: %s", candidate, e)
            return None
        return cls._lazy(data, spans, ids, index, offsets, flat, links)

    def _write_index(self, path: str | Path, sha: str) -> None:
        blob = marshal.dumps(
            {
                "format": _INDEX_FORMAT,
                "sha256": sha,
                "ids": self._ids,
                "index": self._index,
                "spans": self._spans.tobytes(),
                "offsets": self._offsets.tobytes(),
                "flat": self._flat.tobytes(),
                "links": self._links,
            }
        )
        for n, candidate in enumerate(index_paths(path, sha)):
            tmp = None
            try:
                if n > 0:
                    candidate.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                    if not _private(candidate.parent):
                        continue
                fd, tmp = tempfile.mkstemp(prefix=candidate.name, suffix=".tmp", dir=candidate.parent)
                with os.fdopen(fd, "wb") as fh:
                    fh.write(blob)
                os.replace(tmp, candidate)  # atomic: a concurrent load sees the old index or the new one
                log.info("wrote knowledge-base index %s", candidate)
                return
            except OSError as e:
                log.debug("cannot write knowledge-base index %s: %s", candidate, e)
                if tmp is not None and os.path.exists(tmp):
                    os.unlink(tmp)

    @property
    def version(self) -> str:
        """The content hash of the KB's file (of :func:`write_kb`'s output for a KB built in memory)."""
        if not self._version:
            digest = hashlib.sha256()
            for e in sorted(self, key=lambda e: e.id):
                digest.update(entity_line(e).encode())
            self._version = kb_version(digest.hexdigest())
        return self._version

    def _entity(self, row: int) -> Entity:
        entity = self._rows[row]
        if entity is None:
            spans = self._spans
            entity = self._rows[row] = Entity.from_dict(json.loads(self._data[spans[2 * row] : spans[2 * row + 1]]))
        return entity

    def get(self, entity_id: str) -> Entity | None:
        """The entity with this id, an alias entity included (``canonical`` gives its canonical id)."""
        row = self._id_positions().get(entity_id)
        return None if row is None else self._entity(row)

    def canonical(self, entity_id: str) -> str:
        """The id of the canonical entity ``entity_id`` is an alias of; itself when canonical or unknown."""
        row = self._id_positions().get(entity_id)
        return entity_id if row is None else self._ids[self._links.get(row, row)]

    def _id_positions(self) -> dict[str, int]:
        if self._pos is None:
            self._pos = dict(zip(self._ids, range(len(self._ids))))
        return self._pos

    def lookup(self, alias: str) -> list[Entity]:
        code = self._index.get(normalize_alias(alias))
        if code is None:
            return []
        if code >= 0:
            entity = self._rows[code]
            return [entity if entity is not None else self._entity(code)]
        k = ~code
        return [self._entity(row) for row in self._flat[self._offsets[k] : self._offsets[k + 1]]]

    def aliases(self) -> Iterator[str]:
        return iter(self._index)

    def __len__(self) -> int:
        return len(self._ids)

    def __iter__(self) -> Iterator[Entity]:
        return (self._entity(row) for row in range(len(self._ids)))

    def __contains__(self, entity_id: object) -> bool:
        return entity_id in self._id_positions()


def write_kb(entities: Iterable[Entity], path: str | Path) -> int:
    """Write entities as JSONL (one per line, sorted by id for stable diffs); returns the count."""
    rows = sorted(entities, key=lambda e: e.id)
    with open(path, "w", encoding="utf-8") as fh:
        for e in rows:
            fh.write(entity_line(e))
    return len(rows)

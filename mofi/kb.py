"""The entity knowledge base: JSONL entities with an in-memory alias index.

Why JSONL plus an index built at load: the file is diffable, streams into S3 and a pod's init
container as one object, and tens of thousands of entities load and index in well under a second,
so services need no database. Alias lookup is by normalised string (casefold, NFKC, collapsed
whitespace, punctuation stripped at the ends), which is how NER mentions are matched against it.
"""

from __future__ import annotations

import json
import unicodedata
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Iterator

__all__ = ["Entity", "KnowledgeBase", "normalize_alias", "write_kb"]

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

    @classmethod
    def from_dict(cls, d: dict) -> "Entity":
        return cls(str(d["id"]), str(d["name"]), tuple(d.get("aliases") or ()), str(d.get("description", "")),
                   str(d.get("type", "")), str(d.get("source", "")), float(d.get("prior", 0.0)))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["aliases"] = list(self.aliases)
        return d


def _entity_at(path: str | Path, n: int, line: str) -> Entity:
    try:
        return Entity.from_dict(json.loads(line))
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise ValueError(f"{path}:{n}: not an entity record ({e})") from None


class KnowledgeBase:
    """Entities by id and by normalised alias. ``lookup`` returns entities by descending prior."""

    def __init__(self, entities: Iterable[Entity]) -> None:
        self._by_id: dict[str, Entity] = {}
        index: dict[str, list[Entity]] = {}
        for e in entities:
            if e.id in self._by_id:
                raise ValueError(f"duplicate entity id {e.id!r}")
            self._by_id[e.id] = e
            for alias in {normalize_alias(a) for a in (e.name, *e.aliases)}:
                if alias:
                    hits = index.get(alias)
                    if hits is None:
                        index[alias] = [e]
                    else:
                        hits.append(e)
        for hits in index.values():
            if len(hits) > 1:
                hits.sort(key=lambda e: (-e.prior, e.id))
        self._index = index

    @classmethod
    def load(cls, path: str | Path) -> "KnowledgeBase":
        """Read a JSONL file; a malformed line raises ValueError naming the line number."""
        with open(path, encoding="utf-8") as fh:
            lines = [line for line in fh.read().splitlines() if line.strip()]
        try:  # one C-level parse of the whole file; per-line parsing only to name a bad line
            rows = json.loads("[" + ",".join(lines) + "]")
            entities = [Entity(d["id"], d["name"], tuple(d.get("aliases") or ()), d.get("description", ""),
                               d.get("type", ""), d.get("source", ""), float(d.get("prior", 0.0))) for d in rows]
        except (ValueError, KeyError, TypeError, AttributeError):
            entities = [_entity_at(path, n, line) for n, line in enumerate(lines, 1)]
        return cls(entities)

    def get(self, entity_id: str) -> Entity | None:
        return self._by_id.get(entity_id)

    def lookup(self, alias: str) -> list[Entity]:
        return list(self._index.get(normalize_alias(alias), ()))

    def aliases(self) -> Iterator[str]:
        return iter(self._index)

    def __len__(self) -> int:
        return len(self._by_id)

    def __iter__(self) -> Iterator[Entity]:
        return iter(self._by_id.values())

    def __contains__(self, entity_id: object) -> bool:
        return entity_id in self._by_id


def write_kb(entities: Iterable[Entity], path: str | Path) -> int:
    """Write entities as JSONL (one per line, sorted by id for stable diffs); returns the count."""
    rows = sorted(entities, key=lambda e: e.id)
    with open(path, "w", encoding="utf-8") as fh:
        for e in rows:
            fh.write(json.dumps(e.to_dict(), ensure_ascii=False) + "\n")
    return len(rows)

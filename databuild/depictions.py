"""Which entity an alt-text names, and a corpus subset dense in entities drawn by many sources.

Why: MOFI's classifier learns what stays the same across many depictions of one entity. A seeded
random subset of the corpus keeps each entity's images in proportion, so an entity with 30 drawings
in the whole corpus keeps two in a 7,000-pair demo and the entity head has nothing to generalise
from. The dense subset spends the same number of pairs on whole groups instead: the entities drawn
by the most different sources, each with up to ``per_entity`` images spread over its sources.

Which entity a text names is a cheap proxy taken before NER, linking and the CLIP scorer run: the
first clause of the alt-text ("grinning face, face, grin" -> "grinning face"), then its longest word
span (up to four words, the rightmost of equal length, as English noun phrases end in their head:
"animal cat" -> cat) that is a knowledge-base alias, resolved to the canonical entity of the top
candidate `KnowledgeBase.lookup` gives; the dense subset keeps only entities that are physical things
or emoji (`drawable_entity`). It only chooses which pairs enter the corpus; the I2E labels
still come from the pipeline, which may link or drop them differently.
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping

from mofi.kb import KnowledgeBase

__all__ = ["CONCRETE", "dense_subset", "drawable_entity", "entity_of"]

_CLAUSE = re.compile(r",|;| - |\(|\.\s")

#: KB entity types of physical things an image can show (WordNet lexicographer files and source types).
CONCRETE = frozenset(
    {
        "noun.artifact",
        "noun.animal",
        "noun.plant",
        "noun.food",
        "noun.object",
        "noun.body",
        "noun.substance",
        "noun.location",
        "city",
        "region",
        "country",
        "sky_object",
        "constellation",
        "food",
        "animal",
        "monument",
    }
)


def entity_of(kb: KnowledgeBase, text: str, longest: int = 4) -> str | None:
    """The canonical id of the longest (then rightmost) alias span of the text's first clause."""
    words = _CLAUSE.split(text, maxsplit=1)[0].replace("_", " ").split()
    for n in range(min(longest, len(words)), 0, -1):
        for i in range(len(words) - n, -1, -1):
            hits = kb.lookup(" ".join(words[i : i + n]))
            if hits:
                return kb.canonical(hits[0].id)
    return None


def drawable_entity(kb: KnowledgeBase, text: str) -> str | None:
    """``entity_of`` where that entity is a physical thing (``CONCRETE``) or an emoji, else None: icon sets
    name many UI actions ("go", "run", "increase") whose drawings share no appearance to learn."""
    eid = entity_of(kb, text)
    if eid is None:
        return None
    entity = kb.get(eid)
    return eid if entity is not None and (entity.type in CONCRETE or entity.type == "emoji") else None


def _rank(seed: int, key: str) -> str:
    return hashlib.sha1(f"{seed}:{key}".encode()).hexdigest()


Key = tuple[str, str]  # (source, pair id)


def dense_subset(
    texts: Mapping[Key, str],
    entity: Callable[[str], str | None],
    pairs: int,
    *,
    seed: int = 0,
    per_entity: int = 16,
    min_sources: int = 3,
) -> set[Key]:
    """``pairs`` keys of ``texts``: whole entities first, then a seeded random remainder.

    Entities named (``entity``) by texts of at least ``min_sources`` sources are taken in order of
    how many sources draw them, then how many images they have (ties by seeded hash); each gives up
    to ``per_entity`` pairs, one source after another in turn so that its images come from as many
    hands as possible. When the dense entities are exhausted the rest is filled in seeded random order.
    """
    groups: defaultdict[str, defaultdict[str, list[Key]]] = defaultdict(lambda: defaultdict(list))
    for key, text in texts.items():
        eid = entity(text)
        if eid is not None:
            groups[eid][key[0]].append(key)
    eligible = [e for e, by_source in groups.items() if len(by_source) >= min_sources]
    eligible.sort(key=lambda e: (-len(groups[e]), -sum(map(len, groups[e].values())), _rank(seed, e)))
    chosen: set[Key] = set()
    for eid in eligible:
        if len(chosen) >= pairs:
            break
        queues = [sorted(keys, key=lambda k: _rank(seed, k[1])) for _, keys in sorted(groups[eid].items())]
        queues.sort(key=lambda q: _rank(seed, f"{eid}:{q[0][0]}"))
        take = min(per_entity, pairs - len(chosen))
        chosen.update(_round_robin(queues, take))
    if len(chosen) < pairs:
        rest = sorted((k for k in texts if k not in chosen), key=lambda k: _rank(seed, k[1]))
        chosen.update(rest[: pairs - len(chosen)])
    return chosen


def _round_robin(queues: list[list[Key]], take: int) -> Iterable[Key]:
    """Up to ``take`` keys, the first of every queue, then the second of every queue, ..."""
    out: list[Key] = []
    depth = 0
    while len(out) < take and any(depth < len(q) for q in queues):
        out.extend(q[depth] for q in queues if depth < len(q))
        depth += 1
    return out[:take]

"""Same-as links between knowledge-base entities that are one concept named by several sources.

Why: a concept split over ids is split over training classes ("tiger" is the emoji ``emoji:1f405``, the
synset ``wn:02129604`` and a Tux Paint stamp). Each rule below links an alias entity to a canonical one
(``Entity.same_as``); the canonical entity gains the alias entity's names, and :mod:`mofi.kb` resolves
lookups to it. The rules are conservative, since a wrong merge teaches a wrong class and a missing one
only leaves a duplicate:

- ``flag``: a country-flag emoji (two regional indicators) folds into its country (``country:FR``);
- ``country``: the WordNet synset of a country (a capitalised ``noun.location`` lemma equal to the country's
  name or an alias whose gloss calls it a country, republic, kingdom, ...) folds into the country, when
  exactly one synset qualifies;
- ``emoji``: an emoji of a concrete subcategory (animals, plants, food, objects, buildings, vehicles, body
  parts, people's roles) folds into the synset headed by its name (or by a short name that is the
  name's head noun, "tiger" of "tiger face") among the WordNet lexicographer files its subcategory
  allows: the tiger emoji is the animal, not "a fierce or audacious person". A name that heads several
  synsets there stays unlinked, as WordNet's sense order would make the hammer emoji a gunlock part;
- ``kind``: a food, animal or monument of another source folds into the WordNet synset of the same
  common-noun name and the same kind ("Mackerel" the IFCT food into ``mackerel`` the food), only when
  exactly one synset of that kind has the name.

Links a review of the built KB found wrong are listed in :data:`REVIEWED_NOT_SAME`.
:meth:`WordNetSenses.headed` is the hook for vocabularies named by single words (icon sets): their
names reach canonical entities through alias lookup already, and ``headed`` gives the one synset of a
name in the given lexicographer files where a builder needs an id per name.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence

from mofi.kb import Entity, normalize_alias

__all__ = ["LinkStats", "WordNetSenses", "EMOJI_LEXNAMES", "KIND_LEXNAMES", "REVIEWED_NOT_SAME", "link_same_as"]

#: Emoji subcategory -> the WordNet lexicographer files an emoji of it may denote (others get no link:
#: faces, gestures, symbols, flags, maps and activities are no one synset).
EMOJI_LEXNAMES: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(
        ("animal-amphibian", "animal-bird", "animal-bug", "animal-mammal", "animal-marine", "animal-reptile"),
        ("noun.animal",),
    ),
    **dict.fromkeys(("plant-flower", "plant-other"), ("noun.plant",)),
    **dict.fromkeys(
        ("food-fruit", "food-vegetable", "food-prepared", "food-asian", "food-sweet", "drink"), ("noun.food",)
    ),
    **dict.fromkeys(
        (
            "dishware",
            "book-paper",
            "clothing",
            "computer",
            "household",
            "light & video",
            "lock",
            "mail",
            "medical",
            "money",
            "musical-instrument",
            "office",
            "phone",
            "science",
            "tool",
            "writing",
            "place-building",
            "place-religious",
            "transport-air",
            "transport-ground",
            "transport-water",
        ),
        ("noun.artifact",),
    ),
    "place-geographic": ("noun.object",),
    "sky & weather": ("noun.object", "noun.phenomenon"),
    "body-parts": ("noun.body",),
    **dict.fromkeys(("person-role", "person-fantasy"), ("noun.person",)),
}

#: Entity type of another source -> the lexicographer file of a WordNet synset that is the same kind of thing.
KIND_LEXNAMES: dict[str, str] = {"food": "noun.food", "animal": "noun.animal", "monument": "noun.artifact"}

_COUNTRY_GLOSS = re.compile(
    r"\b(country|republic|kingdom|monarchy|principality|sultanate|emirate|commonwealth|federation|duchy)\b"
)
_REGIONAL_A = 0x1F1E6

#: Links the rules make that a review of the built KB found wrong (WordNet's only sense of that headword in
#: the allowed files is another thing): the light-bulb emoji is no "rounded part of an instrument", the
#: notebook emoji no laptop, IFCT "Drumstick" (moringa pods) no fowl's leg, ...
REVIEWED_NOT_SAME = frozenset(
    {
        "emoji:1f3f5-fe0f",  # rosette (decoration) -> leaf rosette
        "emoji:1f409",  # dragon (myth) -> flying lizard
        "emoji:1f4a1",  # electric light bulb -> bulb of an instrument
        "emoji:1f4d3",  # notebook (paper) -> notebook computer
        "emoji:1f4fa",  # television (set) -> television system
        "emoji:1f6d6",  # hut -> temporary military shelter
        "emoji:1fab5",  # wood (logs) -> golf club
        "food:D046",  # Drumstick (moringa) -> lower leg of a fowl
    }
)


class LinkStats(Counter):
    """Links made per rule ("flag", "country", "emoji", "kind")."""


class WordNetSenses:
    """WordNet synsets by lemma, common nouns (lemmas written lower case) apart from names."""

    def __init__(self, synsets: Iterable[Entity]):
        self.common: dict[str, list[Entity]] = {}
        self.proper: dict[str, list[Entity]] = {}
        for e in synsets:
            for lemma in dict.fromkeys((e.name, *e.aliases)):
                table = self.proper if lemma[:1].isupper() else self.common
                table.setdefault(normalize_alias(lemma), []).append(e)

    def senses(self, lemma: str, lexnames: Iterable[str], proper: bool = False) -> list[Entity]:
        """Synsets with this lemma in the given lexicographer files, by descending prior."""
        kinds = set(lexnames)
        found = (self.proper if proper else self.common).get(normalize_alias(lemma), ())
        return sorted((e for e in found if e.type in kinds), key=lambda e: (-e.prior, e.id))

    def headed(self, name: str, lexnames: Iterable[str]) -> Entity | None:
        """The one synset in ``lexnames`` whose first lemma is ``name``; None when there are none or several
        (WordNet's own sense order would pick the gunlock part for "hammer" and the butterfly for "peacock")."""
        key = normalize_alias(name)
        found = [e for e in self.senses(name, lexnames) if normalize_alias(e.name) == key]
        return found[0] if len(found) == 1 else None


def _flag_country(entity: Entity) -> str:
    """``country:FR`` for the French flag emoji (``emoji:1f1eb-1f1f7``), else ""."""
    points = entity.id.removeprefix("emoji:").split("-")
    if not entity.id.startswith("emoji:") or len(points) != 2:
        return ""
    letters = [int(p, 16) - _REGIONAL_A for p in points]
    return "country:" + "".join(chr(65 + n) for n in letters) if all(0 <= n < 26 for n in letters) else ""


def _emoji_subcategory(entity: Entity) -> str:
    return entity.description.rpartition(" / ")[2] if entity.id.startswith("emoji:") else ""


def _emoji_target(entity: Entity, senses: WordNetSenses, lexnames: tuple[str, ...]) -> Entity | None:
    """The synset headed by the emoji's name, else by a short name that is the name's head noun ("castle" of
    "european castle") or the name without "face" ("tiger" of "tiger face"); not "salt" of "salt shaker",
    "coffee" of "hot beverage", nor codes such as "tiger2"."""
    name = normalize_alias(entity.name)
    for alias in (entity.name, *entity.aliases):
        form = normalize_alias(alias)
        if form == name or name.endswith(" " + form) or name == form + " face":
            found = senses.headed(form, lexnames)
            if found is not None:
                return found
    return None


def _proposals(entities: Sequence[Entity], senses: WordNetSenses) -> Iterable[tuple[str, str, str]]:
    """(rule, alias id, canonical id) for every link the rules find."""
    ids = {e.id for e in entities}
    countries_named: Counter[str] = Counter(
        n for e in entities if e.type == "country" for n in {normalize_alias(a) for a in (e.name, *e.aliases)}
    )
    for e in entities:
        if e.source == "wordnet":
            continue
        if (country := _flag_country(e)) in ids:
            yield "flag", e.id, country
        elif e.type == "country":
            found = {
                s.id
                for name in (e.name, *e.aliases)
                if countries_named[normalize_alias(name)] == 1  # "Congo" names two countries
                for s in senses.senses(name, ("noun.location",), proper=True)
                if _COUNTRY_GLOSS.search(s.description) and "former" not in s.description
            }
            if len(found) == 1:
                yield "country", found.pop(), e.id
        elif (sub := _emoji_subcategory(e)) in EMOJI_LEXNAMES:
            target = _emoji_target(e, senses, EMOJI_LEXNAMES[sub])
            if target is not None:
                yield "emoji", e.id, target.id
        elif e.type in KIND_LEXNAMES:
            target = senses.headed(e.name, (KIND_LEXNAMES[e.type],))
            if target is not None and len(senses.senses(e.name, (KIND_LEXNAMES[e.type],))) == 1:
                yield "kind", e.id, target.id


def _merged(canonical: Entity, aliases: Sequence[Entity]) -> Entity:
    """The canonical entity with the names of its alias entities added to its aliases, and the highest prior."""
    known = {normalize_alias(n) for n in (canonical.name, *canonical.aliases)}
    extra = []
    for alias in aliases:
        for name in (alias.name, *alias.aliases):
            if normalize_alias(name) not in known:
                known.add(normalize_alias(name))
                extra.append(name)
    prior = max([canonical.prior, *(a.prior for a in aliases)])  # as common as its most common name
    return Entity(**{**canonical.__dict__, "aliases": (*canonical.aliases, *extra), "prior": prior})


def link_same_as(entities: Iterable[Entity]) -> tuple[list[Entity], LinkStats]:
    """Entities with ``same_as`` set on alias entities and canonical entities' aliases merged, and the
    number of links per rule. An entity that is already the target of a link is never made an alias,
    so every link points at a canonical entity."""
    rows = list(entities)
    senses = WordNetSenses(e for e in rows if e.source == "wordnet")
    proposed: dict[str, tuple[str, str]] = {}
    for rule, alias, canonical in _proposals(rows, senses):
        if alias not in REVIEWED_NOT_SAME:
            proposed.setdefault(alias, (rule, canonical))
    links = {a: c for a, (_, c) in proposed.items() if c not in proposed}  # no chains: targets stay canonical
    stats = LinkStats(proposed[a][0] for a in links)
    by_id = {e.id: e for e in rows}
    members: dict[str, list[Entity]] = {}
    for alias, canonical in links.items():
        members.setdefault(canonical, []).append(by_id[alias])
    out = []
    for e in rows:
        if e.id in links:
            e = Entity(**{**e.__dict__, "same_as": links[e.id]})
        elif e.id in members:
            e = _merged(e, members[e.id])
        out.append(e)
    return out, stats

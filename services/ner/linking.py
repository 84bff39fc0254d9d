"""Linking a mention to knowledge-base entities: candidates by alias, scored by a calibrated logistic.

Features per (mention, candidate), all in roughly [-1, 1]:
- ``context``: cosine between the whole alt-text and the candidate's "name: description" (MiniLM);
- ``prior``: the entity's prior from the knowledge base (how common that sense is);
- ``rank``: 1 / (1 + position among the alias's candidates ordered by prior);
- ``type``: +1 when the NER label agrees with the entity's type, -1 when it contradicts it, 0 unknown;
- ``exact``: 1 when the mention is the entity's name rather than one of its other aliases;
- ``ambiguity``: 1 / number of candidates for the alias;
- ``visual``: 1 when the entity is a kind of thing a picture can show (animal, artifact, food, plant,
  place, object, person, ... by its type), 0 for abstractions (acts, attributes, cognition, time);
- ``margin``: ``context`` minus the best ``context`` among the mention's other candidates (the
  absolute cosine of short texts varies a lot; which sense fits best is what matters);
- ``case``: -1 when the entity's name is capitalised (a proper name: "Orange", the city) but the
  mention is lower case ("a sliced orange"), else 0.
The weights come from logistic regression fitted on the labelled evaluation set
(``benchmarks/ner_calibrate.py`` writes ``calibration.json``), so the score reads as the probability
that the link is right, and ``ner.link_threshold`` is a probability.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mofi.kb import Entity, KnowledgeBase, normalize_alias
from mofi_platform.services.ner.encoder import TextEncoder
from mofi_platform.services.ner.mentions import Mention

__all__ = [
    "Calibration",
    "Candidate",
    "Linker",
    "choose",
    "FEATURES",
    "entity_text",
    "type_agreement",
    "CALIBRATION_PATH",
]

FEATURES = ("context", "prior", "rank", "type", "exact", "ambiguity", "visual", "margin", "case")
CALIBRATION_PATH = Path(__file__).with_name("calibration.json")

_PLACE_LABELS = {"GPE", "LOC", "FAC"}
_LABEL_TYPES = {  # NER label -> words that an agreeing entity type or id namespace contains
    "PERSON": ("person",),
    "NORP": ("person", "group", "language"),
    "FAC": ("artifact", "building", "landmark", "location", "place", "structure"),
    "GPE": ("location", "place", "city", "country", "geo", "region"),
    "LOC": ("location", "place", "object", "geo", "region", "sky", "landmark"),
    "ORG": ("group", "organization", "organisation"),
    "PRODUCT": ("artifact", "object", "food", "product"),
    "EVENT": ("event", "act"),
    "WORK_OF_ART": ("communication", "artifact", "work"),
}


_VISUAL_TYPES = (
    "animal",
    "artifact",
    "body",
    "food",
    "location",
    "object",
    "person",
    "plant",
    "shape",
    "substance",
    "landmark",
    "country",
    "city",
    "emoji",
    "food",
    "sky",
    "geo",
)


def visual(entity: Entity) -> float:
    kind = f"{entity.type} {entity.id.split(':', 1)[0]}".lower()
    return 1.0 if any(word in kind for word in _VISUAL_TYPES) else 0.0


def case_agreement(mention_text: str, entity: Entity) -> float:
    return -1.0 if entity.name[:1].isupper() and mention_text[:1].islower() else 0.0


def entity_text(entity: Entity) -> str:
    """What the context is compared with, and what the MOFI text tower sees: "name: description"."""
    return f"{entity.name}: {entity.description}" if entity.description else entity.name


def type_agreement(label: str, entity: Entity) -> float:
    """+1 agree, -1 contradict, 0 when the mention has no NER label."""
    if label not in _LABEL_TYPES:
        return 0.0
    kind = f"{entity.type} {entity.id.split(':', 1)[0]}".lower()
    if any(word in kind for word in _LABEL_TYPES[label]):
        return 1.0
    if label in _PLACE_LABELS and entity.id.startswith(("geo:", "country:")):
        return 1.0
    return -1.0


@dataclass(frozen=True)
class Calibration:
    weights: tuple[float, ...]
    bias: float

    @classmethod
    def load(cls, path: str | Path = CALIBRATION_PATH) -> Calibration:
        data = json.loads(Path(path).read_text())
        return cls(tuple(float(data["weights"][f]) for f in FEATURES), float(data["bias"]))

    def save(self, path: str | Path, **extra) -> None:
        Path(path).write_text(
            json.dumps(
                {"features": list(FEATURES), "weights": dict(zip(FEATURES, self.weights)), "bias": self.bias, **extra},
                indent=2,
            )
            + "\n"
        )

    def score(self, features: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-(features @ np.asarray(self.weights) + self.bias)))


@dataclass(frozen=True)
class Candidate:
    entity: Entity
    mention_index: int
    method: str  # "ner+alias" | "alias" | "ner"
    features: tuple[float, ...]
    score: float


def _method(m: Mention) -> str:
    return "ner+alias" if m.by_ner and m.by_alias else ("alias" if m.by_alias else "ner")


class Linker:
    """Candidates for every mention of one alt-text, with features and calibrated scores."""

    def __init__(
        self, kb: KnowledgeBase, encoder: TextEncoder, calibration: Calibration, threshold: float, max_candidates: int
    ):
        self.kb = kb
        self.encoder = encoder
        self.calibration = calibration
        self.threshold = threshold
        self.max_candidates = max_candidates

    def features(self, mentions: list[Mention], context: np.ndarray) -> list[tuple[int, Entity, list[float]]]:
        rows: list[tuple[int, Entity, list[float]]] = []
        pending: list[tuple[int, Entity, list[float]]] = []
        for i, m in enumerate(mentions):
            seen: set[str] = set()
            for alias in m.aliases:
                hits = self.kb.lookup(alias)
                for rank, entity in enumerate(hits):
                    if entity.id in seen:
                        continue
                    seen.add(entity.id)
                    exact = 1.0 if normalize_alias(entity.name) == alias else 0.0
                    pending.append(
                        (
                            i,
                            entity,
                            [
                                0.0,
                                entity.prior,
                                1.0 / (1 + rank),
                                type_agreement(m.label, entity),
                                exact,
                                1.0 / len(hits),
                                visual(entity),
                                0.0,
                                case_agreement(m.text, entity),
                            ],
                        )
                    )
        if pending:
            sims = self.encoder.encode_cached([entity_text(e) for _, e, _ in pending]) @ context
            for (i, entity, feats), sim in zip(pending, sims):
                feats[0] = float(sim)
                rows.append((i, entity, feats))
            for i, _, feats in rows:
                others = [f[0] for j, _, f in rows if j == i and f is not feats]
                feats[7] = feats[0] - max(others) if others else 0.0
        return rows

    def link(self, mentions: list[Mention], context: np.ndarray) -> list[Candidate]:
        """Candidates at or above the threshold, best first per mention, at most ``max_candidates`` each."""
        rows = self.features(mentions, context)
        scores = self.calibration.score(np.array([f for _, _, f in rows], dtype=np.float64).reshape(-1, len(FEATURES)))
        return choose(
            mentions, [(i, e, f, float(s)) for (i, e, f), s in zip(rows, scores)], self.threshold, self.max_candidates
        )


def choose(
    mentions: list[Mention], scored: list[tuple[int, Entity, list[float], float]], threshold: float, max_candidates: int
) -> list[Candidate]:
    """Per mention, the best ``max_candidates`` scored (mention index, entity, features, score) at or above
    the threshold, as :class:`Candidate` (best first)."""
    out: list[Candidate] = []
    for i, m in enumerate(mentions):
        mine = sorted((t for t in scored if t[0] == i), key=lambda t: -t[3])[:max_candidates]
        out.extend(
            Candidate(e, i, _method(m), tuple(f), s) for _, e, f, s in mine if s >= threshold and not math.isnan(s)
        )
    return out

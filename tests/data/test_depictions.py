"""The dense corpus subset: whole entities drawn by many sources, and the alt-text -> entity proxy it uses."""

from collections import Counter

from mofi.kb import Entity, KnowledgeBase
from mofi.objstore import ObjectStore
from mofi.settings import S3Settings
from mofi_platform.databuild.build import build_corpus
from mofi_platform.databuild.corpus import iter_corpus
from mofi_platform.databuild.depictions import dense_subset, drawable_entity, entity_of
from mofi_platform.databuild.extractors import EXTRACTORS


def _kb() -> KnowledgeBase:
    return KnowledgeBase(
        [
            Entity("wn:cat", "cat", ("house cat",), "a small feline", type="noun.animal", source="wordnet"),
            Entity("wn:fire_truck", "fire truck", (), "a vehicle", type="noun.artifact", source="wordnet"),
            Entity("wn:truck", "truck", (), "a motor vehicle", type="noun.artifact", source="wordnet"),
            Entity("wn:go", "go", (), "the act of going", type="noun.act", source="wordnet"),
            Entity("emoji:1f431", "cat face", (), "emoji", type="emoji", source="emoji", same_as="wn:cat"),
        ]
    )


def test_entity_of_takes_the_longest_rightmost_alias_of_the_first_clause_and_its_canonical_id():
    kb = _kb()
    assert entity_of(kb, "red fire truck, toy") == "wn:fire_truck"  # longest span wins over "truck"
    assert entity_of(kb, "animal house cat") == "wn:cat"
    assert entity_of(kb, "cat face") == "wn:cat"  # the emoji resolves to the physical sense it is the same as
    assert entity_of(kb, "toy, cat") is None  # only the first clause names the picture
    assert entity_of(kb, "go") == "wn:go" and drawable_entity(kb, "go") is None  # an action has no appearance
    assert drawable_entity(kb, "a fire truck") == "wn:fire_truck"


def _texts(spec: dict[str, dict[str, int]], filler: int = 0) -> dict[tuple[str, str], str]:
    """{entity: {source: images}} -> {(source, pair id): alt-text naming the entity}; plus unnamed filler pairs."""
    texts = {}
    for name, by_source in spec.items():
        for source, n in by_source.items():
            for i in range(n):
                texts[(source, f"{name}-{source}-{i}")] = name
    for i in range(filler):
        texts[("misc", f"filler-{i}")] = "nothing"
    return texts


def test_dense_subset_takes_whole_entities_of_most_sources_spread_over_sources_then_fills_randomly():
    texts = _texts(
        {
            "wide": {"a": 10, "b": 10, "c": 10, "d": 10},  # four sources
            "mid": {"a": 1, "b": 1, "c": 8},  # three sources, one of them heavy
            "narrow": {"a": 20, "b": 20},  # many images, two sources only: never a dense entity
        },
        filler=50,
    )
    name = lambda text: None if text == "nothing" else text  # noqa: E731
    chosen = dense_subset(texts, name, 30, seed=0, per_entity=16)
    counts = Counter(texts[k] for k in chosen)
    assert len(chosen) == 30
    assert counts["wide"] == 16 and Counter(k[0] for k in chosen if texts[k] == "wide") == dict(a=4, b=4, c=4, d=4)
    assert counts["mid"] == 10  # every image of its light sources, then the heavy one
    assert counts["narrow"] + counts["nothing"] == 4  # the remainder is random over everything else
    assert dense_subset(texts, name, 30, seed=0, per_entity=16) == chosen  # the same subset every run
    assert dense_subset(texts, name, 30, seed=1, per_entity=16) != chosen
    few = dense_subset(texts, name, 10, seed=0, per_entity=16)
    assert Counter(texts[k] for k in few) == {"wide": 10}  # the budget ends inside the first entity
    assert len(dense_subset(texts, name, 500, seed=0)) == len(texts)  # asking for more keeps everything


def test_build_corpus_with_the_dense_subset_keeps_the_entities_it_names(tmp_path, dirs):
    store = ObjectStore(S3Settings())
    sources = ["tuxpaint", "openmoji", "mdi", "ph", "fluent", "game-icons"]
    raw = [p for s in sources for p in EXTRACTORS[s](dirs)]
    head = lambda text: text.split(",")[0].split()[-1].lower()  # noqa: E731  (a stand-in for KB linking)
    drawn_by: dict[str, set[str]] = {}
    for p in raw:
        drawn_by.setdefault(head(p.text), set()).add(p.source)
    dense = {w for w, srcs in drawn_by.items() if len(srcs) >= 3}
    assert dense  # the miniature packages draw some things in three or more sets ("rocket", "cat")
    name = lambda text: head(text) if head(text) in dense else None  # noqa: E731
    named = {p.pair_id for p in raw if name(p.text)}
    assert all(sum(head(p.text) == w for p in raw) <= 16 for w in dense)  # so every one of them is taken
    opts = {"max_pixels": 40_000_000, "image_size": 32, "shard_size": 4, "workers": 1, "sources": sources}
    build_corpus(store, str(tmp_path / "full"), dirs, **opts)
    reps = build_corpus(store, str(tmp_path / "dense"), dirs, pairs=len(named) + 3, seed=0, dense=name, **opts)
    kept = {s.pair_id for s in iter_corpus(store, str(tmp_path / "dense"))}
    built = {s.pair_id for s in iter_corpus(store, str(tmp_path / "full"))}  # what survives image checks
    assert sum(r.selected for r in reps) == len(named) + 3
    assert kept & named == built & named and len(kept - named) <= 3

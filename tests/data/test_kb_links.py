"""Same-as links: the build-time rules on real entities of the fixture KB, and canonical resolution in the
knowledge base (lookup, get, canonical, the index file, old files without the field)."""

import hashlib
import json
import marshal
import time

import pytest

from mofi.kb import Entity, KnowledgeBase, index_paths, write_kb
from mofi_platform.databuild.fixtures import fixture_kb_path
from mofi_platform.databuild.kb_links import REVIEWED_NOT_SAME, WordNetSenses, link_same_as


@pytest.fixture(scope="module")
def linked() -> dict[str, Entity]:
    """The fixture's real entities with the links recomputed from scratch (its built links removed)."""
    rows = [Entity(**{**e.__dict__, "same_as": ""}) for e in KnowledgeBase.load(fixture_kb_path())]
    out, stats = link_same_as(rows)
    assert stats == {"emoji": 8, "kind": 4, "flag": 1, "country": 1}  # incl. 7 alias entities of chosen ones
    return {e.id: e for e in out}


def _wn(id_: str, name: str, type_: str, aliases=(), description="", prior=1.0) -> Entity:
    return Entity(id_, name, tuple(aliases), description, type_, "wordnet", prior)


def _emoji(code: str, name: str, sub: str, aliases=()) -> Entity:
    return Entity(f"emoji:{code}", name, tuple(aliases), f"emoji: Objects / {sub}", "emoji", "emoji-datasource", 0.3)


def test_emoji_folds_into_the_physical_sense_of_its_name(linked):
    assert linked["emoji:1f405"].same_as == "wn:02129604"  # the animal, not "a fierce or audacious person"
    assert linked["emoji:1f34e"].same_as == "wn:07739125"  # "red apple" -> apple the fruit, not the tree
    assert linked["emoji:1f33b"].same_as == "wn:11978233"  # sunflower
    for smiley_or_symbol in ("emoji:1f600", "emoji:1f44e", "emoji:2796"):
        assert linked[smiley_or_symbol].same_as == ""
    assert linked["emoji:1f3e0"].same_as == ""  # "house building": its short name "house" is no head noun
    tiger = linked["wn:02129604"]
    assert tiger.same_as == "" and {"tiger2", "Panthera tigris"} <= set(tiger.aliases)


def test_case_variants_of_the_same_kind_fold(linked):
    assert linked["food:P034"].same_as == "wn:07781319"  # "Mackerel" the food -> mackerel the food, not the fish
    assert linked["tuxpaint:animals/mammals/cats/tiger"].same_as == "wn:02129604"
    assert linked["food:P068"].same_as == ""  # "Salmon": this KB has the fish and the river, no food sense
    assert linked["wn:07781319"].prior == 1.0 and "Rastrelliger kanagurta" in linked["wn:07781319"].aliases


def test_flags_and_wordnet_countries_fold_into_the_country(linked):
    assert linked["emoji:1f1eb-1f1f7"].same_as == "country:FR"
    assert linked["wn:08929922"].same_as == "country:FR"  # "a republic in western Europe"
    assert linked["wn:10977368"].same_as == ""  # Anatole France, a writer
    assert linked["wn:08932568"].same_as == ""  # Paris: cities are not linked
    france = linked["country:FR"]
    assert france.same_as == "" and "france flag" in france.aliases and france.prior == 1.0


def test_ambiguous_names_do_not_fold():
    rows = [
        _wn("wn:1", "hammer", "noun.artifact", description="a hand tool"),
        _wn("wn:2", "hammer", "noun.artifact", description="the part of a gunlock"),
        _emoji("1f528", "hammer", "tool"),
        _wn("wn:3", "fisher", "noun.animal", aliases=["black cat"]),
        Entity("emoji:1f408-200d-2b1b", "black cat", (), "emoji: Animals & Nature / animal-mammal", "emoji", "e", 0.3),
        _wn("wn:4", "salt", "noun.food"),
        _emoji("1f9c2", "salt shaker", "dishware", aliases=["salt"]),
        Entity("country:CG", "Congo", (), "country", "country", "pycountry", 0.9),
        Entity("country:CD", "Congo, The Democratic Republic of the", ("Congo",), "country", "country", "p", 0.9),
        _wn("wn:5", "Congo", "noun.location", description="a republic in central Africa"),
        Entity("food:X1", "Toddy", (), "food", "food", "ifct2017", 0.4),
        _wn("wn:6", "hot toddy", "noun.food", aliases=["toddy"]),
        Entity("food:X2", "Crab", (), "food", "food", "ifct2017", 0.4),
        _wn("wn:7", "crab", "noun.food"),
        _wn("wn:8", "crab", "noun.food", description="a second food sense"),
    ]
    out, stats = link_same_as(rows)
    assert not stats and not any(e.same_as for e in out)  # several senses, a non-head name, two Congos


def test_reviewed_false_friends_stay_apart():
    bulb = _emoji("1f4a1", "electric light bulb", "light & video", aliases=["bulb"])
    out, _ = link_same_as([bulb, _wn("wn:1", "bulb", "noun.artifact")])
    assert bulb.id in REVIEWED_NOT_SAME and not any(e.same_as for e in out)


def test_icon_names_find_one_headed_synset():
    senses = WordNetSenses([_wn("wn:1", "tiger", "noun.animal"), _wn("wn:2", "tiger", "noun.person")])
    assert senses.headed("Tiger", ["noun.animal"]).id == "wn:1"
    assert senses.headed("tiger", ["noun.animal", "noun.person"]) is None


def test_lookup_resolves_to_the_canonical_entity_and_get_keeps_alias_ids():
    kb = KnowledgeBase.load(fixture_kb_path())
    assert [e.id for e in kb.lookup("France flag")] == ["country:FR"]
    assert kb.canonical("emoji:1f1eb-1f1f7") == "country:FR" and kb.canonical("country:FR") == "country:FR"
    assert kb.canonical("no:such") == "no:such"
    assert kb.get("emoji:1f1eb-1f1f7").name == "france flag" and "emoji:1f1eb-1f1f7" in kb
    ids = [e.id for e in kb.lookup("tiger")]
    assert ids[0] == "wn:02129604" and "tuxpaint:animals/mammals/cats/tiger" not in ids
    assert kb.canonical("tuxpaint:animals/mammals/cats/tiger") == "wn:02129604"


def _linked_things(n: int) -> list[Entity]:
    """n things; every tenth is an alias of the thing before it, named "nick <i>"."""
    return [
        Entity(
            f"t:{i}",
            f"thing {i}",
            (f"nick {i}",),
            "a thing",
            "thing",
            "test",
            (i % 7) / 7,
            f"t:{i - 1}" * (i % 10 == 1),
        )
        for i in range(n)
    ]


@pytest.mark.parametrize("index_file", [False, True])
def test_links_survive_the_index_file(tmp_path, index_file):
    path = tmp_path / "kb.jsonl"
    write_kb(_linked_things(3000), path)
    for _ in range(2):  # with an index: written by the first load, read by the second
        kb = KnowledgeBase.load(path, index_file=index_file)
        assert kb.canonical("t:11") == "t:10" and kb.canonical("t:12") == "t:12"
        assert [e.id for e in kb.lookup("nick 11")] == ["t:10"] and [e.id for e in kb.lookup("thing 11")] == ["t:10"]
        assert kb.get("t:11").same_as == "t:10" and len(kb) == 3000
    assert index_paths(path, hashlib.sha256(path.read_bytes()).hexdigest())[0].exists() == index_file


def test_jsonl_without_same_as_is_unchanged_and_old_index_files_are_rebuilt(tmp_path):
    plain = Entity("a:1", "one", ("uno",), "d", "t", "s", 0.5)
    assert "same_as" not in plain.to_dict()
    assert Entity.from_dict(json.loads(json.dumps(Entity("a:2", "two", (), "", "", "", 0, "a:1").to_dict()))).same_as
    path = tmp_path / "kb.jsonl"
    write_kb(_linked_things(500), path)
    idx = index_paths(path, hashlib.sha256(path.read_bytes()).hexdigest())[0]
    KnowledgeBase.load(path, index_file=True)
    saved = marshal.loads(idx.read_bytes())
    idx.write_bytes(marshal.dumps({**saved, "format": 1}))  # an index of the format before links
    assert KnowledgeBase.load(path, index_file=True).canonical("t:21") == "t:20"
    assert marshal.loads(idx.read_bytes())["format"] == saved["format"]


def test_chains_resolve_dangling_links_are_ignored_and_cycles_are_errors(tmp_path):
    chain = [Entity("a:1", "one", (), "", "", "", 0.1, "a:2"), Entity("a:2", "two", (), "", "", "", 0.2, "a:3")]
    kb = KnowledgeBase(
        [*chain, Entity("a:3", "three", (), "", "", "", 0.3), Entity("a:4", "four", (), "", "", "", 0.0, "x:9")]
    )
    assert kb.canonical("a:1") == "a:3" and [e.id for e in kb.lookup("one")] == ["a:3"]
    assert kb.canonical("a:4") == "a:4" and kb.lookup("four")[0].id == "a:4"
    path = tmp_path / "cycle.jsonl"
    write_kb([Entity("a:1", "one", (), "", "", "", 0.0, "a:2"), Entity("a:2", "two", (), "", "", "", 0.0, "a:1")], path)
    with pytest.raises(ValueError, match="same_as cycle"):
        KnowledgeBase.load(path)


def test_a_full_size_linked_kb_loads_well_under_a_second_from_its_index(tmp_path):
    path = tmp_path / "kb.jsonl"
    write_kb(_linked_things(125_000), path)
    KnowledgeBase.load(path)
    started = time.process_time()
    kb = KnowledgeBase.load(path)
    hits = kb.lookup("nick 124991")
    assert time.process_time() - started < 1.0
    assert [e.id for e in hits] == ["t:124990"] and kb.canonical("t:124991") == "t:124990"


def test_snapshot_classes_are_canonical_ids_when_the_kb_is_given(settings, store):
    from mofi.i2e import I2ESample, Snapshot, create_snapshot, snapshot_uri, write_shard

    kb = KnowledgeBase.load(fixture_kb_path())
    png = next((fixture_kb_path().parent / "corpus").glob("*.png")).read_bytes()

    def sample(pid: str, *ids: str) -> I2ESample:
        ents = [{"id": i, "name": kb.get(i).name, "description": kb.get(i).description, "score": 0.3} for i in ids]
        meta = {"text": pid, "source": "test", "licence": "CC0", "entities": ents, "scorer_model": "m"}
        return I2ESample(pid, png, "png", meta)

    prefix = f"s3://{settings.s3.i2e_bucket}/shards"
    write_shard(store, f"{prefix}/a.tar", [sample("p1", "emoji:1f1eb-1f1f7"), sample("p2", "country:FR")])
    write_shard(store, f"{prefix}/b.tar", [sample("p3", "tuxpaint:animals/mammals/cats/tiger", "emoji:1f1eb-1f1f7")])
    uri = snapshot_uri(settings.s3.i2e_bucket, "canon")
    snap = create_snapshot(store, prefix, uri, min_count=1, val_percent=0, kb=kb)
    assert [(c.id, c.name, c.count) for c in snap.classes] == [("country:FR", "France", 3), ("wn:02129604", "tiger", 1)]
    assert Snapshot.load(store, uri).class_index()["emoji:1f1eb-1f1f7"] == 0
    plain = create_snapshot(store, prefix, snapshot_uri(settings.s3.i2e_bucket, "plain"), min_count=1, val_percent=0)
    assert len(plain.classes) == 3 and not plain.same_as  # without the KB: the ids as stored

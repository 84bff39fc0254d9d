"""The writer stage through the real broker and S3 server."""

from __future__ import annotations

import io

from kafka import KafkaConsumer
from PIL import Image

from mofi.i2e import iter_shard, list_shards, read_manifest
from mofi.i2e.records import record_to_sample
from mofi.kafka import DEAD_LETTER_REASON_HEADER, ensure_topics, make_producer
from mofi.v1 import records_pb2
from mofi_platform.services.writer.partition import Offer, PartitionShards
from mofi_platform.services.writer.stage import WriterStage


def _png(i: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (6, 6), (i % 256, 40, 90)).save(buf, format="PNG")
    return buf.getvalue()


def i2e_record(pid: str, i: int = 0, entities: int = 1, dropped: int = 0) -> records_pb2.I2ERecord:
    pair = records_pb2.Pair(
        pair_id=pid,
        text=f"photo {pid}",
        source="test",
        licence="CC0",
        original_path=f"x/{pid}.png",
        image_mime="image/png",
        image_bytes=_png(i),
    )
    ents = [
        records_pb2.EntityCandidate(
            entity_id=f"wn:{k}", name=f"thing {k}", description=f"a thing {k}", clip_score=0.3 + k / 100, link_score=0.9
        )
        for k in range(entities)
    ]
    drops = [
        records_pb2.EntityCandidate(
            entity_id=f"geo:{k}",
            name=f"place {k}",
            description=f"a place {k}",
            clip_score=0.1 - k / 100,
            link_score=0.7,
        )
        for k in range(dropped)
    ]
    return records_pb2.I2ERecord(
        pair=pair, entities=ents, dropped=drops, scorer_model="tiny@test", kb_version="kb-0123456789abcdef"
    )


def _dead_letters(settings) -> list[tuple[bytes, str]]:
    c = KafkaConsumer(
        settings.kafka.dead_letter_topic,
        bootstrap_servers=settings.kafka.bootstrap_servers,
        auto_offset_reset="earliest",
        consumer_timeout_ms=2000,
        enable_auto_commit=False,
    )
    out = [(m.key, dict(m.headers)[DEAD_LETTER_REASON_HEADER].decode()) for m in c]
    c.close()
    return out


def test_writer_shards_valid_records_once_and_dead_letters_the_rest(settings, store):
    settings.writer.shard_size = 4
    settings.writer.flush_interval_s = 0.5
    ensure_topics(settings.kafka, [settings.kafka.i2e_topic])
    prod = make_producer(settings.kafka)
    ids = [f"pair{i:02d}" for i in range(10)]
    for i, pid in enumerate(ids):
        prod.send(
            settings.kafka.i2e_topic, key=pid.encode(), value=i2e_record(pid, i, dropped=i % 3).SerializeToString()
        )
    for pid in ids[:3]:  # an upstream replay: same pairs again
        prod.send(settings.kafka.i2e_topic, key=pid.encode(), value=i2e_record(pid).SerializeToString())
    prod.send(settings.kafka.i2e_topic, key=b"junk", value=b"\xff\x00not a protobuf")
    prod.send(settings.kafka.i2e_topic, key=b"none", value=i2e_record("none", entities=0).SerializeToString())
    prod.flush()

    writer = WriterStage(settings, store)
    stats = writer.run(idle_exit_s=3)
    writer.close()  # run() closed it already; a process runner closes again: harmless

    prefix = f"s3://{settings.s3.i2e_bucket}/shards"
    shards = list_shards(store, prefix)
    written = [s.pair_id for uri in shards for s in iter_shard(store, uri, verify=True)]
    assert sorted(written) == ids
    assert stats.outcomes["added"] == 10 and stats.outcomes["durable"] + stats.outcomes["duplicate"] == 3
    m = read_manifest(store, shards[0])
    assert m["topic"] == settings.kafka.i2e_topic and m["first_offset"] <= m["last_offset"]
    sample = next(iter_shard(store, shards[0]))
    assert sample.meta["entities"][0]["id"] == "wn:0" and sample.meta["scorer_model"] == "tiny@test"
    assert sample.meta["kb_version"] == "kb-0123456789abcdef"
    for s in (s for uri in shards for s in iter_shard(store, uri)):  # kept and dropped entities per image
        i = ids.index(s.pair_id)
        assert [e["id"] for e in s.meta["entities"]] == ["wn:0"]
        assert s.meta["dropped"] == [
            {"id": f"geo:{k}", "name": f"place {k}", "score": round(0.1 - k / 100, 6)} for k in range(i % 3)
        ]
    reasons = dict(_dead_letters(settings))
    assert "not a mofi.v1.I2ERecord" in reasons[b"junk"]
    assert "no kept entity" in reasons[b"none"]

    # a second writer in the same group finds every offset committed: nothing new is written
    again = WriterStage(settings, store).run(idle_exit_s=3)
    assert sum(again.outcomes.values()) == 0
    assert list_shards(store, prefix) == shards


def test_recovery_skips_what_complete_shards_hold(settings, store):
    prefix = f"s3://{settings.s3.i2e_bucket}/shards"
    part = PartitionShards(prefix, "t", 0)
    samples = [record_to_sample(i2e_record(f"p{i}", i), store.get_bytes) for i in range(5)]
    for off, s in enumerate(samples[:3]):
        assert part.offer(off, s) is Offer.ADDED
    assert part.offer(3, samples[0]) is Offer.DUPLICATE
    part.flush(store, last_offset=3)
    # killed before the commit: a new owner replays offsets 0..4
    fresh = PartitionShards.recover(store, prefix, "t", 0)
    assert fresh.covered == 3 and fresh.done == {"p0", "p1", "p2"}
    assert [fresh.offer(off, s).name for off, s in enumerate(samples)] == ["DURABLE"] * 4 + ["ADDED"]
    # a copy of p1 at a later offset is still recognised by its pair id
    assert fresh.offer(9, samples[1]) is Offer.DURABLE
    # other partitions are not affected
    assert PartitionShards.recover(store, prefix, "t", 1).covered == -1

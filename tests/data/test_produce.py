"""produce -> consume through the real broker; large images go by S3 reference."""

import hashlib
import time

from mofi.kafka import ensure_topics, make_consumer, make_producer
from mofi.objstore import ObjectStore
from mofi.v1 import records_pb2
from mofi_platform.databuild.fixtures import load_fixture_pairs
from mofi_platform.databuild.produce import PAIR_SCHEMA, produce_pairs


def consume_all(settings, expected: int, timeout_s: float = 60.0):
    consumer = make_consumer(settings.kafka, f"{settings.kafka.group_prefix}-test", [settings.kafka.pairs_topic])
    got = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(got) < expected and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=1000).values():
                got.extend(records)
    finally:
        consumer.close()
    return got


def test_round_trip_inline_and_by_reference(settings):
    settings.s3.inline_image_max_bytes = 4096  # so the fixture has both kinds
    store = ObjectStore(settings.s3)
    samples = load_fixture_pairs()
    big = [s for s in samples if len(s.image_bytes) > 4096]
    assert big and len(big) < len(samples)
    ensure_topics(settings.kafka, [settings.kafka.pairs_topic])
    producer = make_producer(settings.kafka)
    try:
        stats = produce_pairs(samples, producer, settings.kafka, settings.s3, store)
    finally:
        producer.close()
    assert (stats.sent, stats.by_reference, stats.inline) == (len(samples), len(big), len(samples) - len(big))

    records = consume_all(settings, len(samples))
    assert len(records) == len(samples)
    by_id = {s.pair_id: s for s in samples}
    for r in records:
        pair = records_pb2.Pair.FromString(r.value)
        sample = by_id[pair.pair_id]
        assert r.key == pair.pair_id.encode()
        assert (pair.schema, pair.text, pair.source, pair.licence, pair.original_path, pair.image_mime) == (
            PAIR_SCHEMA,
            sample.text,
            sample.source,
            sample.licence,
            sample.original_path,
            sample.mime,
        )
        if pair.WhichOneof("image") == "image_ref":
            assert pair.image_ref.uri.startswith(f"s3://{settings.s3.corpus_bucket}/images/")
            data = store.get_bytes(pair.image_ref.uri)
            assert pair.image_ref.size_bytes == len(data) and pair.image_ref.sha256 == hashlib.sha256(data).hexdigest()
        else:
            data = pair.image_bytes
        assert data == sample.image_bytes


def test_rate_limit_paces_sends(settings):
    store = ObjectStore(settings.s3)
    samples = load_fixture_pairs()[:6]
    producer = make_producer(settings.kafka)
    try:
        stats = produce_pairs(samples, producer, settings.kafka, settings.s3, store, rate=10.0, limit=5)
    finally:
        producer.close()
    assert stats.sent == 5 and stats.seconds >= 0.45  # 5 pairs at 10/s


def test_produce_command_sends_the_fixture(settings):
    from click.testing import CliRunner

    from mofi.cli import main

    res = CliRunner().invoke(main, ["produce", "--fixture", "--limit", "4"], env=settings.to_env())
    assert res.exit_code == 0, res.output
    assert f"sent 4 pairs to {settings.kafka.pairs_topic} (4 inline, 0 by reference" in res.output
    records = consume_all(settings, 4)
    assert sorted(r.key.decode() for r in records) == sorted(p.pair_id for p in load_fixture_pairs()[:4])

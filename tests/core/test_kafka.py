"""Produce and consume through the real broker: groups, commits, resume, broker restart."""

from kafka import TopicPartition
from kafka.structs import OffsetAndMetadata

from mofi.kafka import ensure_topics, make_consumer, make_producer


def _drain(consumer, want: int, rounds: int = 60) -> list:
    got = []
    for _ in range(rounds):
        for records in consumer.poll(timeout_ms=500).values():
            got.extend(records)
        if len(got) >= want:
            break
    return got


def _produce(kcfg, topic, n, start=0):
    producer = make_producer(kcfg)
    for i in range(start, start + n):
        producer.send(topic, key=f"k{i}".encode(), value=f"v{i}".encode(), headers=[("h", b"x")])
    producer.flush()
    producer.close()


def test_group_commit_restart_resume_without_loss_or_duplicates(settings):
    kcfg = settings.kafka
    topic = kcfg.pairs_topic
    ensure_topics(kcfg, [topic])
    _produce(kcfg, topic, 40)

    first = make_consumer(kcfg, f"{kcfg.group_prefix}-g", [topic])
    batch = _drain(first, 40)
    assert len(batch) == 40
    # commit only the first 25 records (per partition), as a stage would after acknowledged output
    seen = batch[:25]
    offsets: dict[TopicPartition, int] = {}
    for r in seen:
        tp = TopicPartition(r.topic, r.partition)
        offsets[tp] = max(offsets.get(tp, -1), r.offset)
    first.commit({tp: OffsetAndMetadata(off + 1, "", -1) for tp, off in offsets.items()})
    first.close()

    _produce(kcfg, topic, 10, start=40)
    second = make_consumer(kcfg, f"{kcfg.group_prefix}-g", [topic])
    rest = _drain(second, 50 - len(seen))
    second.commit()
    second.close()
    # poll() returns each partition's records in offset order, so batch[:25] is a per-partition prefix
    keys = [r.key.decode() for r in seen] + [r.key.decode() for r in rest]
    assert sorted(keys) == sorted(f"k{i}" for i in range(50)), "every record exactly once across the restart"
    assert rest[0].headers == [("h", b"x")]


def test_broker_restart_keeps_topics_and_messages(settings, running_stack):
    kcfg = settings.kafka
    topic = kcfg.i2e_topic
    ensure_topics(kcfg, [topic])
    _produce(kcfg, topic, 30)
    running_stack.restart_broker()
    consumer = make_consumer(kcfg, f"{kcfg.group_prefix}-after-restart", [topic])
    got = _drain(consumer, 30)
    consumer.close()
    assert sorted(r.value.decode() for r in got) == sorted(f"v{i}" for i in range(30))


def test_kafka_client_checksums_records_in_c():
    """Every record is CRC-32C'd when produced and when consumed; kafka-python's pure-Python fallback costs
    about 0.1 s per 500 KB image record, more than scoring it. The crc32c dependency must be what it uses."""
    from kafka.record import util

    assert util.crc32c_c is not None and util._crc32c is util.crc32c_c
    assert util.calc_crc32c(memoryview(b"123456789")) == 0xE3069283  # the CRC-32C check value

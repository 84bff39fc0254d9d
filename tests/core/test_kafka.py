"""Produce and consume through the real broker: groups, commits, resume, broker restart."""

import pytest
from kafka import KafkaAdminClient, TopicPartition
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


def test_every_client_gets_the_security_settings_kafka_python_knows():
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer

    from mofi.kafka import client_kwargs
    from mofi.settings import KafkaSettings

    known = set(KafkaProducer.DEFAULT_CONFIG) & set(KafkaConsumer.DEFAULT_CONFIG) & set(KafkaAdminClient.DEFAULT_CONFIG)
    plain = client_kwargs(KafkaSettings(bootstrap_servers="a:9092, b:9092"))
    assert plain == {"bootstrap_servers": ["a:9092", "b:9092"], "security_protocol": "PLAINTEXT"}
    scram = KafkaSettings(
        bootstrap_servers="k:9093",
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="mofi",
        sasl_password="pw",
        ssl_cafile="/etc/mofi/ca/ca.crt",
    )
    opts = client_kwargs(scram)
    assert set(opts) <= known, set(opts) - known
    assert opts["sasl_mechanism"] == "SCRAM-SHA-512" and opts["sasl_plain_username"] == "mofi"
    assert opts["sasl_plain_password"] == "pw" and opts["ssl_cafile"] == "/etc/mofi/ca/ca.crt"
    mtls = client_kwargs(
        KafkaSettings(security_protocol="SSL", ssl_certfile="/c.pem", ssl_keyfile="/k.pem", ssl_check_hostname=False)
    )
    assert set(mtls) <= known and "sasl_mechanism" not in mtls
    assert (mtls["ssl_certfile"], mtls["ssl_keyfile"], mtls["ssl_check_hostname"]) == ("/c.pem", "/k.pem", False)
    with pytest.raises(ValueError, match="needs kafka.sasl_username"):
        client_kwargs(KafkaSettings(security_protocol="SASL_PLAINTEXT"))


def test_topics_are_created_with_the_replication_settings_or_must_exist(settings):
    from mofi.kafka import MissingTopics, client_kwargs

    kcfg = settings.kafka
    kcfg.replication_factor, kcfg.min_insync_replicas = 1, 2
    with pytest.raises(ValueError, match="min_insync_replicas=2 exceeds kafka.replication_factor=1"):
        ensure_topics(kcfg, [kcfg.pairs_topic])
    kcfg.min_insync_replicas, kcfg.create_topics = 1, False
    with pytest.raises(MissingTopics, match=kcfg.pairs_topic):
        ensure_topics(kcfg, [kcfg.pairs_topic])
    kcfg.create_topics = True
    ensure_topics(kcfg, [kcfg.pairs_topic])  # the local broker, through the same client options
    admin = KafkaAdminClient(**client_kwargs(kcfg))
    try:
        assert kcfg.pairs_topic in admin.list_topics()
    finally:
        admin.close()
    kcfg.create_topics = False
    ensure_topics(kcfg, [kcfg.pairs_topic])  # exists now: nothing to create, no error

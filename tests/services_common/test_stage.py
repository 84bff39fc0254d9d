"""KafkaStage through the real broker: a handler that crashes on one record costs that record a
dead letter with the reason, not the batch; offsets are committed so a restart does not replay."""

from __future__ import annotations

from mofi.kafka import DEAD_LETTER_REASON_HEADER, make_consumer, make_producer
from mofi_platform.services.common.stage import Emit, KafkaStage, Outcome


def test_handler_crash_is_isolated_to_its_record_and_offsets_commit(settings):
    k = settings.kafka

    def handle(records):
        out = []
        for r in records:
            if r.value == b"boom":
                raise RuntimeError("cannot handle boom")
            out.append(Outcome((Emit(k.candidates_topic, r.key, r.value.upper()),)))
        return out

    def stage():
        return KafkaStage(k, "upper", [k.pairs_topic], [k.candidates_topic], handle, {"session_timeout_ms": 6000})

    producer = make_producer(k)
    values = [b"a", b"b", b"boom", b"c"]
    for v in values:
        producer.send(k.pairs_topic, key=v, value=v, partition=0)
    producer.flush()
    first = stage()
    assert first.run(idle_exit_s=30, max_records=4) == {"records": 4, "emitted": 3, "dead_letter": 1}
    first.close()

    producer.send(k.pairs_topic, key=b"d", value=b"d", partition=0)
    producer.flush()
    producer.close()
    second = stage()  # same group: resumes after the committed offsets
    assert second.run(idle_exit_s=30, max_records=1) == {"records": 1, "emitted": 1, "dead_letter": 0}
    second.close()

    consumer = make_consumer(k, "check", [k.candidates_topic, k.dead_letter_topic], session_timeout_ms=6000)
    got = []
    for _ in range(40):
        got += [m for part in consumer.poll(timeout_ms=500).values() for m in part]
        if len(got) >= 5:
            break
    consumer.close()
    outputs = sorted(m.value for m in got if m.topic == k.candidates_topic)
    dead = [m for m in got if m.topic == k.dead_letter_topic]
    assert outputs == [b"A", b"B", b"C", b"D"]
    assert len(dead) == 1 and dead[0].value == b"boom"
    assert b"cannot handle boom" in dict(dead[0].headers)[DEAD_LETTER_REASON_HEADER]

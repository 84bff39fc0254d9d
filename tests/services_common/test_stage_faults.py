"""KafkaStage under faults, with the real broker: liveness follows the consumer loop (/healthz fails while a
handler is stuck and recovers after), a SIGKILLed broker is ridden out by the same stage object (nothing
lost: every input has its output and the group's offsets reach the end of the log), and the lag metric
after a broker restart is the real distance to the end of the log, never negative.
"""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
import uuid

from kafka import KafkaConsumer, TopicPartition
from prometheus_client import REGISTRY

from mofi.kafka import Backoff, ensure_topics, make_producer, make_reader, retrying
from mofi.settings import KafkaSettings
from mofi.stack import free_port
from mofi_platform.services.common.metrics import start_metrics_server
from mofi_platform.services.common.stage import Emit, KafkaStage, Outcome


def echo(k: KafkaSettings):
    def handle(records):
        return [Outcome((Emit(k.candidates_topic, r.key, r.value.upper()),)) for r in records]

    return handle


def produce(k: KafkaSettings, values: list[bytes], partition: int | None = None) -> None:
    prod = retrying("test producer", lambda: make_producer(k), Backoff(0.2, 2.0))
    for v in values:
        prod.send(k.pairs_topic, key=v, value=v, partition=partition)
    prod.flush(timeout=60)
    prod.close()


def healthz(port: int) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def eventually(check, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while True:
        got = check()
        if got:
            return got
        assert time.monotonic() < deadline, f"{what} not within {seconds:.0f} s"
        time.sleep(0.2)


def test_healthz_fails_while_the_loop_is_stuck_and_recovers(settings):
    k = settings.kafka
    k.stall_timeout_s = 2.0
    entered, release = threading.Event(), threading.Event()

    def handle(records):
        entered.set()
        release.wait(60)  # a handler hanging on something (a dead connection, a lock)
        return echo(k)(records)

    stage = KafkaStage(k, "stuck", [k.pairs_topic], [k.candidates_topic], handle, {"session_timeout_ms": 6000})
    port = start_metrics_server(free_port())
    assert port
    runner = threading.Thread(target=stage.run)
    runner.start()
    try:
        eventually(lambda: healthz(port)[0] == 200 and "turned" in healthz(port)[1], 30, "a healthy idle loop")
        produce(k, [b"a"])
        assert entered.wait(60)
        code, body = eventually(lambda: (r := healthz(port))[0] == 503 and r, 30, "/healthz failing")
        assert "loop stuck" in body
        release.set()
        eventually(lambda: healthz(port)[0] == 200, 30, "/healthz healthy again")
        eventually(lambda: stage.counts["records"] == 1, 30, "the record committed")
    finally:
        release.set()
        stage.stop()
        runner.join(60)
        stage.close()
    assert not runner.is_alive()
    assert healthz(port)[0] == 200  # no loop watched once it ended


def group_offsets(k: KafkaSettings, group: str, topic: str) -> tuple[dict[int, int], dict[int, int]]:
    """(committed offset per partition of ``topic`` for ``group``, the real end of each partition's log).

    The end is counted from the records themselves: the local broker's ListOffsets answers the base offset
    of the last batch plus one, not the end of the log.
    """
    c = KafkaConsumer(bootstrap_servers=k.bootstrap_servers, group_id=group, enable_auto_commit=False)
    parts = [TopicPartition(topic, p) for p in sorted(c.partitions_for_topic(topic) or set())]
    committed = {tp.partition: c.committed(tp) or 0 for tp in parts}
    c.close()
    end = dict.fromkeys(committed, 0)
    for m in make_reader(k, topic, consumer_timeout_ms=3000):
        end[m.partition] = max(end[m.partition], m.offset + 1)
    return committed, end


def test_stage_rides_out_a_killed_broker(private_stack):
    s = private_stack.settings.namespaced(uuid.uuid4().hex[:8])
    k = s.kafka
    ensure_topics(k, [k.pairs_topic, k.candidates_topic, k.dead_letter_topic])
    stage = KafkaStage(k, "echo", [k.pairs_topic], [k.candidates_topic], echo(k), {"session_timeout_ms": 6000})
    runner = threading.Thread(target=stage.run)
    runner.start()
    first, second = [b"a%03d" % i for i in range(20)], [b"b%03d" % i for i in range(20)]
    try:
        produce(k, first)
        eventually(lambda: stage.counts["records"] >= 20, 60, "the first records")
        private_stack.kill("kafka")
        time.sleep(5)
        assert runner.is_alive()
        private_stack.up()
        produce(k, second)
        restarted = time.monotonic()

        def drained() -> bool:
            committed, end = group_offsets(k, f"{k.group_prefix}-echo", k.pairs_topic)
            return sum(end.values()) == 40 and committed == end

        eventually(drained, 60, f"the group's offsets at the end of the log ({stage.counts})")
        assert time.monotonic() - restarted < 60
    finally:
        stage.stop()
        runner.join(60)
        stage.close()
        private_stack.up()
    outputs = {m.value for m in make_reader(k, k.candidates_topic, consumer_timeout_ms=3000)}
    assert outputs == {v.upper() for v in first + second}  # every input has its output (replays may repeat)


def lag(stage: str, topic: str, partition: int) -> float | None:
    labels = {"stage": stage, "topic": topic, "partition": str(partition)}
    return REGISTRY.get_sample_value("mofi_stage_consumer_lag", labels)


def test_lag_after_a_broker_restart_is_the_distance_to_the_end_of_the_log(private_stack):
    s = private_stack.settings.namespaced(uuid.uuid4().hex[:8])
    k = s.kafka
    ensure_topics(k, [k.pairs_topic, k.candidates_topic, k.dead_letter_topic])
    produce(k, [b"x%02d" % i for i in range(10)], partition=0)
    name = f"lag-{uuid.uuid4().hex[:6]}"
    kw = {"session_timeout_ms": 6000, "max_poll_records": 3}
    stage = KafkaStage(k, name, [k.pairs_topic], [k.candidates_topic], echo(k), kw)
    try:
        stage.run(idle_exit_s=30, max_records=3)
        assert lag(name, k.pairs_topic, 0) == 10 - 3
        private_stack.restart_broker()
        produce(k, [b"y%02d" % i for i in range(5)], partition=0)
        stage.run(idle_exit_s=30, max_records=15)  # counts run on from the first run
        committed, end = group_offsets(k, f"{k.group_prefix}-{name}", k.pairs_topic)
        assert committed[0] == end[0] == 15
        assert lag(name, k.pairs_topic, 0) == 0  # read to the end: not negative whatever the broker reports
    finally:
        stage.close()
        private_stack.up()

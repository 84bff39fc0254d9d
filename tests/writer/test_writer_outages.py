"""The writer process rides out its servers' faults on its own stack: started before the broker, the broker
SIGKILLed mid-stream, the S3 server SIGKILLed mid-stream. Each time the servers come back (`Stack.up`, which
starts only what is down), the same writer process resumes without a restart and every pair lands in the
shards exactly once, within 60 s of the servers' return; while a server is away it waits without spinning.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import pytest

from mofi.kafka import Backoff, ensure_topics, make_producer, retrying
from mofi.objstore import ObjectStore
from mofi.settings import Settings
from mofi.stack import Stack
from tests.writer.support import account, stage_process, stop, visible_pairs
from tests.writer.test_writer_stage import i2e_record

RECOVERY_S = 60


def tail(log: Path) -> str:
    """The writer's own log lines (the Kafka client's reconnect chatter left out)."""
    return "\n".join(ln for ln in log.read_text().splitlines() if " kafka." not in ln)[-4000:]


def writer_settings(stack: Stack) -> Settings:
    s = stack.settings.namespaced(uuid.uuid4().hex[:8])
    s.writer.shard_size = 5
    s.writer.flush_interval_s = 0.3
    s.kafka.max_poll_records = 7
    return s


def produce(settings: Settings, ids: list[str], replay_every: int = 6) -> None:
    """Send ``ids`` (with an earlier pair sent again every ``replay_every``) and wait for the broker's acks."""
    prod = retrying("test producer", lambda: make_producer(settings.kafka), Backoff(0.2, 2.0))
    for n, pid in enumerate(ids):
        prod.send(settings.kafka.i2e_topic, key=pid.encode(), value=i2e_record(pid, n).SerializeToString())
        if n % replay_every == replay_every - 1:
            old = ids[n - 3]
            prod.send(settings.kafka.i2e_topic, key=old.encode(), value=i2e_record(old).SerializeToString())
    prod.flush(timeout=60)
    prod.close()


def wait_for_pairs(settings: Settings, store: ObjectStore, ids: list[str], proc, log: Path) -> float:
    """Seconds until exactly ``ids`` are in complete shards (duplicates fail at once); bounded by RECOVERY_S."""
    start = time.monotonic()
    while True:
        assert proc.poll() is None, f"the writer exited ({proc.returncode}):\n{tail(log)}"
        try:
            seen = visible_pairs(settings, store)
        except Exception:  # the S3 server is still starting
            seen = []
        assert len(seen) == len(set(seen)), f"duplicate pairs in shards:\n{tail(log)}"
        if sorted(seen) == sorted(ids):
            return time.monotonic() - start
        assert time.monotonic() - start < RECOVERY_S, (
            f"{len(set(ids) - set(seen))} of {len(ids)} pairs missing after {RECOVERY_S} s:\n{tail(log)}"
        )
        time.sleep(0.3)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def assert_waits_quietly(proc, log: Path, seconds: float = 8.0) -> None:
    """The writer stays up while a server is away and uses little CPU (no busy loop)."""
    before, start = cpu_seconds(proc.pid), time.monotonic()
    time.sleep(seconds)
    assert proc.poll() is None, f"the writer exited during the outage:\n{tail(log)}"
    share = (cpu_seconds(proc.pid) - before) / (time.monotonic() - start)
    assert share < 0.5, f"the writer used {share:.0%} of a core while waiting:\n{tail(log)}"


def finish(settings: Settings, store: ObjectStore, proc, log: Path, ids: list[str]) -> None:
    assert stop(proc, timeout=60) == 0, tail(log)
    acc = account(settings, store)
    assert sorted(acc.shard_ids) == sorted(ids)
    assert acc.dead_letters == {}


@pytest.mark.slow
def test_writer_started_before_the_broker_waits_for_it(private_stack, tmp_path):
    settings, log = writer_settings(private_stack), tmp_path / "writer.log"
    store = ObjectStore(settings.s3)
    private_stack.kill("kafka")
    proc = stage_process(settings, "writer", log)
    try:
        assert_waits_quietly(proc, log)
        private_stack.up()  # starts the broker only
        ids = [f"early{i:03d}" for i in range(20)]
        ensure_topics(settings.kafka, [settings.kafka.i2e_topic])
        produce(settings, ids)
        wait_for_pairs(settings, store, ids, proc, log)
        finish(settings, store, proc, log, ids)
    finally:
        if proc.poll() is None:
            proc.kill()
        private_stack.up()


@pytest.mark.slow
@pytest.mark.parametrize("server", ["kafka", "s3"])
def test_writer_rides_out_a_killed_server(request, tmp_path, server):
    # the local broker stores its log in the S3 server; the S3 case kills the object store alone
    private_stack = request.getfixturevalue("private_stack" if server == "kafka" else "private_stack_memory_broker")
    settings, log = writer_settings(private_stack), tmp_path / "writer.log"
    store = ObjectStore(settings.s3)
    ensure_topics(settings.kafka, [settings.kafka.i2e_topic, settings.kafka.dead_letter_topic])
    proc = stage_process(settings, "writer", log)
    try:
        before = [f"before{i:03d}" for i in range(25)]
        produce(settings, before)
        wait_for_pairs(settings, store, before, proc, log)
        after = [f"after{i:03d}" for i in range(25)]
        produce(settings, after[:10])  # in flight when the server dies
        private_stack.kill(server)
        assert_waits_quietly(proc, log)
        started = [s.name for s in private_stack.up() if s.started]
        assert server in started
        produce(settings, after[10:])
        seconds = wait_for_pairs(settings, store, before + after, proc, log)
        assert seconds < RECOVERY_S
        finish(settings, store, proc, log, before + after)
    finally:
        if proc.poll() is None:
            proc.kill()
        private_stack.up()

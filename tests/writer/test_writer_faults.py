"""SIGKILL the writer process mid-stream three times: every pair ends in the shards exactly once."""

from __future__ import annotations

import threading
import time

import pytest

from mofi.i2e import list_shards
from mofi.kafka import ensure_topics, make_producer
from mofi_platform.services.writer.stage import WriterStage
from tests.writer.support import account, kill, stage_process
from tests.writer.test_writer_stage import i2e_record


@pytest.mark.slow
def test_writer_killed_three_times_writes_each_pair_once(settings, store, tmp_path):
    settings.writer.shard_size = 5
    settings.writer.flush_interval_s = 0.3
    settings.kafka.max_poll_records = 7
    ensure_topics(settings.kafka, [settings.kafka.i2e_topic, settings.kafka.dead_letter_topic])
    ids: list[str] = []  # every pair produced
    prefix = f"s3://{settings.s3.i2e_bucket}/{settings.writer.prefix}"
    killed = threading.Event()

    def produce():  # a slow stream, with replays of earlier pairs mixed in, that outlasts the kills
        prod = make_producer(settings.kafka)
        i = 0
        while i < 100 or not killed.is_set():  # a restart on a busy machine can take longer than usual
            pid = f"pair{i:03d}"
            ids.append(pid)
            prod.send(settings.kafka.i2e_topic, key=pid.encode(), value=i2e_record(pid, i).SerializeToString())
            if i % 10 == 9:
                old = ids[i - 7]
                prod.send(settings.kafka.i2e_topic, key=old.encode(), value=i2e_record(old).SerializeToString())
                prod.flush()
                time.sleep(3.0)
            i += 1
        prod.flush()
        prod.close()

    producer = threading.Thread(target=produce)
    producer.start()
    log = tmp_path / "writer.log"
    kills = []  # shards visible at each kill, and whether the stream was still running
    proc = stage_process(settings, "writer", log)
    try:
        while len(kills) < 3:
            before = len(list_shards(store, prefix))
            deadline = time.monotonic() + 30
            while len(list_shards(store, prefix)) <= before and time.monotonic() < deadline:
                time.sleep(0.2)  # kill only once this incarnation has written something
            kill(proc)
            kills.append((len(list_shards(store, prefix)) - before, producer.is_alive()))
            proc = stage_process(settings, "writer", log)
    finally:
        killed.set()
        kill(proc)
        producer.join()
    # a last, clean run drains what is left
    WriterStage(settings, store).run(idle_exit_s=3)
    acc = account(settings, store)
    assert all(progress > 0 and streaming for progress, streaming in kills), kills
    assert sorted(acc.shard_ids) == sorted(ids), log.read_text()[-3000:]
    assert acc.dead_letters == {}

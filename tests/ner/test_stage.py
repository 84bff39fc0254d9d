"""The NER Kafka stage through the real broker: every produced record reaches the candidates topic
or the dead-letter topic with a reason; none is lost; outputs are keyed by pair id."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid

from prometheus_client.parser import text_string_to_metric_families

from mofi.kafka import DEAD_LETTER_REASON_HEADER, DEAD_LETTER_STAGE_HEADER, make_consumer, make_producer
from mofi.stack import free_port
from mofi.v1 import records_pb2
from mofi_platform.services.ner.stage import build_ner_stage

VALID = [
    "A koala.",
    "A fire truck.",
    "A Sumatran tiger.",
    "Mont-Saint-Michel at dusk, Normandy",
    "A white kitten.",
    "A pair of sunglasses.",
    "A rainbow lorikeet.",
    "A washing machine.",
] * 3


def _pair(pair_id: str, text: str) -> bytes:
    return records_pb2.Pair(
        pair_id=pair_id, text=text, source="test", schema="mofi.pair.v1", image_mime="image/png", image_bytes=b"\x89PNG"
    ).SerializeToString()


MALFORMED = {
    "garbage": b"\xff\x00 not protobuf \x13\x37",
    "empty": b"",
    "no-id": records_pb2.Pair(text="A koala.").SerializeToString(),
    "empty-text": _pair("e1", ""),
    "blank-text": _pair("e2", "   \n"),
    "binary-text": _pair("e3", "abc\x00\x01\x02"),
    "long-text": _pair("e4", "tiger " * 100),
    "non-utf8": b"\x0a\x02e5\x12\x03\xff\xfe\xfd",
}


def _drain(settings, topic: str, expected: int, timeout_s: float = 60.0) -> list:
    consumer = make_consumer(settings.kafka, f"check-{uuid.uuid4().hex[:6]}", [topic], session_timeout_ms=6000)
    got, deadline = [], time.monotonic() + timeout_s
    try:
        while len(got) < expected and time.monotonic() < deadline:
            for part in consumer.poll(timeout_ms=500).values():
                got.extend(part)
        # anything beyond the expected count would be a duplicate or a stray: poll once more
        for part in consumer.poll(timeout_ms=1000).values():
            got.extend(part)
    finally:
        consumer.close()
    return got


def test_every_record_reaches_output_or_dead_letter(settings, extractor):
    settings.ner.max_text_chars = extractor.cfg.max_text_chars
    stage = build_ner_stage(settings, extractor, session_timeout_ms=6000)
    producer = make_producer(settings.kafka)
    valid_ids = {f"p{i:03d}": text for i, text in enumerate(VALID)}
    for pid, text in valid_ids.items():
        producer.send(settings.kafka.pairs_topic, key=pid.encode(), value=_pair(pid, text))
    for name, value in MALFORMED.items():
        producer.send(settings.kafka.pairs_topic, key=name.encode(), value=value)
    producer.flush()
    producer.close()

    total = len(valid_ids) + len(MALFORMED)
    try:
        counts = stage.run(idle_exit_s=60, max_records=total)
    finally:
        stage.close()
    assert counts == {"records": total, "emitted": len(valid_ids), "dead_letter": len(MALFORMED)}

    out = _drain(settings, settings.kafka.candidates_topic, len(valid_ids))
    dead = _drain(settings, settings.kafka.dead_letter_topic, len(MALFORMED))
    assert len(out) == len(valid_ids) and len(dead) == len(MALFORMED)  # none lost, none duplicated
    by_key = {}
    for msg in out:
        rec = records_pb2.CandidatePair.FromString(msg.value)
        assert msg.key.decode() == rec.pair.pair_id
        assert rec.pair.text == valid_ids[rec.pair.pair_id] and rec.pair.image_bytes == b"\x89PNG"
        assert rec.kb_version == extractor.kb.version  # which knowledge base proposed the candidates
        by_key[rec.pair.pair_id] = rec
    assert set(by_key) == set(valid_ids)
    assert "wn:02129604" in [c.entity_id for c in by_key["p002"].candidates]
    reasons = {}
    for msg in dead:
        headers = dict(msg.headers)
        assert headers[DEAD_LETTER_STAGE_HEADER] == b"ner"
        reasons[msg.key.decode()] = headers[DEAD_LETTER_REASON_HEADER].decode()
        assert msg.value == MALFORMED[msg.key.decode()]  # the original record, unchanged
    assert set(reasons) == set(MALFORMED)
    for key, words in [
        ("garbage", "Pair"),
        ("empty", "empty record"),
        ("no-id", "pair_id"),
        ("empty-text", "empty"),
        ("blank-text", "whitespace"),
        ("binary-text", "binary"),
        ("long-text", "exceeds"),
        ("non-utf8", "Pair"),
    ]:
        assert words in reasons[key], (key, reasons[key])


def _metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in a Prometheus text exposition (0 when absent)."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    return 0.0


def test_stage_process_serves_metrics_and_drains_on_sigterm(settings, ner_cfg):
    """`mofi stage ner` as a real process with grpc.metrics_port set: /metrics counts what it consumed."""
    port = free_port()
    env = {
        **os.environ,
        **settings.to_env(),
        "HF_HUB_OFFLINE": "1",
        "MOFI_NER_KB_PATH": ner_cfg.kb_path,
        "MOFI_GRPC_METRICS_PORT": str(port),
        "MOFI_GRPC_HOST": "127.0.0.1",
    }
    producer = make_producer(settings.kafka)
    texts = VALID[:5]
    for i, text in enumerate(texts):
        producer.send(settings.kafka.pairs_topic, key=f"m{i}".encode(), value=_pair(f"m{i}", text))
    producer.send(settings.kafka.pairs_topic, key=b"garbage", value=MALFORMED["garbage"])
    producer.flush()
    producer.close()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mofi.cli", "stage", "ner"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        text, deadline = "", time.monotonic() + 120
        while time.monotonic() < deadline and _metric(text, "mofi_stage_consumed_total", stage="ner") < 6:
            assert proc.poll() is None, proc.communicate()[0]
            with contextlib.suppress(OSError):
                text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
            time.sleep(0.5)
        assert _metric(text, "mofi_stage_consumed_total", stage="ner") == 6, text
        assert _metric(text, "mofi_stage_records_total", stage="ner", outcome="emitted") == 5
        assert _metric(text, "mofi_stage_records_total", stage="ner", outcome="dead_letter") == 1
        assert _metric(text, "mofi_stage_produced_total", stage="ner", topic=settings.kafka.candidates_topic) == 5
        assert _metric(text, "mofi_stage_commit_seconds_count", stage="ner") >= 1
        assert "mofi_stage_consumer_lag{" in text
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, out

"""A Kafka stage: consume in a consumer group -> process -> produce -> flush -> commit.

Why this order: offsets are committed only after every output of the poll (results and dead
letters) is acknowledged by the broker, so a crash at any point replays records instead of losing
them (at-least-once; outputs are keyed by pair id so replays overwrite downstream). A record the
handler cannot process goes to the dead-letter topic with the reason; an unexpected error in the
handler is isolated to the record that caused it, so one bad record never stops the stage.

Metrics (default Prometheus registry, served by :func:`mofi_platform.services.common.process.run_stage_until_signalled`
when ``grpc.metrics_port`` is set), all labelled by stage name: records consumed, records by outcome
(emitted / dead_letter), messages produced per output topic, seconds per non-empty poll, per handler
call and per flush+commit, and the consumer lag of each partition the stage last received records from
(the broker's high-water mark from that fetch minus the committed offset; no extra request).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from kafka.consumer.fetcher import ConsumerRecord
from kafka.structs import OffsetAndMetadata
from prometheus_client import Counter, Gauge, Histogram
from tqdm import tqdm

from mofi.kafka import ensure_topics, make_consumer, make_producer, send_dead_letter
from mofi.settings import KafkaSettings

__all__ = [
    "KafkaStage",
    "Emit",
    "Outcome",
    "RECORDS",
    "CONSUMED",
    "PRODUCED",
    "POLL_SECONDS",
    "HANDLE_SECONDS",
    "COMMIT_SECONDS",
    "LAG",
]

log = logging.getLogger(__name__)

RECORDS = Counter("mofi_stage_records_total", "Records handled by a Kafka stage, by outcome", ["stage", "outcome"])
CONSUMED = Counter("mofi_stage_consumed_total", "Records a Kafka stage consumed (and committed)", ["stage"])
PRODUCED = Counter(
    "mofi_stage_produced_total",
    "Records a Kafka stage produced, by output topic (dead letters are counted in mofi_stage_records_total)",
    ["stage", "topic"],
)
_SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
POLL_SECONDS = Histogram(
    "mofi_stage_poll_seconds", "Duration of consumer polls that returned records", ["stage"], buckets=_SECONDS
)
HANDLE_SECONDS = Histogram("mofi_stage_handle_seconds", "Handler time per poll batch", ["stage"], buckets=_SECONDS)
COMMIT_SECONDS = Histogram(
    "mofi_stage_commit_seconds", "Producer flush plus offset commit per poll batch", ["stage"], buckets=_SECONDS
)
LAG = Gauge(
    "mofi_stage_consumer_lag",
    "Records behind the partition's high-water mark after the last commit",
    ["stage", "topic", "partition"],
)


@dataclass(frozen=True)
class Emit:
    """One output record."""

    topic: str
    key: bytes | None
    value: bytes


@dataclass(frozen=True)
class Outcome:
    """What became of one input record: outputs, or a dead-letter reason."""

    emits: tuple[Emit, ...] = ()
    dead_letter_reason: str | None = None

    @classmethod
    def dead(cls, reason: str) -> Outcome:
        return cls(dead_letter_reason=reason)


Handler = Callable[[Sequence[ConsumerRecord]], Sequence[Outcome]]


@dataclass
class KafkaStage:
    """Run ``handle(records) -> outcomes`` (one per record, same order) over ``input_topics``.

    The consumer group is ``<kafka.group_prefix>-<name>``; ``consumer_kw`` passes through to the
    consumer (tests shorten timeouts).
    """

    kcfg: KafkaSettings
    name: str
    input_topics: list[str]
    output_topics: list[str]
    handle: Handler
    consumer_kw: dict = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=lambda: {"records": 0, "emitted": 0, "dead_letter": 0})

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        ensure_topics(self.kcfg, [*self.input_topics, *self.output_topics, self.kcfg.dead_letter_topic])
        self.producer = make_producer(self.kcfg)
        self.consumer = make_consumer(
            self.kcfg, f"{self.kcfg.group_prefix}-{self.name}", self.input_topics, **self.consumer_kw
        )

    def _outcomes(self, records: list[ConsumerRecord]) -> list[Outcome]:
        try:
            outcomes = list(self.handle(records))
            if len(outcomes) == len(records):
                return outcomes
            log.error("%s: handler returned %d outcomes for %d records", self.name, len(outcomes), len(records))
        except Exception:
            log.exception("%s: batch failed; retrying record by record", self.name)
        return [self._one(r) for r in records]

    def _one(self, record: ConsumerRecord) -> Outcome:
        try:
            (outcome,) = self.handle([record])
            return outcome
        except Exception as e:
            log.exception(
                "%s: record at %s/%d offset %d failed", self.name, record.topic, record.partition, record.offset
            )
            return Outcome.dead(f"{self.name} failed on this record: {type(e).__name__}: {e}")

    def poll_once(self, timeout_ms: int = 500) -> int:
        """Handle one poll; commit its offsets once every output is acknowledged. Returns records handled."""
        start = time.perf_counter()
        batches = self.consumer.poll(timeout_ms=timeout_ms)
        records = [r for part in batches.values() for r in part]
        if not records:
            return 0
        handled = time.perf_counter()
        POLL_SECONDS.labels(self.name).observe(handled - start)
        outcomes = self._outcomes(records)
        sending = time.perf_counter()
        HANDLE_SECONDS.labels(self.name).observe(sending - handled)
        produced: dict[str, int] = {}
        for record, outcome in zip(records, outcomes):
            if outcome.dead_letter_reason is not None:
                send_dead_letter(
                    self.producer,
                    self.kcfg,
                    record.value,
                    record.key,
                    outcome.dead_letter_reason,
                    self.name,
                    record.topic,
                )
                self.counts["dead_letter"] += 1
                RECORDS.labels(self.name, "dead_letter").inc()
                continue
            for emit in outcome.emits:
                self.producer.send(emit.topic, key=emit.key, value=emit.value)
                produced[emit.topic] = produced.get(emit.topic, 0) + 1
            self.counts["emitted"] += 1
            RECORDS.labels(self.name, "emitted").inc()
        self.producer.flush()  # raises when the broker did not acknowledge: then nothing is committed
        offsets = {tp: part[-1].offset + 1 for tp, part in batches.items()}
        self.consumer.commit({tp: OffsetAndMetadata(off, "", -1) for tp, off in offsets.items()})
        COMMIT_SECONDS.labels(self.name).observe(time.perf_counter() - sending)
        self.counts["records"] += len(records)
        CONSUMED.labels(self.name).inc(len(records))
        for topic, n in produced.items():
            PRODUCED.labels(self.name, topic).inc(n)
        self._record_lag(offsets)
        return len(records)

    def _record_lag(self, offsets: dict) -> None:
        for tp, committed in offsets.items():
            highwater = self.consumer.highwater(tp)  # cached from the fetch response: no request
            if highwater is not None:
                LAG.labels(self.name, tp.topic, str(tp.partition)).set(max(0, highwater - committed))

    def stop(self) -> None:
        self._stop.set()

    def run(self, idle_exit_s: float | None = None, max_records: int | None = None) -> dict[str, int]:
        """Until :meth:`stop`, ``max_records`` handled, or ``idle_exit_s`` without records; returns counts."""
        last = time.monotonic()
        with tqdm(desc=f"stage {self.name}", unit="rec", disable=None) as bar:
            while not self._stop.is_set():
                n = self.poll_once()
                bar.update(n)
                if n:
                    last = time.monotonic()
                elif idle_exit_s is not None and time.monotonic() - last > idle_exit_s:
                    break
                if max_records is not None and self.counts["records"] >= max_records:
                    break
        return dict(self.counts)

    def close(self) -> None:
        self.consumer.close()
        self.producer.close()

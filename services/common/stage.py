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
(the broker's end offset minus the committed offset), retries by error and seconds spent in outages.

Faults: a broker that is down at start, dies mid-run, times out a flush or rebalances the group never
ends the stage, nor does an object store that is away. Every transient error (:func:`is_transient`: the
broker's or S3's, also when a handler meets it) is logged, waited out with capped exponential backoff
(``kafka.retry_backoff_s`` .. ``kafka.retry_backoff_max_s``) and followed by a rewind: each assigned
partition goes back to its committed offset, so the records of a poll that was not committed are
processed again (at-least-once; keyed outputs overwrite downstream, the writer drops duplicates). The
loop beats :data:`~mofi_platform.services.common.metrics.HEARTBEAT` every turn, so ``/healthz`` fails
only when it is stuck, not while it waits for a server to come back.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from kafka import KafkaConsumer
from kafka.consumer.fetcher import ConsumerRecord
from kafka.coordinator.base import MemberState
from kafka.structs import OffsetAndMetadata, TopicPartition
from prometheus_client import Counter, Gauge, Histogram
from tqdm import tqdm

from mofi import kafka, objstore
from mofi.kafka import Backoff, ensure_topics, flush, make_consumer, make_producer, retrying, send_dead_letter
from mofi.settings import KafkaSettings
from mofi_platform.services.common.metrics import HEARTBEAT

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
    "RETRIES",
    "OUTAGE_SECONDS",
    "WATERMARK_BEHIND",
    "StageLoop",
    "rewind",
    "record_lag",
    "is_transient",
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
    "Records behind the partition's end offset after the last commit",
    ["stage", "topic", "partition"],
)
RETRIES = Counter(
    "mofi_stage_retries_total", "Polls a stage retried after a transient error, by error type", ["stage", "error"]
)
WATERMARK_BEHIND = Counter(
    "mofi_stage_watermark_behind_total",
    "Times the broker reported a partition's end below the offset a stage had committed (lag reported as 0)",
    ["stage"],
)
OUTAGE_SECONDS = Counter(
    "mofi_stage_outage_seconds_total",
    "Seconds a stage spent between a transient error and its next successful poll",
    ["stage"],
)


def is_transient(error: BaseException) -> bool:
    """An error a stage waits out instead of blaming the record: the broker's or the object store's."""
    return kafka.is_transient(error) or objstore.is_transient(error)


def rewind(consumer: KafkaConsumer) -> None:
    """Send every assigned partition back to its committed offset (its start when none), to redo what was
    consumed but not committed."""
    for tp in consumer.assignment():
        committed = consumer.committed(tp)
        if committed is None:
            consumer.seek_to_beginning(tp)
        else:
            consumer.seek(tp, committed)


def record_lag(stage: str, consumer: KafkaConsumer, offsets: dict[TopicPartition, int]) -> None:
    """Lag per partition after committing ``offsets``: the end of the log minus the committed offset.

    The end is the high-water mark cached from the last fetch (no request). A mark below the committed
    offset cannot be right, since the stage has read up to there; then the end offsets are asked for. The
    local Tansu broker gets both wrong after a restart (and its ListOffsets answers the base offset of the
    last batch plus one), so an end still below the committed offset counts as the committed offset (lag
    0, never negative) and ``mofi_stage_watermark_behind_total`` counts each such report, so a broker
    that misreports is visible instead of hidden by the clamp.
    """
    marks = {tp: consumer.highwater(tp) for tp in offsets}
    stale = [tp for tp, mark in marks.items() if mark is None or mark < offsets[tp]]
    if stale:
        for tp, end in consumer.end_offsets(stale).items():
            marks[tp] = max(end, marks[tp] or 0)
    for tp, committed in offsets.items():
        end = marks[tp]
        if end is None:
            continue
        if end < committed:
            WATERMARK_BEHIND.labels(stage).inc()
            log.debug("%s: %s end offset %d below committed %d", stage, tp, end, committed)
        LAG.labels(stage, tp.topic, str(tp.partition)).set(max(0, end - committed))


@dataclass
class StageLoop:
    """The loop both stage kinds run: turn, beat the heartbeat, and ride out transient errors.

    ``turn()`` polls once and returns the records it handled; ``recover()`` runs before the next turn after
    a transient error (a rewind); :meth:`run` ends once ``done(records of the last turn)`` says so.
    """

    name: str
    kcfg: KafkaSettings
    turn: Callable[[], int]
    recover: Callable[[], None]
    consumer: Callable[[], KafkaConsumer]
    reconnect: Callable[[], None]

    def __post_init__(self) -> None:
        self.backoff = Backoff.from_settings(self.kcfg)
        self._failing_since: float | None = None
        self._unjoined_since: float | None = None

    def _watch_group(self) -> None:
        """Replace a consumer that has stayed out of its group for ``kafka.rejoin_timeout_s``.

        Why: after losing its coordinator in the middle of a rebalance (a broker replaced while the group
        was re-forming), kafka-python's consumer can stay unjoined, or without a coordinator, for good,
        polling nothing while the broker is healthy again. A member that is in the group without partitions
        is left alone.
        """
        consumer = self.consumer()
        coordinator = getattr(consumer, "_coordinator", None)  # kafka-python's group member, if it has one
        known = coordinator is None or not coordinator.coordinator_unknown()
        joined = getattr(coordinator, "state", None) == MemberState.STABLE
        if known and (consumer.assignment() or joined):
            self._unjoined_since = None
            return
        now = time.monotonic()
        if self._unjoined_since is None:
            self._unjoined_since = now
        elif now - self._unjoined_since > self.kcfg.rejoin_timeout_s:
            out = now - self._unjoined_since
            log.warning("%s: out of the consumer group for %.0f s; replacing the consumer", self.name, out)
            RETRIES.labels(self.name, "NotInGroup").inc()
            self._unjoined_since = None
            self.reconnect()

    def once(self, stop: threading.Event) -> int:
        """One turn; a transient error is logged, waited out (until ``stop``) and answered with a rewind."""
        HEARTBEAT.beat()
        try:
            if self._failing_since is not None:
                self.recover()
            n = self.turn()
            self._watch_group()
        except Exception as e:
            if not is_transient(e):
                raise
            if self._failing_since is None:
                self._failing_since = time.monotonic()
            RETRIES.labels(self.name, type(e).__name__).inc()
            wait = self.backoff.next()
            attempt = self.backoff.failures
            log.warning("%s: %s: %s; retrying in %.1f s (attempt %d)", self.name, type(e).__name__, e, wait, attempt)
            stop.wait(wait)
            return 0
        if self._failing_since is not None:
            down = time.monotonic() - self._failing_since
            OUTAGE_SECONDS.labels(self.name).inc(down)
            log.info("%s: recovered after %.1f s and %d retries", self.name, down, self.backoff.failures)
            self._failing_since = None
            self.backoff.reset()
        return n

    def run(self, stop: threading.Event, done: Callable[[int], bool], poll_s: float = 0.5, unit: str = "rec") -> None:
        """Turn until ``stop`` or ``done()``; an empty turn that came back early waits out the poll time,
        so a client that fails fast (no broker) never spins the CPU."""
        HEARTBEAT.watch(self.kcfg.stall_timeout_s)
        try:
            with tqdm(desc=f"stage {self.name}", unit=unit, disable=None) as bar:
                while not stop.is_set():
                    start = time.monotonic()
                    n = self.once(stop)
                    bar.update(n)
                    if done(n):
                        break
                    if not n:
                        stop.wait(max(0.0, poll_s - (time.monotonic() - start)))
        finally:
            HEARTBEAT.unwatch()


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
        backoff = Backoff.from_settings(self.kcfg)
        topics = [*self.input_topics, *self.output_topics, self.kcfg.dead_letter_topic]
        retrying(f"{self.name}: creating topics", lambda: ensure_topics(self.kcfg, topics), backoff)
        self.producer = retrying(f"{self.name}: connecting the producer", lambda: make_producer(self.kcfg), backoff)
        self.consumer = self._connect()
        self.loop = StageLoop(
            self.name, self.kcfg, self.poll_once, lambda: rewind(self.consumer), lambda: self.consumer, self._reconnect
        )

    def _connect(self) -> KafkaConsumer:
        group = f"{self.kcfg.group_prefix}-{self.name}"
        return retrying(
            f"{self.name}: connecting the consumer",
            lambda: make_consumer(self.kcfg, group, self.input_topics, **self.consumer_kw),
            Backoff.from_settings(self.kcfg),
        )

    def _reconnect(self) -> None:
        """A new consumer in the same group: it resumes from the committed offsets."""
        self.consumer.close(autocommit=False, timeout_ms=5000)
        self.consumer = self._connect()

    def _outcomes(self, records: list[ConsumerRecord]) -> list[Outcome]:
        try:
            outcomes = list(self.handle(records))
            if len(outcomes) == len(records):
                return outcomes
            log.error("%s: handler returned %d outcomes for %d records", self.name, len(outcomes), len(records))
        except Exception as e:
            if is_transient(e):  # the broker or S3 is away: retry the poll, blame no record
                raise
            log.exception("%s: batch failed; retrying record by record", self.name)
        return [self._one(r) for r in records]

    def _one(self, record: ConsumerRecord) -> Outcome:
        try:
            (outcome,) = self.handle([record])
            return outcome
        except Exception as e:
            if is_transient(e):
                raise
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
        futures = []
        for record, outcome in zip(records, outcomes):
            if outcome.dead_letter_reason is not None:
                futures.append(
                    send_dead_letter(
                        self.producer,
                        self.kcfg,
                        record.value,
                        record.key,
                        outcome.dead_letter_reason,
                        self.name,
                        record.topic,
                    )
                )
                continue
            for emit in outcome.emits:
                futures.append(self.producer.send(emit.topic, key=emit.key, value=emit.value))
                produced[emit.topic] = produced.get(emit.topic, 0) + 1
        flush(self.producer, futures, self.kcfg.flush_timeout_s)  # raises unless all acknowledged: no commit
        offsets = {tp: part[-1].offset + 1 for tp, part in batches.items()}
        self.consumer.commit({tp: OffsetAndMetadata(off, "", -1) for tp, off in offsets.items()})
        COMMIT_SECONDS.labels(self.name).observe(time.perf_counter() - sending)
        dead = sum(o.dead_letter_reason is not None for o in outcomes)
        self.counts["records"] += len(records)
        self.counts["dead_letter"] += dead
        self.counts["emitted"] += len(records) - dead
        RECORDS.labels(self.name, "dead_letter").inc(dead)
        RECORDS.labels(self.name, "emitted").inc(len(records) - dead)
        CONSUMED.labels(self.name).inc(len(records))
        for topic, n in produced.items():
            PRODUCED.labels(self.name, topic).inc(n)
        record_lag(self.name, self.consumer, offsets)
        return len(records)

    def stop(self) -> None:
        self._stop.set()

    def run(self, idle_exit_s: float | None = None, max_records: int | None = None) -> dict[str, int]:
        """Until :meth:`stop`, ``max_records`` handled, or ``idle_exit_s`` without records; returns counts.

        Transient errors (broker down, flush timeout, rebalance) are waited out, see the module docstring.
        """
        last = time.monotonic()

        def done(n: int) -> bool:
            nonlocal last
            if n:
                last = time.monotonic()
            elif idle_exit_s is not None and time.monotonic() - last > idle_exit_s:
                return True
            return max_records is not None and self.counts["records"] >= max_records

        self.loop.run(self._stop, done)
        return dict(self.counts)

    def close(self) -> None:
        self.consumer.close()
        self.producer.close(timeout=self.kcfg.flush_timeout_s)  # bounded: the broker may be away

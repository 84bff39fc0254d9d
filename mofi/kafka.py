"""kafka-python adapters configured from :class:`~mofi.settings.KafkaSettings`.

Why here: every stage (produce, NER, scorer, writer, indexer) needs the same producer guarantees
(acks=all, idempotent keys) and the same consumer contract (manual commits, earliest reset), and the
same dead-letter record shape. One place keeps them identical, and :func:`client_kwargs` gives every
client (producer, consumer, admin) the same brokers and security (TLS, SASL PLAIN/SCRAM).

Durability: producers wait for acks=all, which means "every in-sync replica"; topics the stages create get
``replication_factor`` replicas and ``min.insync.replicas`` = ``min_insync_replicas``, so an acknowledged
record is on at least that many brokers (a single-replica topic would make acks=all mean one broker).

Faults: a stage rides out a broker that is down, restarting or rebalancing. :func:`is_transient` says
which errors are worth retrying, :class:`Backoff` spaces the retries (capped exponential, from
``kafka.retry_backoff_s`` to ``kafka.retry_backoff_max_s``), :func:`retrying` repeats a start-up step
until it succeeds, and :func:`flush` turns a record the broker never acknowledged into an exception, so
that a stage commits its input offsets only after every output is durable.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import (
    CommitFailedError,
    IllegalGenerationError,
    KafkaError,
    RebalanceInProgressError,
    TopicAlreadyExistsError,
    UnknownMemberIdError,
)
from kafka.producer.future import FutureRecordMetadata

from mofi.settings import KafkaSettings

__all__ = [
    "bootstrap_servers",
    "client_kwargs",
    "make_producer",
    "make_consumer",
    "make_reader",
    "ensure_topics",
    "MissingTopics",
    "send_dead_letter",
    "all_topics",
    "Backoff",
    "is_transient",
    "retrying",
    "flush",
    "DEAD_LETTER_REASON_HEADER",
    "DEAD_LETTER_STAGE_HEADER",
    "DEAD_LETTER_TOPIC_HEADER",
]

log = logging.getLogger(__name__)
T = TypeVar("T")

DEAD_LETTER_REASON_HEADER = "mofi-reason"
DEAD_LETTER_STAGE_HEADER = "mofi-stage"
DEAD_LETTER_TOPIC_HEADER = "mofi-source-topic"


def bootstrap_servers(kcfg: KafkaSettings) -> list[str]:
    return [s.strip() for s in kcfg.bootstrap_servers.split(",") if s.strip()]


def client_kwargs(kcfg: KafkaSettings) -> dict[str, Any]:
    """Brokers and security options of every kafka-python client (producer, consumer, admin)."""
    opts: dict[str, Any] = {
        "bootstrap_servers": bootstrap_servers(kcfg),
        "security_protocol": kcfg.security_protocol,
    }
    if kcfg.security_protocol.startswith("SASL_"):
        if not kcfg.sasl_username:
            raise ValueError(f"kafka.security_protocol={kcfg.security_protocol} needs kafka.sasl_username (the Secret)")
        opts |= {
            "sasl_mechanism": kcfg.sasl_mechanism,
            "sasl_plain_username": kcfg.sasl_username,
            "sasl_plain_password": kcfg.sasl_password,
        }
    if kcfg.security_protocol in ("SSL", "SASL_SSL"):
        opts["ssl_check_hostname"] = kcfg.ssl_check_hostname
        for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            if getattr(kcfg, name):
                opts[name] = getattr(kcfg, name)
    return opts


def all_topics(kcfg: KafkaSettings) -> list[str]:
    return [kcfg.pairs_topic, kcfg.candidates_topic, kcfg.i2e_topic, kcfg.dead_letter_topic]


def make_producer(kcfg: KafkaSettings, **kw) -> KafkaProducer:
    """A producer that only reports success once every in-sync replica has the record."""
    opts = dict(acks="all", retries=5, linger_ms=5, max_request_size=16 * 1024 * 1024)
    opts.update(kw)
    return KafkaProducer(**client_kwargs(kcfg), **opts)


def make_consumer(kcfg: KafkaSettings, group_id: str, topics: Iterable[str], **kw) -> KafkaConsumer:
    """A group consumer with manual commits: a stage commits only after its outputs are durable."""
    opts = dict(
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=kcfg.session_timeout_ms,
        heartbeat_interval_ms=max(1000, kcfg.session_timeout_ms // 3),
        max_poll_records=kcfg.max_poll_records,
        fetch_max_bytes=64 * 1024 * 1024,
        max_partition_fetch_bytes=16 * 1024 * 1024,
    )
    opts.update(kw)
    consumer = KafkaConsumer(**client_kwargs(kcfg), **opts)
    consumer.subscribe(list(topics))
    return consumer


def make_reader(kcfg: KafkaSettings, topic: str, **kw) -> KafkaConsumer:
    """A consumer in no group, assigned every partition of ``topic`` from the start: it reads and commits nothing.

    For looking at what a topic holds (counting dead letters, say) without moving any stage's offsets.
    """
    opts = dict(group_id=None, enable_auto_commit=False, auto_offset_reset="earliest")
    opts.update(kw)
    consumer = KafkaConsumer(**client_kwargs(kcfg), **opts)
    consumer.assign([TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or set())])
    return consumer


class MissingTopics(LookupError):
    """Topics a process needs do not exist and it may not create them."""


def ensure_topics(kcfg: KafkaSettings, names: Iterable[str], timeout_s: float = 30.0) -> None:
    """Create the topics that do not exist yet (idempotent; several processes may race), with
    ``replication_factor`` replicas and ``min.insync.replicas``; with ``create_topics`` off, only check that
    they exist."""
    if kcfg.min_insync_replicas > kcfg.replication_factor:
        raise ValueError(
            f"kafka.min_insync_replicas={kcfg.min_insync_replicas} exceeds kafka.replication_factor="
            f"{kcfg.replication_factor}: no acks=all write could ever succeed"
        )
    wanted = list(dict.fromkeys(names))
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            admin = KafkaAdminClient(**client_kwargs(kcfg), request_timeout_ms=10000)
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    try:
        existing = set(admin.list_topics())
        missing = [t for t in wanted if t not in existing]
        if missing and not kcfg.create_topics:
            raise MissingTopics(f"topics {', '.join(missing)} do not exist and kafka.create_topics is off: create them")
        if missing:
            configs = {"min.insync.replicas": str(kcfg.min_insync_replicas)}
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics(
                    [NewTopic(t, kcfg.partitions, kcfg.replication_factor, topic_configs=configs) for t in missing]
                )
    finally:
        admin.close()


def send_dead_letter(
    producer: KafkaProducer,
    kcfg: KafkaSettings,
    record_value: bytes | None,
    key: bytes | None,
    reason: str,
    stage: str,
    source_topic: str = "",
):
    """Send the original record unchanged to the dead-letter topic with why and where it failed."""
    headers = [
        (DEAD_LETTER_REASON_HEADER, reason.encode("utf-8", "replace")[:4096]),
        (DEAD_LETTER_STAGE_HEADER, stage.encode()),
        (DEAD_LETTER_TOPIC_HEADER, source_topic.encode()),
    ]
    return producer.send(kcfg.dead_letter_topic, key=key, value=record_value or b"", headers=headers)


# A commit refused because the group moved on: the consumer rejoins on its next poll and the records
# since the last commit are consumed again (by this member or the partition's new owner).
_GROUP_CHANGED = (CommitFailedError, RebalanceInProgressError, IllegalGenerationError, UnknownMemberIdError)


def is_transient(error: BaseException) -> bool:
    """Whether retrying can help: the broker unreachable or timing out, or the group rebalancing."""
    return isinstance(error, KafkaError) and (error.retriable or isinstance(error, _GROUP_CHANGED))


@dataclass
class Backoff:
    """Capped exponential backoff: ``initial_s``, twice that, ... up to ``max_s``; :meth:`reset` on success."""

    initial_s: float
    max_s: float
    failures: int = field(default=0, init=False)

    @classmethod
    def from_settings(cls, kcfg: KafkaSettings) -> Backoff:
        return cls(kcfg.retry_backoff_s, kcfg.retry_backoff_max_s)

    def next(self) -> float:
        """The wait before the next attempt (and count this failure)."""
        self.failures += 1
        return min(self.max_s, self.initial_s * 2 ** min(self.failures - 1, 32))

    def reset(self) -> None:
        self.failures = 0


def retrying(
    what: str,
    attempt: Callable[[], T],
    backoff: Backoff,
    stop: threading.Event | None = None,
    transient: Callable[[BaseException], bool] = is_transient,
) -> T:
    """``attempt()`` until it succeeds, logging each transient failure and waiting ``backoff`` between tries.

    Other errors propagate. A set ``stop`` event ends the waiting with the last error.
    """
    while True:
        try:
            return attempt()
        except Exception as e:
            if not transient(e):
                raise
            wait = backoff.next()
            log.warning("%s failed (attempt %d): %s; retrying in %.1f s", what, backoff.failures, e, wait)
            if stop is not None and stop.wait(wait):
                raise
            if stop is None:
                time.sleep(wait)


def flush(producer: KafkaProducer, futures: Sequence[FutureRecordMetadata], timeout_s: float) -> None:
    """Wait until the broker acknowledged every record of ``futures``; raise the first failure.

    ``producer.flush`` alone returns once each record is *done*, also when the producer gave up on it
    (its retries or delivery timeout spent): committing input offsets after that would lose the record.
    """
    producer.flush(timeout=timeout_s)  # KafkaTimeoutError when the broker does not answer in time
    for future in futures:
        if future.failed():
            raise future.exception

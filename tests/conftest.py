"""Shared fixtures: the real local stack (Tansu broker + SeaweedFS S3) on free loopback ports.

Started once per test session and torn down at the end; every test that talks to Kafka or S3 uses
these real servers. Topic and bucket names are made unique per test so tests never see each other's data.
"""

from __future__ import annotations

import os
import random
import uuid
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from mofi.objstore import ObjectStore  # noqa: E402
from mofi.settings import Settings  # noqa: E402
from mofi.stack import Stack, free_stack_ports, port_in_use  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def stack_settings(root: Path, storage: str = "s3") -> Settings:
    """Settings for a stack rooted at ``root`` on ports that are free right now."""
    s = Settings.for_local_stack(root, broker_storage=storage, **free_stack_ports())
    s.kafka.session_timeout_ms = 6000
    s.kafka.partitions = 2
    return s


@pytest.fixture(scope="session")
def running_stack(tmp_path_factory) -> Stack:
    """The session's Stack object (tests that restart the broker use it)."""
    stack = Stack(stack_settings(tmp_path_factory.mktemp("stack")))
    stack.up()
    yield stack
    stack.down()


@pytest.fixture(scope="session")
def local_stack(running_stack) -> Settings:
    """Settings whose kafka/s3 sections point at the running stack."""
    return running_stack.settings


def _quiet_ports(span: int) -> int:
    """p such that p..p+span-1 are free and below the ephemeral range, so that no client connection can take
    one of a killed server's ports before it is started again."""
    rng = random.Random()
    for _ in range(500):
        base = rng.randrange(20000, 32000 - span)
        if not any(port_in_use("127.0.0.1", base + i) for i in range(span)):
            return base
    raise RuntimeError("no free ports below 32000")


def _private_stack(tmp_path_factory, broker_storage: str):
    s = Settings.for_local_stack(
        tmp_path_factory.mktemp(f"private-stack-{broker_storage}"),
        kafka_port=_quiet_ports(1),
        s3_port=_quiet_ports(1),
        s3_internal_port_base=_quiet_ports(len(Stack.S3_PORT_OFFSETS)),
    )
    s.kafka.session_timeout_ms = 6000
    s.kafka.partitions = 2
    s.kafka.retry_backoff_s = 0.2
    s.kafka.retry_backoff_max_s = 2.0
    s.kafka.rejoin_timeout_s = 10.0
    s.stack.broker_storage = broker_storage
    stack = Stack(s)
    stack.up()
    yield stack
    stack.down()


@pytest.fixture(scope="module")
def private_stack(tmp_path_factory) -> Stack:
    """A stack of the module's own, for fault tests that kill and restart its servers; stages retry fast.
    Its broker keeps its log in the stack's S3 server, as the local stack does, so it survives a restart."""
    yield from _private_stack(tmp_path_factory, "s3")


@pytest.fixture(scope="module")
def private_stack_memory_broker(tmp_path_factory) -> Stack:
    """As ``private_stack``, but the broker keeps its log in memory: killing the S3 server then takes down
    the object store only, as in a cluster where Kafka does not store its log in the object store."""
    yield from _private_stack(tmp_path_factory, "memory")


@pytest.fixture()
def settings(local_stack, tmp_path):
    """Per-test settings on the shared stack with unique topics, buckets, collection and local paths."""
    s = local_stack.namespaced(uuid.uuid4().hex[:8])
    s.milvus.uri = str(tmp_path / "milvus.db")
    return s


@pytest.fixture()
def store(local_stack) -> ObjectStore:
    return ObjectStore(local_stack.s3)


@pytest.fixture()
def unique() -> str:
    return uuid.uuid4().hex[:8]

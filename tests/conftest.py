"""Shared fixtures: the real local stack (Tansu broker + SeaweedFS S3) on free loopback ports.

Started once per test session and torn down at the end; every test that talks to Kafka or S3 uses
these real servers. Topic and bucket names are made unique per test so tests never see each other's data.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from mofi.objstore import ObjectStore  # noqa: E402
from mofi.settings import Settings  # noqa: E402
from mofi.stack import Stack, free_port  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def stack_settings(root: Path, storage: str = "s3") -> Settings:
    """Settings for a stack rooted at ``root`` on ports that are free right now."""
    s = Settings()
    s.stack.data_dir = str(root)
    s.stack.kafka_port = free_port()
    s.stack.s3_port = free_port()
    s.stack.s3_internal_port_base = free_port(span=len(Stack.S3_PORT_OFFSETS))
    s.stack.broker_storage = storage
    s.kafka.bootstrap_servers = f"127.0.0.1:{s.stack.kafka_port}"
    s.kafka.session_timeout_ms = 6000
    s.kafka.partitions = 2
    s.s3.endpoint = f"127.0.0.1:{s.stack.s3_port}"
    s.milvus.uri = str(root / "milvus.db")
    s.data.cache_dir = str(root / "cache")
    s.data.build_dir = str(root / "data")
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


@pytest.fixture()
def settings(local_stack, tmp_path):
    """Per-test settings on the shared stack with unique topics, buckets and local paths."""
    import copy

    s = copy.deepcopy(local_stack)
    tag = uuid.uuid4().hex[:8]
    for name in ("pairs_topic", "candidates_topic", "i2e_topic", "dead_letter_topic"):
        setattr(s.kafka, name, f"{getattr(s.kafka, name)}.{tag}")
    s.kafka.group_prefix = f"mofi-{tag}"
    for name in ("corpus_bucket", "i2e_bucket", "models_bucket"):
        setattr(s.s3, name, f"{getattr(s.s3, name)}-{tag}")
    s.milvus.uri = str(tmp_path / "milvus.db")
    s.milvus.collection = f"images_{tag}"
    return s


@pytest.fixture()
def store(local_stack) -> ObjectStore:
    return ObjectStore(local_stack.s3)


@pytest.fixture()
def unique() -> str:
    return uuid.uuid4().hex[:8]

"""The NER pods' init container really fetches the knowledge base and its entity vectors, run as rendered against
the real S3 stack."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

from mofi_platform.services.common.entity_vectors import encoder_tag, vectors_path

from .rendering import by_kind, render


def init_container(chart, tmp_path, local_stack, s3_uri):
    values = {
        "knowledgeBase": {"mountPath": str(tmp_path / "kb"), "s3Uri": s3_uri},
        "settings": {
            "s3": {"endpoint": local_stack.s3.endpoint},
            "ner": {"kb_path": str(tmp_path / "kb" / "kb.jsonl")},
        },
    }
    objects = render(chart, values)
    (cm,) = [o for o in objects if o["kind"] == "ConfigMap"]
    dep = by_kind(objects, "Deployment")["mofi-ner"]
    (init,) = dep["spec"]["template"]["spec"]["initContainers"]
    # The pod's environment: the ConfigMap plus the Secret's credentials (here the stack's).
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("MOFI_")},
        **cm["data"],
        "MOFI_S3_ACCESS_KEY": local_stack.s3.access_key,
        "MOFI_S3_SECRET_KEY": local_stack.s3.secret_key,
    }
    assert init["command"][0] == "python"
    return [sys.executable, *init["command"][1:]], env


KB = b'{"id": "wn:02129604", "name": "tiger", "aliases": ["tiger"], "description": "large feline"}\n'


def test_init_container_copies_the_kb_and_its_vectors_into_the_mount(chart, tmp_path, local_stack, store):
    bucket = f"kb-{uuid.uuid4().hex[:8]}"
    table = vectors_path("kb.jsonl", encoder_tag())  # the name NER looks for beside its KB
    store.put_bytes(f"s3://{bucket}/kb/kb.jsonl", KB)
    store.put_bytes(f"s3://{bucket}/kb/{table}", b"vector table bytes")
    (tmp_path / "kb").mkdir()
    cmd, env = init_container(chart, tmp_path, local_stack, f"s3://{bucket}/kb/kb.jsonl")
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "kb" / "kb.jsonl").read_bytes() == KB
    assert (tmp_path / "kb" / table.name).read_bytes() == b"vector table bytes"


def test_init_container_warns_without_a_vector_table(chart, tmp_path, local_stack, store):
    bucket = f"kb-{uuid.uuid4().hex[:8]}"
    store.put_bytes(f"s3://{bucket}/kb/kb.jsonl", KB)
    (tmp_path / "kb").mkdir()
    cmd, env = init_container(chart, tmp_path, local_stack, f"s3://{bucket}/kb/kb.jsonl")
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr  # NER can start: it encodes entity texts on first use
    assert "no entity-vector table" in done.stderr
    assert (tmp_path / "kb" / "kb.jsonl").read_bytes() == KB
    assert [p.name for p in (tmp_path / "kb").iterdir()] == ["kb.jsonl"]


def test_init_container_fails_loudly_when_the_kb_is_missing(chart, tmp_path, local_stack, store):
    bucket = f"kb-{uuid.uuid4().hex[:8]}"
    store.ensure_bucket(bucket)
    (tmp_path / "kb").mkdir()
    cmd, env = init_container(chart, tmp_path, local_stack, f"s3://{bucket}/kb/absent.jsonl")
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0  # the pod stays in Init:Error instead of starting NER without a KB
    assert f"no knowledge base at s3://{bucket}/kb/absent.jsonl" in done.stderr
    assert not (tmp_path / "kb" / "kb.jsonl").exists()

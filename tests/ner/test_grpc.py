"""The EntityExtractor gRPC service: a client built from protos/ alone, batch and stream calls,
bad input as INVALID_ARGUMENT, deadlines, health."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mofi.settings import Settings
from mofi.v1 import ner_pb2, ner_pb2_grpc
from mofi_platform.services.ner.app import build_server

REPO = Path(__file__).resolve().parents[2]

CLIENT = r"""
import json, sys
import grpc
import mofi
from mofi.v1 import ner_pb2, ner_pb2_grpc
assert mofi.__file__.startswith(sys.argv[2]), mofi.__file__  # the generated stubs, not the project
stub = ner_pb2_grpc.EntityExtractorStub(grpc.insecure_channel(sys.argv[1]))
out = {}
for text in ("A Sumatran tiger.", "Mont-Saint-Michel at dusk, Normandy"):
    reply = stub.Extract(ner_pb2.ExtractRequest(text=text, request_id=text[:5]), timeout=60)
    out[text] = {"request_id": reply.request_id, "mentions": [m.text for m in reply.mentions],
                 "entities": [[c.entity_id, c.name, c.link_score, c.mention_index] for c in reply.candidates]}
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def server(extractor):
    settings = Settings()
    settings.ner.max_text_chars = extractor.cfg.max_text_chars
    running = build_server(settings, extractor, port=0)
    yield running
    running.stop(1)


@pytest.fixture(scope="module")
def stub(server):
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    yield ner_pb2_grpc.EntityExtractorStub(channel)
    channel.close()


def test_client_generated_from_protos_alone(server, tmp_path):
    from grpc_tools import protoc

    protos = REPO / "protos"
    files = [str(p.relative_to(protos)) for p in (protos / "mofi/v1").glob("*.proto")]
    assert (
        protoc.main(["protoc", f"-I{protos}", f"--python_out={tmp_path}", f"--grpc_python_out={tmp_path}", *files]) == 0
    )
    for pkg in (tmp_path / "mofi", tmp_path / "mofi/v1"):
        (pkg / "__init__.py").write_text("")
    proc = subprocess.run(
        [sys.executable, "-c", CLIENT, f"127.0.0.1:{server.port}", str(tmp_path)],
        cwd=tmp_path,
        env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    tiger = out["A Sumatran tiger."]
    assert tiger["request_id"] == "A Sum" and "tiger" in tiger["mentions"]
    assert "wn:02129604" in [e[0] for e in tiger["entities"]]
    msm = out["Mont-Saint-Michel at dusk, Normandy"]
    assert {"landmark:mont-saint-michel", "wn:08944561"} <= {e[0] for e in msm["entities"]}
    assert all(0.0 <= e[2] <= 1.0 for e in tiger["entities"] + msm["entities"])


def test_batch_and_stream_match_single_calls(stub):
    texts = ["A koala.", "A fire truck.", "The letter y.", "A white kitten."]
    single = [stub.Extract(ner_pb2.ExtractRequest(text=t, request_id=str(i)), timeout=60) for i, t in enumerate(texts)]
    batch = stub.ExtractBatch(
        ner_pb2.ExtractBatchRequest(
            items=[ner_pb2.ExtractRequest(text=t, request_id=str(i)) for i, t in enumerate(texts)]
        ),
        timeout=60,
    )
    stream = list(
        stub.ExtractStream(
            iter([ner_pb2.ExtractRequest(text=t, request_id=str(i)) for i, t in enumerate(texts)]), timeout=60
        )
    )
    for replies in (batch.items, stream):
        assert [r.request_id for r in replies] == ["0", "1", "2", "3"]
        assert [[c.entity_id for c in r.candidates] for r in replies] == [
            [c.entity_id for c in r.candidates] for r in single
        ]
    assert single[0].candidates[0].entity_id == "wn:01882714"


@pytest.mark.parametrize(
    "text,words", [("", "empty"), ("  \t\n", "whitespace"), ("y" * 301, "exceeds"), ("bell\x07", "binary")]
)
def test_bad_input_is_invalid_argument(stub, text, words):
    for call in (
        lambda: stub.Extract(ner_pb2.ExtractRequest(text=text), timeout=30),
        lambda: stub.ExtractBatch(
            ner_pb2.ExtractBatchRequest(
                items=[ner_pb2.ExtractRequest(text="A koala."), ner_pb2.ExtractRequest(text=text)]
            ),
            timeout=30,
        ),
    ):
        with pytest.raises(grpc.RpcError) as e:
            call()
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and words in e.value.details()
    assert stub.Extract(ner_pb2.ExtractRequest(text="A koala."), timeout=30).candidates  # still serving


def test_non_utf8_bytes_are_invalid_argument(server):
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        raw = channel.unary_unary("/mofi.v1.EntityExtractor/Extract")
        with pytest.raises(grpc.RpcError) as e:
            raw(b"\x0a\x03\xff\xfe\xfd", timeout=30)  # field 1 (text) holding bytes that are not UTF-8
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "parse" in e.value.details()


def test_deadline_and_health(stub, server):
    with pytest.raises(grpc.RpcError) as e:
        stub.ExtractBatch(
            ner_pb2.ExtractBatchRequest(items=[ner_pb2.ExtractRequest(text="A koala.")] * 64), timeout=0.001
        )
    assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        status = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service="mofi.v1.EntityExtractor"), timeout=10
        )
    assert status.status == health_pb2.HealthCheckResponse.SERVING


def test_a_call_without_deadline_waits_for_its_result(stub):
    assert stub.Extract(ner_pb2.ExtractRequest(text="A koala.", request_id="k")).request_id == "k"

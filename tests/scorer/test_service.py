"""The ClipScorer gRPC service on a real server: scores, batching, errors, deadlines, health."""

from __future__ import annotations

import io
import os
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from PIL import Image

from mofi.settings import Settings
from mofi.v1 import records_pb2, scorer_pb2, scorer_pb2_grpc
from mofi_platform.services.common.deadline import NO_DEADLINE_S, wait_timeout
from mofi_platform.services.scorer.app import build_server, candidate_scorer
from mofi_platform.services.scorer.candidates import Kind
from mofi_platform.services.scorer.scoring import ClipScorer
from mofi_platform.services.scorer.service import SERVICE_NAME
from tests.writer.support import png

TEXTS = ["tiger: large feline", "Paris: capital of France", "sailboat: a small vessel"]


class RecordingModel:
    """The real tiny model, recording batch sizes and optionally slowed down."""

    def __init__(self, inner, delay_s: float = 0.0):
        self.inner, self.version, self.delay_s, self.batches, self.broken = inner, inner.version, delay_s, [], False
        self.image_size = inner.image_size

    def embed_images(self, images):
        if self.broken:
            raise RuntimeError("model weights went missing")
        self.batches.append(len(images))
        time.sleep(self.delay_s)
        return self.inner.embed_images(images)

    def embed_texts(self, texts):
        return self.inner.embed_texts(texts)


@pytest.fixture()
def running(tiny_embedding_model):
    settings = Settings()
    settings.scorer.max_batch = 8
    settings.scorer.max_wait_ms = 30
    settings.scorer.max_image_bytes = 200_000
    settings.data.max_pixels = 1_000_000
    model = RecordingModel(tiny_embedding_model)
    server = build_server(settings, ClipScorer(model), port=0)
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    yield scorer_pb2_grpc.ClipScorerStub(channel), channel, model
    channel.close()
    server.stop(1)


def _direct(model, image_bytes: bytes, texts: list[str]) -> np.ndarray:
    image = Image.open(io.BytesIO(image_bytes)).convert("RGB")
    return model.embed_texts(texts) @ model.embed_images([image])[0]


def test_score_and_score_batch_match_the_model(running, tiny_embedding_model):
    stub, _, _ = running
    resp = stub.Score(scorer_pb2.ScoreRequest(image=png(1), texts=TEXTS), timeout=30)
    assert resp.model_version == "tiny@test"
    np.testing.assert_allclose(resp.scores, _direct(tiny_embedding_model, png(1), TEXTS), atol=1e-5)
    batch = stub.ScoreBatch(
        scorer_pb2.ScoreBatchRequest(
            items=[scorer_pb2.ScoreRequest(image=png(i), texts=TEXTS[: i + 1]) for i in range(3)]
        ),
        timeout=30,
    )
    assert [len(r.scores) for r in batch.items] == [1, 2, 3]
    for i, r in enumerate(batch.items):
        np.testing.assert_allclose(r.scores, _direct(tiny_embedding_model, png(i), TEXTS[: i + 1]), atol=1e-5)


def test_concurrent_requests_share_forward_passes(running, tiny_embedding_model):
    stub, _, model = running
    model.batches.clear()
    with ThreadPoolExecutor(16) as pool:
        results = list(
            pool.map(
                lambda i: stub.Score(scorer_pb2.ScoreRequest(image=png(i), texts=TEXTS[:1]), timeout=30), range(32)
            )
        )
    for i, r in enumerate(results):
        np.testing.assert_allclose(r.scores, _direct(tiny_embedding_model, png(i), TEXTS[:1]), atol=1e-5)
    assert sum(model.batches) == 32
    assert max(model.batches) > 1 and len(model.batches) < 32  # requests were merged
    assert max(model.batches) <= 8  # never above max_batch


@pytest.mark.parametrize(
    "request_, reason",
    [
        (scorer_pb2.ScoreRequest(image=b"not an image", texts=TEXTS), ""),
        (scorer_pb2.ScoreRequest(image=png(1), texts=[]), "no texts"),
        (scorer_pb2.ScoreRequest(image=b"", texts=TEXTS), ""),
        (scorer_pb2.ScoreRequest(image=png(1, size=(1200, 1000)), texts=TEXTS), ""),
        (scorer_pb2.ScoreRequest(image=b"\x89PNG" + b"0" * 300_000, texts=TEXTS), ""),
        # the texts go through the same policy as NER's alt-texts and the embedder's queries
        (scorer_pb2.ScoreRequest(image=png(1), texts=["x" * 100_000]), "text 0: text of 100000 characters exceeds"),
        (scorer_pb2.ScoreRequest(image=png(1), texts=["ok", ""]), "text 1: text is empty"),
        (scorer_pb2.ScoreRequest(image=png(1), texts=["\x01\x02"]), "text 0: text looks binary"),
    ],
)
def test_bad_requests_are_invalid_argument_with_a_reason(running, request_, reason):
    stub, _, _ = running
    with pytest.raises(grpc.RpcError) as err:
        stub.Score(request_, timeout=30)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details() and reason in err.value.details()
    # the service is still fine afterwards
    assert len(stub.Score(scorer_pb2.ScoreRequest(image=png(2), texts=TEXTS), timeout=30).scores) == 3


def test_one_bad_item_fails_the_batch_and_names_it(running):
    stub, _, model = running
    model.batches.clear()
    items = [scorer_pb2.ScoreRequest(image=png(1), texts=TEXTS), scorer_pb2.ScoreRequest(image=b"junk", texts=TEXTS)]
    with pytest.raises(grpc.RpcError) as err:
        stub.ScoreBatch(scorer_pb2.ScoreBatchRequest(items=items), timeout=30)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "item 1" in err.value.details()
    assert model.batches == []  # nothing reached the model


def test_deadline_exceeded_and_service_survives(running):
    stub, _, model = running
    model.delay_s = 1.0
    with pytest.raises(grpc.RpcError) as err:
        stub.Score(scorer_pb2.ScoreRequest(image=png(1), texts=TEXTS), timeout=0.2)
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    model.delay_s = 0.0
    time.sleep(1.0)
    assert len(stub.Score(scorer_pb2.ScoreRequest(image=png(1), texts=TEXTS), timeout=30).scores) == 3


def test_calls_without_a_deadline_are_answered(running, tiny_embedding_model):
    """No ``timeout``: the server sees an infinite deadline and must wait for the batch, not overflow."""
    stub, _, _ = running
    resp = stub.Score(scorer_pb2.ScoreRequest(image=png(3), texts=TEXTS))
    np.testing.assert_allclose(resp.scores, _direct(tiny_embedding_model, png(3), TEXTS), atol=1e-5)
    batch = stub.ScoreBatch(
        scorer_pb2.ScoreBatchRequest(items=[scorer_pb2.ScoreRequest(image=png(4), texts=TEXTS[:2])])
    )
    np.testing.assert_allclose(batch.items[0].scores, _direct(tiny_embedding_model, png(4), TEXTS[:2]), atol=1e-5)


class _Context:
    def __init__(self, remaining):
        self.remaining = remaining

    def time_remaining(self):
        return self.remaining


@pytest.mark.parametrize(
    "remaining, timeout", [(2.5, 2.5), (0.0, 0.0), (None, None), (NO_DEADLINE_S * 10, None), (9.2e18, None)]
)
def test_wait_timeout(remaining, timeout):
    assert wait_timeout(_Context(remaining)) == timeout


def test_model_failure_is_internal_with_the_cause(running):
    stub, _, model = running
    model.broken = True
    with pytest.raises(grpc.RpcError) as err:
        stub.Score(scorer_pb2.ScoreRequest(image=png(1), texts=TEXTS), timeout=30)
    assert err.value.code() == grpc.StatusCode.INTERNAL and "weights went missing" in err.value.details()
    model.broken = False
    assert len(stub.Score(scorer_pb2.ScoreRequest(image=png(1), texts=TEXTS), timeout=30).scores) == 3


def test_health_reports_serving(running):
    _, channel, _ = running
    health = health_pb2_grpc.HealthStub(channel)
    resp = health.Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=10)
    assert resp.status == health_pb2.HealthCheckResponse.SERVING


def test_decompression_bombs_and_oversized_references_are_refused(tiny_embedding_model, settings, store, unique):
    """A 1-bit PNG of 6300x6300 (a few KB, under the pixel cap) is refused by its decode memory, in
    ScoreBatch and in the stage; an S3 reference claiming 0 bytes is sized by a HEAD and refused."""
    buf = io.BytesIO()
    Image.new("1", (6300, 6300), 1).save(buf, "PNG", optimize=True)
    bomb = buf.getvalue()
    assert len(bomb) < 64 * 1024 and settings.data.max_pixels > 6300 * 6300
    server = build_server(settings, ClipScorer(tiny_embedding_model), port=0)
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    try:
        stub = scorer_pb2_grpc.ClipScorerStub(channel)
        items = [scorer_pb2.ScoreRequest(image=bomb, texts=TEXTS) for _ in range(10)]
        with pytest.raises(grpc.RpcError) as err:
            stub.ScoreBatch(scorer_pb2.ScoreBatchRequest(items=items), timeout=30)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "item 0: " in err.value.details() and "bytes to decode; the limit is" in err.value.details()
    finally:
        channel.close()
        server.stop(1)

    settings.scorer.max_image_bytes = 1024 * 1024
    uri = f"s3://refs-{unique}/big.png"
    store.put_bytes(uri, png(0) + os.urandom(3 * 1024 * 1024))
    pair = records_pb2.Pair(
        pair_id="p1", text="a tiger", image_mime="image/png", image_ref=records_pb2.ObjectRef(uri=uri, size_bytes=0)
    )
    cand = records_pb2.CandidatePair(pair=pair)
    cand.candidates.add(entity_id="Q1", name="tiger", description="a big cat")
    core = candidate_scorer(settings, ClipScorer(tiny_embedding_model), store)
    (verdict,) = core.process([cand.SerializeToString()])
    assert verdict.kind is Kind.DEAD_LETTER
    assert f"is {len(png(0)) + 3 * 1024 * 1024} bytes, over the limit of 1048576" in verdict.reason

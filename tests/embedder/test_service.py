"""The Embedder and Search gRPC services against a real server on a free port."""

from __future__ import annotations

import io
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from PIL import Image

from mofi.v1 import embedder_pb2 as pb
from mofi_platform.services.embedder.service import EMBEDDER_SERVICE, SEARCH_SERVICE
from tests.embedder.conftest import as_array, png


def test_embed_images_and_texts_match_in_process(stubs, holder):
    embedder, _ = stubs
    images = [png("red"), png("blue", "rectangle")]
    resp = embedder.EmbedImages(pb.EmbedImagesRequest(images=images))
    assert resp.model_version == "tiny-a"
    got = as_array(resp)
    want = holder.model.embed_images([Image.open(io.BytesIO(b)).convert("RGB") for b in images])
    np.testing.assert_allclose(got, want, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    texts = embedder.EmbedTexts(pb.EmbedTextsRequest(texts=["a red circle", "a blue square"]))
    np.testing.assert_allclose(as_array(texts), holder.model.embed_texts(["a red circle", "a blue square"]), atol=1e-5)


def test_concurrent_callers_share_batches_and_get_their_own_vectors(stubs, holder):
    embedder, _ = stubs
    texts = [f"text number {i}" for i in range(24)]
    with ThreadPoolExecutor(12) as pool:
        got = list(pool.map(lambda t: as_array(embedder.EmbedTexts(pb.EmbedTextsRequest(texts=[t])))[0], texts))
    np.testing.assert_allclose(np.stack(got), holder.model.embed_texts(texts), atol=1e-5)


def test_stream_returns_results_in_order_with_versions(stubs, holder):
    embedder, _ = stubs
    items = [
        pb.EmbedItem(request_id="img", image=png("green")),
        pb.EmbedItem(request_id="txt", text="green"),
        pb.EmbedItem(request_id="img2", image=png("red")),
    ]
    results = list(embedder.EmbedStream(iter(items)))
    assert [r.request_id for r in results] == ["img", "txt", "img2"]
    assert {r.model_version for r in results} == {"tiny-a"}
    np.testing.assert_allclose(results[1].embedding.values, holder.model.embed_texts(["green"])[0], atol=1e-5)


def test_health_and_reflection_names(channel):
    health = health_pb2_grpc.HealthStub(channel)
    for name in ("", EMBEDDER_SERVICE, SEARCH_SERVICE):
        assert (
            health.Check(health_pb2.HealthCheckRequest(service=name)).status == health_pb2.HealthCheckResponse.SERVING
        )


def test_search_by_text_image_vector_and_filters(stubs, indexed):
    embedder, search = stubs
    by_image = search.Search(pb.SearchRequest(image=indexed[3].image_bytes, top_k=3))
    assert by_image.hits[0].pair_id == indexed[3].pair_id and by_image.hits[0].score > 0.99
    assert by_image.collection.startswith("images_v") and by_image.model_version == "tiny-a"
    assert list(by_image.hits[0].entity_names) == indexed[3].entity_names
    by_text = search.Search(pb.SearchRequest(text="a red ellipse", top_k=50))
    assert len(by_text.hits) == len(indexed)
    scores = [h.score for h in by_text.hits]
    assert scores == sorted(scores, reverse=True)
    vec = embedder.EmbedImages(pb.EmbedImagesRequest(images=[indexed[5].image_bytes])).embeddings[0]
    assert search.Search(pb.SearchRequest(vector=vec, top_k=1)).hits[0].pair_id == indexed[5].pair_id
    only_blue = search.Search(pb.SearchRequest(text="x", top_k=50, entity_id="colour:blue"))
    assert {h.pair_id for h in only_blue.hits} == {i.pair_id for i in indexed if i.entity_ids == ["colour:blue"]}
    other = search.Search(pb.SearchRequest(text="x", top_k=50, source="other"))
    assert {h.pair_id for h in other.hits} == {i.pair_id for i in indexed if i.source == "other"}


def _huge_png() -> bytes:
    buf = io.BytesIO()
    Image.new("1", (2000, 2000)).save(buf, format="PNG")  # a few KB, 4 Mpx > the 512x512 test limit
    return buf.getvalue()


BAD_INPUTS = [
    (
        "corrupt image bytes",
        "EmbedImages",
        pb.EmbedImagesRequest(images=[b"\x89PNG\r\n\x1a\nnot really"]),
        grpc.StatusCode.INVALID_ARGUMENT,
        "cannot decode",
    ),
    (
        "empty image",
        "EmbedImages",
        pb.EmbedImagesRequest(images=[png("red"), b""]),
        grpc.StatusCode.INVALID_ARGUMENT,
        "image 1: empty image",
    ),
    ("no images", "EmbedImages", pb.EmbedImagesRequest(), grpc.StatusCode.INVALID_ARGUMENT, "no images"),
    (
        "oversized bytes",
        "EmbedImages",
        pb.EmbedImagesRequest(images=[b"\x00" * (64 * 1024 + 1)]),
        grpc.StatusCode.INVALID_ARGUMENT,
        "exceeds the limit",
    ),
    (
        "huge pixel count",
        "EmbedImages",
        pb.EmbedImagesRequest(images=[_huge_png()]),
        grpc.StatusCode.INVALID_ARGUMENT,
        "pixels exceeds",
    ),
    ("empty text list", "EmbedTexts", pb.EmbedTextsRequest(), grpc.StatusCode.INVALID_ARGUMENT, "no texts"),
    (
        "blank text",
        "EmbedTexts",
        pb.EmbedTextsRequest(texts=["ok", "   "]),
        grpc.StatusCode.INVALID_ARGUMENT,
        "text 1: text is only whitespace",
    ),
    (
        "text with a NUL character",
        "EmbedTexts",
        pb.EmbedTextsRequest(texts=["a\x00b"]),
        grpc.StatusCode.INVALID_ARGUMENT,
        "text 0: text looks binary: control character U+0000 at offset 1",
    ),
    (
        "text over the length limit",
        "EmbedTexts",
        pb.EmbedTextsRequest(texts=["x" * 100_000]),
        grpc.StatusCode.INVALID_ARGUMENT,
        "text 0: text of 100000 characters exceeds the limit of 2000",
    ),
    (
        "message over the size cap",
        "EmbedTexts",
        pb.EmbedTextsRequest(texts=["x" * (1024 * 1024 + 10)]),
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "",
    ),
    ("missing query", "Search", pb.SearchRequest(top_k=3), grpc.StatusCode.INVALID_ARGUMENT, "missing query"),
    (
        "wrong-dimension vector",
        "Search",
        pb.SearchRequest(vector=pb.Embedding(values=[0.1, 0.2, 0.3])),
        grpc.StatusCode.INVALID_ARGUMENT,
        "3 dimensions",
    ),
    (
        "zero vector",
        "Search",
        pb.SearchRequest(vector=pb.Embedding(values=[0.0] * 4)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "non-zero",
    ),
    (
        "unknown collection",
        "Search",
        pb.SearchRequest(text="tiger", collection="no_such_index"),
        grpc.StatusCode.NOT_FOUND,
        "no_such_index",
    ),
    (
        "negative k",
        "Search",
        pb.SearchRequest(text="tiger", top_k=-1),
        grpc.StatusCode.INVALID_ARGUMENT,
        "must be positive",
    ),
    (
        "k over the maximum",
        "Search",
        pb.SearchRequest(text="tiger", top_k=51),
        grpc.StatusCode.INVALID_ARGUMENT,
        "exceeds the limit of 50",
    ),
    (
        "corrupt query image",
        "Search",
        pb.SearchRequest(image=b"GIF89a broken"),
        grpc.StatusCode.INVALID_ARGUMENT,
        "image query: cannot decode",
    ),
    (
        "filter injection",
        "Search",
        pb.SearchRequest(text="tiger", source='x" or source != "'),
        grpc.StatusCode.INVALID_ARGUMENT,
        "quotes",
    ),
]


@pytest.mark.parametrize("what, method, request_, code, reason", BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_gets_a_clear_status_and_the_service_keeps_serving(
    stubs, indexed, what, method, request_, code, reason
):
    embedder, search = stubs
    stub = search if method == "Search" else embedder
    with pytest.raises(grpc.RpcError) as err:
        getattr(stub, method)(request_, timeout=20)
    assert err.value.code() == code, err.value.details()
    assert reason in err.value.details()
    assert search.Search(pb.SearchRequest(text="a red ellipse", top_k=2), timeout=20).hits  # still serving
    assert embedder.EmbedImages(pb.EmbedImagesRequest(images=[png("red")]), timeout=20).model_version == "tiny-a"


def test_bad_stream_item_fails_the_stream_with_its_id(stubs):
    embedder, _ = stubs
    items = [pb.EmbedItem(request_id="ok", text="fine"), pb.EmbedItem(request_id="bad", image=b"junk")]
    with pytest.raises(grpc.RpcError) as err:
        list(embedder.EmbedStream(iter(items), timeout=20))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "'bad'" in err.value.details()


def test_hot_reload_swaps_versions_without_failing_calls(stubs, holder, checkpoints):
    embedder, _ = stubs
    stop = threading.Event()
    versions: list[str] = []
    errors: list[Exception] = []

    def hammer() -> None:
        while not stop.is_set():
            try:
                versions.append(
                    embedder.EmbedTexts(pb.EmbedTextsRequest(texts=["a", "b", "c"]), timeout=30).model_version
                )
            except grpc.RpcError as e:
                errors.append(e)

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()

    def wait_for(count: int) -> None:  # bounded: a stalled server fails the test instead of hanging it
        deadline = time.monotonic() + 60
        while len(versions) < count and not errors:
            assert time.monotonic() < deadline, f"only {len(versions)} of {count} calls answered within 60 s"
            threading.Event().wait(0.05)

    try:
        wait_for(10)
        assert holder.reload(checkpoints["b"]) == "tiny-b"
        wait_for(len(versions) + 10)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors
    assert versions[0] == "tiny-a" and versions[-1] == "tiny-b"
    first_b = versions.index("tiny-b")
    assert set(versions[first_b + 8 :]) == {"tiny-b"}  # only calls already in flight may finish on the old model

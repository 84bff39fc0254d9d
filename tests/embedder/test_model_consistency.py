"""A query is only ever compared with vectors of the model that embedded it: each collection records its model,
Search embeds with it (even while the server's own model is another), a reindex with a new model switches the
query model together with the alias, and a model that cannot be had is refused, not replaced. An embedder
without any checkpoint starts, reports its Embedder service NOT_SERVING, and serves once the checkpoint appears."""

from __future__ import annotations

import shutil
import threading
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mofi.v1 import embedder_pb2 as pb, embedder_pb2_grpc
from mofi_platform.services.embedder.app import build_server, load_until_loaded
from mofi_platform.services.embedder.indexing import build_index
from mofi_platform.services.embedder.models import ModelHolder
from mofi_platform.services.embedder.resources import load_holder, model_loader
from mofi_platform.services.embedder.service import EMBEDDER_SERVICE, SEARCH_SERVICE
from tests.embedder.conftest import image_items


def test_reindex_with_another_model_while_searching_never_answers_across_models(
    stubs, holder, vectors, indexed, emb_settings, checkpoints
):
    _, search = stubs
    assert holder.version == "tiny-a"
    holder_b = load_holder(emb_settings, checkpoints["b"])
    seen: list[tuple[str, str]] = []
    errors: list[grpc.RpcError] = []
    stop = threading.Event()

    def searcher() -> None:
        while not stop.is_set():
            try:
                r = search.Search(pb.SearchRequest(text="a red shape", top_k=5), timeout=30)
                seen.append((r.collection, r.model_version))
            except grpc.RpcError as e:
                errors.append(e)

    threads = [threading.Thread(target=searcher) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        report = build_index(holder_b, vectors, image_items(20, source="fresh"), batch_size=4)
    finally:
        threading.Event().wait(0.5)
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors[0].details()
    assert vectors.built_by(report.collection) == ("tiny-b", checkpoints["b"])
    assert {c for c, _ in seen} == {vectors.versions()[0], report.collection}
    for collection, version in seen:
        assert version == vectors.built_by(collection)[0]  # the query model is the collection's, never the other
    assert holder.version == "tiny-a"  # the server's own model did not change: it loaded tiny-b for the collection
    # and the answer is the one the new model gives in process
    query = holder_b.model.embed_texts(["a red shape"])[0]
    expected = [h.pair_id for h in vectors.search(query, 5, report.collection)[1]]
    assert [h.pair_id for h in search.Search(pb.SearchRequest(text="a red shape", top_k=5)).hits] == expected


def test_a_collection_whose_model_cannot_be_loaded_is_refused(stubs, holder, vectors, tmp_path):
    _, search = stubs
    name = vectors.new_collection(holder.dim, "tiny-gone", str(tmp_path / "gone.pt"))
    vectors.publish(name)
    with pytest.raises(grpc.RpcError) as failed:
        search.Search(pb.SearchRequest(text="a shape", top_k=3), timeout=30)
    assert failed.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert f"collection {name} was built by model 'tiny-gone'" in failed.value.details()
    assert "gone.pt" in failed.value.details()
    # a vector query needs no model: it still runs
    vector = pb.Embedding(values=holder.model.embed_texts(["a shape"])[0].tolist())
    assert search.Search(pb.SearchRequest(vector=vector, top_k=3), timeout=30).collection == name


def test_an_embedder_without_a_checkpoint_starts_not_serving_and_serves_once_it_appears(
    emb_settings, vectors, checkpoints, tmp_path
):
    pinned = tmp_path / "pinned" / "v7.pt"
    holder = ModelHolder(None, loader=model_loader(emb_settings))
    running = build_server(emb_settings, holder, vectors, port=0)
    channel = grpc.insecure_channel(f"127.0.0.1:{running.port}")
    try:
        load_until_loaded(holder, str(pinned), running.server, retry_s=0.2)
        health = health_pb2_grpc.HealthStub(channel)

        def status(name: str) -> int:
            return health.Check(health_pb2.HealthCheckRequest(service=name), timeout=10).status

        assert status(EMBEDDER_SERVICE) == health_pb2.HealthCheckResponse.NOT_SERVING
        assert status(SEARCH_SERVICE) == health_pb2.HealthCheckResponse.SERVING  # the readiness probe's service
        embedder = embedder_pb2_grpc.EmbedderStub(channel)
        with pytest.raises(grpc.RpcError) as failed:
            embedder.EmbedTexts(pb.EmbedTextsRequest(texts=["a"]), timeout=10)
        assert failed.value.code() == grpc.StatusCode.UNAVAILABLE and "no embedding model" in failed.value.details()

        pinned.parent.mkdir()
        shutil.copy(checkpoints["a"], pinned)
        deadline = time.monotonic() + 60
        while status(EMBEDDER_SERVICE) != health_pb2.HealthCheckResponse.SERVING:
            assert time.monotonic() < deadline, "the checkpoint was not loaded within 60 s of appearing"
            time.sleep(0.1)
        assert embedder.EmbedTexts(pb.EmbedTextsRequest(texts=["a"]), timeout=30).model_version == "tiny-a"
    finally:
        channel.close()
        running.stop(1.0)

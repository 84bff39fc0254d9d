"""Reindexing while searches run: no search fails, none sees a partial index."""

from __future__ import annotations

import threading

import grpc

from mofi.v1 import embedder_pb2 as pb
from mofi_platform.services.embedder.indexing import build_index
from tests.embedder.conftest import image_items


def test_searches_during_reindex_see_only_complete_collections(stubs, holder, vectors, indexed):
    _, search = stubs
    old = {i.pair_id for i in indexed}
    new_items = image_items(30, source="fresh")  # different ids and size: a partial index is detectable
    new = {i.pair_id for i in new_items}
    seen: list[tuple[str, set[str]]] = []
    errors: list[grpc.RpcError] = []
    stop = threading.Event()

    def searcher() -> None:
        while not stop.is_set():
            try:
                r = search.Search(pb.SearchRequest(text="a shape", top_k=50), timeout=30)
                seen.append((r.collection, {h.pair_id for h in r.hits}))
            except grpc.RpcError as e:
                errors.append(e)

    threads = [threading.Thread(target=searcher) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        report = build_index(holder, vectors, new_items, batch_size=4)  # many small inserts: many partial states
    finally:
        threading.Event().wait(0.5)
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors[0].details()
    collections = {c for c, _ in seen}
    assert report.collection in collections and len(collections) == 2, collections
    for collection, ids in seen:
        assert ids == (new if collection == report.collection else old)
    assert vectors.current() == report.collection and vectors.count(report.collection) == len(new_items)

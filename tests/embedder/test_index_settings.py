"""``milvus.index_type`` / ``index_params`` / ``search_params`` reach the collections the service builds."""

from __future__ import annotations

import io

from PIL import Image

from mofi_platform.services.embedder.indexing import build_index
from mofi_platform.services.embedder.resources import open_vectors
from tests.embedder.conftest import image_items


def test_open_vectors_builds_the_configured_index(emb_settings, holder):
    emb_settings.milvus.index_type = "IVF_FLAT"
    emb_settings.milvus.index_params = '{"nlist": 4}'
    emb_settings.milvus.search_params = '{"nprobe": 4}'
    vectors = open_vectors(emb_settings)
    try:
        assert (vectors.index_type, vectors.index_params, vectors.search_params) == (
            "IVF_FLAT",
            {"nlist": 4},
            {"nprobe": 4},
        )
        items = image_items(12)
        report = build_index(holder, vectors, items, batch_size=6)
        index = vectors.client.describe_index(report.collection, "vector")
        assert index["index_type"] == "IVF_FLAT", index  # milvus-lite does not echo the params back
        query = holder.embed_images([Image.open(io.BytesIO(items[0].image_bytes)).convert("RGB")])[0].vector
        _, hits = vectors.search(query, k=3)
        assert hits and hits[0].score > 0.99
    finally:
        vectors.close()

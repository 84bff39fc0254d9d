"""milvus-lite runs in-process on a file: insert and search real vectors."""

import numpy as np
from pymilvus import MilvusClient


def test_insert_and_search(tmp_path):
    client = MilvusClient(str(tmp_path / "m.db"))
    client.create_collection("vecs", dimension=8, metric_type="COSINE")
    rng = np.random.default_rng(0)
    vecs = rng.normal(size=(50, 8)).astype("float32")
    client.insert("vecs", [{"id": i, "vector": v.tolist(), "tag": f"t{i % 3}"} for i, v in enumerate(vecs)])
    hits = client.search("vecs", data=[vecs[17].tolist()], limit=3, output_fields=["tag"])[0]
    assert hits[0]["id"] == 17 and hits[0]["entity"]["tag"] == "t2"
    filtered = client.search("vecs", data=[vecs[17].tolist()], limit=5, filter='tag == "t0"', output_fields=["tag"])[0]
    assert filtered and all(h["entity"]["tag"] == "t0" for h in filtered)
    client.close()

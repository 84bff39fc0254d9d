"""A client generated from protos/ alone (grpc_tools.protoc into a temporary folder, run in a separate
interpreter that never imports this repository) embeds images and searches by text."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap

from tests.conftest import REPO
from tests.embedder.conftest import png

CLIENT = textwrap.dedent("""
    import json, sys
    sys.path.insert(0, sys.argv[1])
    import grpc
    import clientgen.embedder_pb2 as pb, clientgen.embedder_pb2_grpc as rpc
    assert pb.__file__.startswith(sys.argv[1])
    ch = grpc.insecure_channel(sys.argv[2])
    image = open(sys.argv[3], "rb").read()
    emb = rpc.EmbedderStub(ch).EmbedImages(pb.EmbedImagesRequest(images=[image]), timeout=30)
    res = rpc.SearchStub(ch).Search(pb.SearchRequest(text="a red ellipse", top_k=4), timeout=30)
    print(json.dumps({"dim": len(emb.embeddings[0].values), "version": emb.model_version,
                      "hits": [h.pair_id for h in res.hits], "collection": res.collection}))
""")


def test_client_from_protos_embeds_and_searches(tmp_path, server, indexed, holder):
    src = tmp_path / "src" / "clientgen"
    src.mkdir(parents=True)
    shutil.copy(REPO / "protos" / "mofi" / "v1" / "embedder.proto", src / "embedder.proto")
    out = tmp_path / "gen"
    (out / "clientgen").mkdir(parents=True)
    (out / "clientgen" / "__init__.py").write_text("")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{tmp_path / 'src'}",
            f"--python_out={out}",
            f"--grpc_python_out={out}",
            "clientgen/embedder.proto",
        ],
        check=True,
    )
    (tmp_path / "client.py").write_text(CLIENT)
    image = tmp_path / "query.png"
    image.write_bytes(png("red"))
    proc = subprocess.run(
        [sys.executable, "-I", str(tmp_path / "client.py"), str(out), f"127.0.0.1:{server.port}", str(image)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert got["dim"] == holder.dim and got["version"] == "tiny-a"
    assert len(got["hits"]) == 4 and set(got["hits"]) <= {i.pair_id for i in indexed}
    assert got["collection"].startswith("images_v")

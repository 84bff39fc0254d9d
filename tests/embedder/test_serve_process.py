"""`mofi serve embedder` as a real process: serves, reloads new weights on SIGHUP, drains on SIGTERM."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import grpc

from mofi.stack import free_port
from mofi.v1 import embedder_pb2 as pb, embedder_pb2_grpc


def _version(stub) -> str:
    return stub.EmbedTexts(pb.EmbedTextsRequest(texts=["probe"]), timeout=10).model_version


def _wait_for(pred, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = pred()
            if value:
                return value
        except grpc.RpcError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def test_serve_reloads_on_sighup_and_stops_on_sigterm(tmp_path, checkpoints):
    live = tmp_path / "live.pt"
    shutil.copy(checkpoints["a"], live)
    port = free_port()
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "MOFI_EMBEDDER_CHECKPOINT": str(live),
        "MOFI_EMBEDDER_PORT": str(port),
        "MOFI_MILVUS_URI": str(tmp_path / "m.db"),
        "MOFI_GRPC_GRACE_S": "2",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "mofi.cli", "serve", "embedder"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        stub = embedder_pb2_grpc.EmbedderStub(channel)
        assert _wait_for(lambda: _version(stub), 120, "the server") == "tiny-a"
        shutil.copy(checkpoints["b"], live)  # new weights at the same URI, then the reload signal
        proc.send_signal(signal.SIGHUP)
        assert _wait_for(lambda: _version(stub) == "tiny-b", 60, "the reload")
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    finally:
        channel.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, out
    assert "reloaded: now serving tiny-b" in out

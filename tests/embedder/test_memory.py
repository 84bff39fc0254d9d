"""A served embedder's memory under decompression bombs and the largest requests it accepts.

`mofi serve embedder` runs as its own process with the default image caps, so its resident size
(``/proc/<pid>/status``) is the server's alone: its peak during a request (VmHWM, reset before each
request) and its size after it, which must come back.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
from PIL import Image

from mofi.settings import Settings
from mofi.stack import free_port
from mofi.v1 import embedder_pb2 as pb, embedder_pb2_grpc

MiB = 1024 * 1024
DEFAULTS = Settings().embedder


def _png(mode: str, side: int) -> bytes:
    buf = io.BytesIO()
    Image.new(mode, (side, side), 1 if mode == "1" else "white").save(buf, "PNG", optimize=True)
    return buf.getvalue()


def _status(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def _settled_rss(pid: int) -> int:
    """The resident size once it stops falling (freed memory is unmapped as the request unwinds)."""
    rss = _status(pid, "VmRSS")
    for _ in range(20):
        time.sleep(0.25)
        now = _status(pid, "VmRSS")
        if now >= rss - MiB:
            return now
        rss = now
    return rss


@pytest.fixture(scope="module")
def served(tmp_path_factory, checkpoints):
    port = free_port()
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "MOFI_EMBEDDER_CHECKPOINT": checkpoints["a"],
        "MOFI_EMBEDDER_PORT": str(port),
        "MOFI_MILVUS_URI": str(tmp_path_factory.mktemp("milvus") / "m.db"),
        "MOFI_GRPC_GRACE_S": "1",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "mofi.cli", "serve", "embedder"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    stub = embedder_pb2_grpc.EmbedderStub(channel)
    try:
        grpc.channel_ready_future(channel).result(timeout=120)
        stub.EmbedImages(pb.EmbedImagesRequest(images=[_png("RGB", 64)]), timeout=60)  # warm: model and threads
        yield proc.pid, stub
    finally:
        channel.close()
        proc.terminate()
        proc.wait(timeout=30)


def _measure(pid: int, call, what: str) -> tuple[int, int, object]:
    """(peak growth, growth left after, the call's result or its RpcError); printed (``pytest -s``)."""
    before = _settled_rss(pid)
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # reset VmHWM to the current size
    try:
        result = call()
    except grpc.RpcError as e:
        result = e
    peak, left = _status(pid, "VmHWM") - before, _settled_rss(pid) - before
    print(f"{what}: RSS {before / MiB:.0f} MiB before, peak +{peak / MiB:.1f} MiB, +{left / MiB:.1f} MiB after")
    return peak, left, result


def test_ten_one_bit_bombs_in_one_request_are_refused_without_decoding(served):
    pid, stub = served
    bomb = _png("1", 6300)  # a few kilobytes, 39.7 megapixels: under the pixel cap, over the decode-memory cap
    assert len(bomb) < 64 * 1024 and Settings().embedder.max_pixels > 6300 * 6300
    ten = pb.EmbedImagesRequest(images=[bomb] * 10)
    peak, left, err = _measure(pid, lambda: stub.EmbedImages(ten, timeout=60), "ten 1-bit 6300x6300 PNGs")
    assert isinstance(err, grpc.RpcError) and err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "image 0:" in err.details() and "bytes to decode" in err.details(), err.details()
    assert peak < 50 * MiB and left < 20 * MiB, (peak, left)


def test_largest_accepted_requests_stay_bounded_and_memory_returns(served):
    pid, stub = served
    side = 4000  # RGB: 64,000,000 bytes loaded, just under the per-image cap of 64 MiB
    big = _png("RGB", side)
    per_request = DEFAULTS.max_request_decoded_bytes // (side * side * 4)
    assert per_request == 4
    request = pb.EmbedImagesRequest(images=[big] * per_request)

    def four_clients():
        with ThreadPoolExecutor(4) as pool:
            return [r.result() for r in [pool.submit(stub.EmbedImages, request, timeout=120) for _ in range(4)]]

    peak, left, results = _measure(pid, four_clients, "4 clients x 4 RGB 4000x4000 PNGs")
    assert not isinstance(results, grpc.RpcError), results
    assert all(len(r.embeddings) == per_request for r in results)
    assert peak < 300 * MiB, f"peak growth {peak / MiB:.0f} MiB"
    assert left < 30 * MiB, f"{left / MiB:.0f} MiB not returned"

    over = pb.EmbedImagesRequest(images=[big] * (per_request + 1))
    peak, left, err = _measure(pid, lambda: stub.EmbedImages(over, timeout=120), "one request over its budget")
    assert isinstance(err, grpc.RpcError) and err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"image {per_request}: the request's images need more than" in err.details(), err.details()
    assert peak < 300 * MiB and left < 30 * MiB, (peak, left)

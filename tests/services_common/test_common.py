"""Shared service scaffolding: image decoding caps, dynamic batching, the gRPC server contract."""

from __future__ import annotations

import io
import threading
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from PIL import Image
from prometheus_client import REGISTRY

from mofi.settings import GrpcSettings
from mofi_platform.services.common.batching import DynamicBatcher
from mofi_platform.services.common.errors import InvalidInput
from mofi_platform.services.common.images import decode_image
from mofi_platform.services.common.server import serve

SERVICE = "test.Echo"


def _png(w: int, h: int) -> bytes:
    buf = io.BytesIO()
    Image.new("L", (w, h), 7).save(buf, "PNG")
    return buf.getvalue()


def test_decode_image_accepts_and_rejects():
    assert decode_image(_png(4, 3), 10_000, 100).size == (4, 3)
    assert decode_image(_png(4, 3), 10_000, 100).mode == "RGB"
    for data, max_bytes, max_pixels, words in [
        (b"", 100, 100, "empty"),
        (_png(4, 3), 10, 100, "bytes"),
        (_png(40, 30), 10_000, 100, "pixels"),
        (b"\x89PNG not really", 100, 100, "cannot decode"),
    ]:
        with pytest.raises(InvalidInput, match=words):
            decode_image(data, max_bytes, max_pixels)


def test_batcher_merges_concurrent_calls_and_isolates_errors():
    calls = []

    def fn(items):
        calls.append(list(items))
        if "boom" in items:
            raise ValueError("boom")
        return [i * 2 for i in items]

    batcher = DynamicBatcher(fn, max_batch=8, max_wait_ms=50)
    futs = [batcher.submit(i) for i in range(20)]
    assert [f.result(5) for f in futs] == [i * 2 for i in range(20)]
    assert max(len(c) for c in calls) == 8 and len(calls) < 20
    bad = batcher.submit("boom")
    with pytest.raises(ValueError):
        bad.result(5)
    assert batcher.submit(3).result(5) == 6  # the worker survived
    batcher.close(5)


def _handlers(release: threading.Event):
    def echo(request: bytes, context):
        if request == b"bad":
            raise InvalidInput("bad is not allowed")
        if request == b"slow":
            release.wait(10)
        return request

    return grpc.method_handlers_generic_handler(SERVICE, {"Echo": grpc.unary_unary_rpc_method_handler(echo)})


@pytest.fixture()
def echo_server():
    release = threading.Event()
    running = serve(
        [(lambda svc, server: server.add_generic_rpc_handlers((svc,)), _handlers(release))],
        [SERVICE],
        0,
        GrpcSettings(max_message_bytes=1024),
    )
    channel = grpc.insecure_channel(f"127.0.0.1:{running.port}")
    yield running, channel, release
    release.set()
    channel.close()
    running.stop(0)


def test_server_health_reflection_errors_limits_and_drain(echo_server):
    running, channel, release = echo_server
    echo = channel.unary_unary(f"/{SERVICE}/Echo")
    assert echo(b"hi", timeout=5) == b"hi"
    status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=SERVICE), timeout=5)
    assert status.status == health_pb2.HealthCheckResponse.SERVING
    reply = next(
        reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
        )
    )
    assert SERVICE in {s.name for s in reply.list_services_response.service}

    with pytest.raises(grpc.RpcError) as e:
        echo(b"bad", timeout=5)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "bad is not allowed" in e.value.details()
    assert (
        REGISTRY.get_sample_value("mofi_grpc_errors_total", {"method": f"/{SERVICE}/Echo", "code": "INVALID_ARGUMENT"})
        >= 1
    )
    with pytest.raises(grpc.RpcError) as e:
        echo(b"x" * 4096, timeout=5)
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED

    slow = echo.future(b"slow", timeout=10)
    time.sleep(0.2)
    stopper = threading.Thread(target=running.stop, args=(5,))
    stopper.start()
    time.sleep(0.2)
    release.set()
    assert slow.result() == b"slow"  # the in-flight call was drained, not cut
    stopper.join(5)
    with pytest.raises(grpc.RpcError):
        echo(b"after", timeout=1)


def test_decoder_caps_decode_memory_per_image_per_request_and_in_flight():
    from mofi_platform.services.common.images import ImageDecoder

    one_bit = io.BytesIO()
    Image.new("1", (2000, 2000), 1).save(one_bit, "PNG")
    bomb = one_bit.getvalue()  # 4 MB loaded, 4 MB more as L before reducing
    decoder = ImageDecoder(1 << 20, 10_000_000, max_decoded_bytes=6_000_000)
    with pytest.raises(InvalidInput, match=r"2000x2000 pixels in mode 1 needs 8\d{6} bytes to decode"):
        decoder.decode(bomb, image_size=32)
    rgb = io.BytesIO()
    Image.new("RGB", (1000, 1000), "red").save(rgb, "PNG")
    # 4 MB loaded each: two fit a request of 9 MB, the third does not
    decoder = ImageDecoder(
        1 << 20, 10_000_000, 6_000_000, max_request_decoded_bytes=9_000_000, in_flight_bytes=5_000_000
    )
    request = decoder.request()
    for _ in range(2):
        assert decoder.decode(rgb.getvalue(), 32, request).size == (
            67,
            67,
        )  # reduced 15x: the shorter side stays >= 2 x 32
    with pytest.raises(InvalidInput, match="request's images need more than 9000000 bytes"):
        decoder.decode(rgb.getvalue(), 32, request)
    assert decoder.decode(rgb.getvalue(), 32, decoder.request()).size == (67, 67)  # a new request starts afresh
    assert decoder.in_flight is not None and decoder.in_flight.in_flight == 0  # every hold was given back
    small = ImageDecoder(1 << 20, 10_000_000, in_flight_bytes=1_000_000)
    with pytest.raises(InvalidInput, match="process allows 1000000 in flight"):
        small.decode(rgb.getvalue(), 32)


def test_decode_budget_makes_concurrent_decodes_wait_for_room():
    from mofi.images import DecodeBudget

    budget = DecodeBudget(10)
    order = []

    def second():
        with budget.hold(5):
            order.append("second")

    with budget.hold(7):
        waiter = threading.Thread(target=second)
        waiter.start()
        time.sleep(0.2)
        order.append("first done")
    waiter.join(timeout=10)
    assert not waiter.is_alive() and order == ["first done", "second"] and budget.in_flight == 0

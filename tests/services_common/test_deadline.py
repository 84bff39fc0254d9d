"""A handler's wait for its batched result, on a real gRPC server: unbounded without a deadline, cut off
(and withdrawn from the batch) with DEADLINE_EXCEEDED past one."""

from __future__ import annotations

import threading
from concurrent import futures
from concurrent.futures import Future

import grpc
import pytest

from mofi_platform.services.common.deadline import result_within_deadline

METHOD = "/test.Wait/Wait"


@pytest.fixture()
def waiting_server():
    """Each call waits on a fresh Future; the test completes it (or not) through ``pending``."""
    pending: list[Future] = []
    arrived = threading.Event()

    def wait(request: bytes, context) -> bytes:
        fut: Future = Future()
        pending.append(fut)
        arrived.set()
        return result_within_deadline(fut, context)

    server = grpc.server(futures.ThreadPoolExecutor(2))
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("test.Wait", {"Wait": grpc.unary_unary_rpc_method_handler(wait)}),)
    )
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield channel.unary_unary(METHOD), pending, arrived
    server.stop(0)


def test_without_a_deadline_the_call_waits_for_its_result(waiting_server):
    call, pending, arrived = waiting_server
    answer = call.future(b"")  # no timeout: gRPC reports centuries remaining, which no timed wait accepts
    assert arrived.wait(10)
    pending[0].set_result(b"done")
    assert answer.result(timeout=10) == b"done"


def test_past_the_deadline_the_call_ends_and_leaves_its_batch(waiting_server):
    call, pending, arrived = waiting_server
    with pytest.raises(grpc.RpcError) as e:
        call(b"", timeout=0.5)
    assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert arrived.wait(10)
    withdrawn = threading.Event()
    pending[0].add_done_callback(lambda fut: withdrawn.set())  # runs at once if already cancelled
    assert withdrawn.wait(10) and pending[0].cancelled()

"""Per-method Prometheus metrics and the InvalidInput -> INVALID_ARGUMENT mapping, as one interceptor.

Why an interceptor: every servicer of every service gets the same request/latency/error metrics and
the same error contract without a line of code in the servicer.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from contextlib import contextmanager

import grpc
from prometheus_client import Counter, Histogram, start_http_server

from mofi_platform.services.common.errors import InvalidInput

__all__ = ["MetricsInterceptor", "start_metrics_server", "REQUESTS", "ERRORS", "LATENCY"]

REQUESTS = Counter("mofi_grpc_requests_total", "gRPC calls started", ["method"])
ERRORS = Counter("mofi_grpc_errors_total", "gRPC calls that ended with a non-OK status", ["method", "code"])
LATENCY = Histogram(
    "mofi_grpc_latency_seconds",
    "gRPC call duration",
    ["method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)

_metrics_lock = threading.Lock()
_metrics_port: int | None = None


def start_metrics_server(port: int, host: str = "0.0.0.0") -> int | None:
    """Expose /metrics once per process (several servers share the default registry); 0 disables."""
    global _metrics_port
    with _metrics_lock:
        if port and _metrics_port is None:
            start_http_server(port, addr=host)
            _metrics_port = port
        return _metrics_port


def _finish(method: str, start: float, context: grpc.ServicerContext, error: BaseException | None) -> None:
    LATENCY.labels(method).observe(time.perf_counter() - start)
    code = context.code() if hasattr(context, "code") else None
    if error is not None and code in (None, grpc.StatusCode.OK):
        code = grpc.StatusCode.UNKNOWN
    if code not in (None, grpc.StatusCode.OK):
        ERRORS.labels(method, code.name).inc()


class _Undecodable:
    """Stands in for a request whose bytes did not parse (e.g. a string field that is not UTF-8), so the
    caller gets INVALID_ARGUMENT with the reason instead of grpc's generic INTERNAL."""

    def __init__(self, error: Exception):
        self.reason = f"request does not parse: {error}"


def _tolerant(deserializer: Callable | None) -> Callable | None:
    if deserializer is None:
        return None

    def parse(data: bytes):
        try:
            return deserializer(data)
        except Exception as e:  # protobuf raises DecodeError, or others from the C runtime
            return _Undecodable(e)

    return parse


def _checked(request_or_iterator, streaming_request: bool):
    if not streaming_request:
        if isinstance(request_or_iterator, _Undecodable):
            raise InvalidInput(request_or_iterator.reason)
        return request_or_iterator

    def items():
        for i, item in enumerate(request_or_iterator):
            if isinstance(item, _Undecodable):
                raise InvalidInput(f"message {i}: {item.reason}")
            yield item

    return items()


@contextmanager
def _observed(method: str, context: grpc.ServicerContext):
    """Count the call, time it, record its status; InvalidInput becomes INVALID_ARGUMENT."""
    REQUESTS.labels(method).inc()
    start, error = time.perf_counter(), None
    try:
        yield
    except InvalidInput as e:
        error = e
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, e.reason)
    except BaseException as e:
        error = e
        raise
    finally:
        _finish(method, start, context, error)


def _call(behavior: Callable, method: str, streaming_request: bool, streaming_response: bool) -> Callable:
    def unary(request_or_iterator, context):
        with _observed(method, context):
            return behavior(_checked(request_or_iterator, streaming_request), context)

    def streaming(request_or_iterator, context):
        with _observed(method, context):
            yield from behavior(_checked(request_or_iterator, streaming_request), context)

    return streaming if streaming_response else unary


class MetricsInterceptor(grpc.ServerInterceptor):
    """Counts calls, errors by status code and latency per method; InvalidInput and unparseable
    requests -> INVALID_ARGUMENT with the reason."""

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        for kind, factory in (
            ("unary_unary", grpc.unary_unary_rpc_method_handler),
            ("unary_stream", grpc.unary_stream_rpc_method_handler),
            ("stream_unary", grpc.stream_unary_rpc_method_handler),
            ("stream_stream", grpc.stream_stream_rpc_method_handler),
        ):
            behavior = getattr(handler, kind)
            if behavior is not None:
                return factory(
                    _call(behavior, method, handler.request_streaming, handler.response_streaming),
                    request_deserializer=_tolerant(handler.request_deserializer),
                    response_serializer=handler.response_serializer,
                )
        return handler

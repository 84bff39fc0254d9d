"""Per-method Prometheus metrics and the InvalidInput -> INVALID_ARGUMENT mapping, as one interceptor; the
process's HTTP endpoint: ``/metrics`` and the liveness check ``/healthz``.

Why an interceptor: every servicer of every service gets the same request/latency/error metrics and
the same error contract without a line of code in the servicer.

Why ``/healthz`` beside ``/metrics``: the metrics endpoint answers from its own thread even when a Kafka
stage's consumer loop is stuck, so it cannot serve as a liveness probe. The loop calls
:meth:`Heartbeat.beat` every turn (also while it waits out a broker or S3 outage, which a restart would
not cure); ``/healthz`` answers 503 once the last beat is older than the loop's stall limit.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from wsgiref.simple_server import WSGIRequestHandler, make_server

import grpc
from prometheus_client import Counter, Histogram, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

from mofi_platform.services.common.errors import InvalidInput

__all__ = ["MetricsInterceptor", "start_metrics_server", "Heartbeat", "HEARTBEAT", "REQUESTS", "ERRORS", "LATENCY"]

REQUESTS = Counter("mofi_grpc_requests_total", "gRPC calls started", ["method"])
ERRORS = Counter("mofi_grpc_errors_total", "gRPC calls that ended with a non-OK status", ["method", "code"])
LATENCY = Histogram(
    "mofi_grpc_latency_seconds",
    "gRPC call duration",
    ["method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


class Heartbeat:
    """When a loop last turned, and how long it may go without turning before the process counts as stuck."""

    def __init__(self) -> None:
        self._last: float | None = None
        self._stall_s = 0.0

    def watch(self, stall_s: float) -> None:
        """Start judging liveness: from now on the loop must beat at least every ``stall_s`` seconds."""
        self._stall_s = stall_s
        self.beat()

    def beat(self) -> None:
        self._last = time.monotonic()

    def unwatch(self) -> None:
        """The loop ended (the process is stopping): no longer judged."""
        self._last = None

    def check(self) -> tuple[bool, str]:
        """(alive, why); alive while nothing is watched (a gRPC server, a stage still starting)."""
        if self._last is None:
            return True, "no loop watched"
        age = time.monotonic() - self._last
        if age > self._stall_s:
            return False, f"loop stuck: last turn {age:.0f} s ago (limit {self._stall_s:.0f} s)"
        return True, f"loop turned {age:.1f} s ago"


#: The process's one watched loop (a process runs one Kafka stage).
HEARTBEAT = Heartbeat()


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):  # probes every few seconds would flood the log
        pass


def _app(metrics: Callable) -> Callable:
    def app(environ, start_response):
        if environ.get("PATH_INFO") == "/healthz":
            alive, why = HEARTBEAT.check()
            start_response("200 OK" if alive else "503 Service Unavailable", [("Content-Type", "text/plain")])
            return [why.encode() + b"\n"]
        return metrics(environ, start_response)

    return app


_metrics_lock = threading.Lock()
_metrics_port: int | None = None


def start_metrics_server(port: int, host: str = "0.0.0.0") -> int | None:
    """Serve /metrics and /healthz once per process (several servers share the default registry); 0 disables."""
    global _metrics_port
    with _metrics_lock:
        if port and _metrics_port is None:
            httpd = make_server(host, port, _app(make_wsgi_app()), ThreadingWSGIServer, handler_class=_QuietHandler)
            threading.Thread(target=httpd.serve_forever, name="metrics", daemon=True).start()
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

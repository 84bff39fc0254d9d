"""A gRPC handler waits for its batched result no longer than its caller's deadline.

Why shared: every model service hands a request to a :class:`DynamicBatcher` and waits on the Future.
gRPC reports a call without a deadline as centuries remaining, which no timed wait accepts
(``OverflowError``), so the wait is bounded only when the caller set a deadline. Past it, the request
is withdrawn from its batch and the caller gets DEADLINE_EXCEEDED.
"""

from __future__ import annotations

from concurrent.futures import Future, TimeoutError as FutureTimeout
from typing import Any

import grpc

__all__ = ["NO_DEADLINE_S", "wait_timeout", "deadline_passed", "result_within_deadline"]

#: A remaining time above this is a call without a deadline. gRPC reports such a call's time
#: remaining as centuries (its deadline is "infinite future"), which no timed wait accepts
#: (``OverflowError: timeout value is too large``).
NO_DEADLINE_S = 1e6


def wait_timeout(context: grpc.ServicerContext) -> float | None:
    """How long a handler may wait for its result: the caller's time remaining, or None without a deadline."""
    remaining = context.time_remaining()
    if remaining is None or remaining > NO_DEADLINE_S:
        return None
    return max(float(remaining), 0.0)


def deadline_passed(fut: Future, context: grpc.ServicerContext) -> None:
    """Withdraw the request from its batch and end the call with DEADLINE_EXCEEDED (``abort`` raises)."""
    fut.cancel()
    context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "deadline passed while waiting for the model")


def result_within_deadline(fut: Future, context: grpc.ServicerContext) -> Any:
    """The Future's result, waited for within the caller's deadline (see :func:`deadline_passed`)."""
    try:
        return fut.result(timeout=wait_timeout(context))
    except FutureTimeout:
        deadline_passed(fut, context)

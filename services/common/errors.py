"""The error a caller's bad input raises, whatever the input (an image, a text, a record).

Why its own module: the gRPC interceptor maps it to INVALID_ARGUMENT for every service, and image
decoding, text checks and request validation all raise it; none of them should have to import the
others to do so.
"""

from __future__ import annotations

__all__ = ["InvalidInput"]


class InvalidInput(ValueError):
    """The caller's input cannot be processed; ``reason`` says why (sent back as INVALID_ARGUMENT)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason

"""Decoding a caller's image bytes under the service's caps, as :class:`InvalidInput` on failure.

Why a wrapper: the guarded decoder is the core's (:func:`mofi.images.decode_rgb`); a service
reports a refused image the way it reports any bad input, so the gRPC interceptor answers
INVALID_ARGUMENT and a Kafka stage dead-letters the record with the same reason.

Why a decoder object: a server decodes in many handler threads at once. One :class:`ImageDecoder`
per process holds the decode memory allowed in flight across them, and :meth:`ImageDecoder.request`
gives each call its own tally on top, so a request of many images that each pass the per-image cap
is still refused once their decode memory together exceeds the request's share. Images are decoded
reduced to about the model's input size (:data:`REDUCING_GAP`): a large photo never exists at full
size in RGB, and the model sees the same picture.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

from PIL import Image

from mofi.images import Budget, DecodeBudget, ImageRejected, decode_rgb
from mofi_platform.services.common.errors import InvalidInput

__all__ = ["REDUCING_GAP", "ImageDecoder", "RequestBudget", "decode_image"]

#: Images are decoded reduced while their shorter side stays at least this many times the model's
#: input size; the model's own (antialiased) resize does the rest. Two is Pillow's ``reducing_gap``
#: default for thumbnails; the embeddings agree with a full-size decode (tests/services_common).
REDUCING_GAP = 2


class DecodeLimits(Protocol):
    """The settings a decoder is made from (``settings.embedder`` and ``settings.scorer`` have them)."""

    max_image_bytes: int
    max_decoded_bytes: int
    max_request_decoded_bytes: int
    decode_in_flight_bytes: int


class RequestBudget:
    """One request's decode memory, at most ``limit`` bytes in all, each decode also held in ``process``."""

    def __init__(self, process: Budget | None, limit: int) -> None:
        self.process = process
        self.limit = limit
        self.spent = 0

    @contextmanager
    def hold(self, nbytes: int) -> Iterator[None]:
        self.spent += nbytes
        if self.limit and self.spent > self.limit:
            raise ImageRejected(
                "request_too_large",
                f"the request's images need more than {self.limit} bytes to decode; send fewer or smaller images",
            )
        if self.process is None:
            yield
            return
        with self.process.hold(nbytes):
            yield


class ImageDecoder:
    """A service's caps on the images callers send; thread-safe, one per process."""

    def __init__(
        self,
        max_bytes: int,
        max_pixels: int,
        max_decoded_bytes: int = 0,
        max_request_decoded_bytes: int = 0,
        in_flight_bytes: int = 0,
    ) -> None:
        self.max_bytes = max_bytes
        self.max_pixels = max_pixels
        self.max_decoded_bytes = max_decoded_bytes
        self.max_request_decoded_bytes = max_request_decoded_bytes
        self.in_flight = DecodeBudget(in_flight_bytes) if in_flight_bytes else None

    @classmethod
    def of(cls, cfg: DecodeLimits, max_pixels: int) -> ImageDecoder:
        return cls(
            cfg.max_image_bytes,
            max_pixels,
            cfg.max_decoded_bytes,
            cfg.max_request_decoded_bytes,
            cfg.decode_in_flight_bytes,
        )

    def request(self) -> RequestBudget:
        """The tally of one call's decodes (pass it to every :meth:`decode` of that call)."""
        return RequestBudget(self.in_flight, self.max_request_decoded_bytes)

    def decode(self, data: bytes, image_size: int = 0, request: RequestBudget | None = None) -> Image.Image:
        """Encoded image bytes -> RGB PIL image for a model of ``image_size`` px (0: full size), or
        :class:`InvalidInput` with the reason."""
        try:
            return decode_rgb(
                data,
                max_bytes=self.max_bytes,
                max_pixels=self.max_pixels,
                max_decoded_bytes=self.max_decoded_bytes,
                min_side=REDUCING_GAP * image_size,
                budget=request if request is not None else self.in_flight,
            )
        except ImageRejected as e:
            raise InvalidInput(str(e)) from None


def decode_image(data: bytes, max_bytes: int, max_pixels: int, image_size: int = 0) -> Image.Image:
    """One image under a byte and a pixel cap (offline tools and benchmarks), or :class:`InvalidInput`."""
    return ImageDecoder(max_bytes, max_pixels).decode(data, image_size)

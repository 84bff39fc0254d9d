"""Decoding a caller's image bytes under the service's caps, as :class:`InvalidInput` on failure.

Why a wrapper: the guarded decoder is the core's (:func:`mofi.images.decode_rgb`); a service
reports a refused image the way it reports any bad input, so the gRPC interceptor answers
INVALID_ARGUMENT and a Kafka stage dead-letters the record with the same reason.
"""

from __future__ import annotations

from PIL import Image

from mofi.images import ImageRejected, decode_rgb
from mofi_platform.services.common.errors import InvalidInput

__all__ = ["decode_image"]


def decode_image(data: bytes, max_bytes: int, max_pixels: int) -> Image.Image:
    """Encoded image bytes -> RGB PIL image, or :class:`InvalidInput` with the reason."""
    try:
        return decode_rgb(data, max_bytes=max_bytes, max_pixels=max_pixels)
    except ImageRejected as e:
        raise InvalidInput(str(e)) from None

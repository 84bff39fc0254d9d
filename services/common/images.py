"""Decoding untrusted image bytes with size and pixel caps.

Why caps before decoding: a few kilobytes of PNG can expand to gigabytes of pixels (decompression
bombs); the header gives the size before any pixel is decoded, so the check costs nothing.
"""

from __future__ import annotations

import io
import warnings

from PIL import Image, UnidentifiedImageError

__all__ = ["InvalidInput", "decode_image"]


class InvalidInput(ValueError):
    """The caller's input cannot be processed; ``reason`` says why (sent back as INVALID_ARGUMENT)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def decode_image(data: bytes, max_bytes: int, max_pixels: int) -> Image.Image:
    """Encoded image bytes -> RGB PIL image, or :class:`InvalidInput` with the reason."""
    if not data:
        raise InvalidInput("empty image")
    if len(data) > max_bytes:
        raise InvalidInput(f"image of {len(data)} bytes exceeds the limit of {max_bytes} bytes")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            pixels = image.width * image.height
            if pixels > max_pixels:
                raise InvalidInput(f"image of {image.width}x{image.height} pixels exceeds the limit of {max_pixels}")
            image.load()
            return image.convert("RGB")
    except InvalidInput:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError,
            Image.DecompressionBombWarning) as e:
        raise InvalidInput(f"cannot decode image: {e}") from None

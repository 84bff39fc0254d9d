"""Untrusted image bytes -> a bounded RGB image, and RGB images -> small JPEG thumbnails.

Why one guarded decoder: every process that opens an image it did not make (the corpus builder, the
scorer, the embedder, training, the report) faces the same inputs: empty or corrupt files, CMYK and
palette modes, and decompression bombs, a few kilobytes that expand to gigabytes of pixels. The
header gives the size before any pixel is decoded, so the caps cost nothing; every failure is one
:class:`ImageRejected` whose ``reason`` is a short countable label and whose message says why.
"""

from __future__ import annotations

import io
import warnings

from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

__all__ = ["ImageRejected", "WHITE", "decode_rgb", "flatten", "thumbnail_jpeg"]

ImageFile.LOAD_TRUNCATED_IMAGES = False

#: The usual background for transparent pixels (drawings and emoji are mostly alpha).
WHITE = (255, 255, 255)

_DECODE_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError)


class ImageRejected(ValueError):
    """Bytes that cannot become an image within the caps.

    ``reason`` is one of ``empty_file``, ``too_many_bytes``, ``too_many_pixels``, ``unreadable`` (the
    header does not parse) and ``corrupt`` (the pixels do not decode); ``str(e)`` is the whole reason.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def flatten(image: Image.Image, background: tuple[int, int, int] | None = None) -> Image.Image:
    """Any mode -> RGB; with ``background``, transparent pixels are composited onto it."""
    if background is not None and (
        image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info)
    ):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, background)
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    return image.convert("RGB")


def decode_rgb(
    data: bytes,
    *,
    max_pixels: int,
    max_bytes: int = 0,
    draft: int = 0,
    background: tuple[int, int, int] | None = None,
    upright: bool = False,
) -> Image.Image:
    """Encoded bytes -> RGB PIL image, or :class:`ImageRejected`.

    ``max_bytes`` (> 0) bounds the encoded size and ``max_pixels`` the decoded one, both checked
    before any pixel is decoded; ``draft`` lets a JPEG decode at a reduced scale no smaller than
    ``draft`` px; ``background`` flattens alpha onto that colour (else alpha is dropped); ``upright``
    applies the EXIF orientation.
    """
    if not data:
        raise ImageRejected("empty_file", "empty image")
    if max_bytes and len(data) > max_bytes:
        raise ImageRejected("too_many_bytes", f"image of {len(data)} bytes exceeds the limit of {max_bytes} bytes")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            im = Image.open(io.BytesIO(data))
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise ImageRejected("too_many_pixels", f"cannot decode image: {e}") from None
        except _DECODE_ERRORS as e:
            raise ImageRejected("unreadable", f"cannot decode image: {e}") from None
        with im:
            if im.width * im.height > max_pixels:
                raise ImageRejected(
                    "too_many_pixels", f"image of {im.width}x{im.height} pixels exceeds the limit of {max_pixels}"
                )
            try:
                if draft:
                    im.draft("RGB", (draft, draft))
                im.load()
                return flatten(ImageOps.exif_transpose(im) if upright else im, background)
            except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
                raise ImageRejected("too_many_pixels", f"cannot decode image: {e}") from None
            except _DECODE_ERRORS as e:
                raise ImageRejected("corrupt", f"cannot decode image: {e}") from None


def thumbnail_jpeg(image: Image.Image, side: int, quality: int = 80) -> bytes:
    """A JPEG of ``image`` scaled (never up) to fit ``side`` x ``side``; ``image`` itself is left as it is."""
    thumb = image.copy()
    thumb.thumbnail((side, side), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    thumb.save(buf, "JPEG", quality=quality, optimize=True)
    return buf.getvalue()

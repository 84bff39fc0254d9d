"""Untrusted image bytes -> a bounded RGB image, and RGB images -> small JPEG thumbnails.

Why one guarded decoder: every process that opens an image it did not make (the corpus builder, the
scorer, the embedder, training, the report) faces the same inputs: empty or corrupt files, CMYK and
palette modes, and decompression bombs, a few kilobytes that expand to gigabytes of pixels. The
header gives the size before any pixel is decoded, so the caps cost nothing; every failure is one
:class:`ImageRejected` whose ``reason`` is a short countable label and whose message says why.

Why decode at a minimum side: a model resizes every image to its input size anyway, so a caller that
names that size (``min_side``) gets a JPEG decoded at a reduced DCT scale and any other format
box-reduced by an integer factor right after loading, before the full-size RGB copy that flattening
would make. The working memory of a decode (the loaded pixels plus any full-size conversion) is
known from the header too, so it is capped per image (``max_decoded_bytes``) and, across threads,
by a :class:`DecodeBudget`. Memory freed by a large decode goes back to the system (glibc otherwise
keeps it in the decoding thread's arena, and a server that once decoded a bomb would stay that large):
Pillow's pixel blocks are made larger than glibc's highest ``mmap`` threshold (32 MiB), so a large
image is mapped on its own and unmapped when freed, and after a decode of :data:`TRIM_FROM_BYTES`
or more the free heap memory is trimmed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import io
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Protocol

from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

__all__ = [
    "ImageRejected",
    "WHITE",
    "DecodeBudget",
    "Budget",
    "decode_rgb",
    "decoded_bytes",
    "flatten",
    "thumbnail_jpeg",
]

ImageFile.LOAD_TRUNCATED_IMAGES = False

#: The usual background for transparent pixels (drawings and emoji are mostly alpha).
WHITE = (255, 255, 255)

_DECODE_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError)

#: A decode whose working memory reaches this many bytes hands the freed memory back to the system.
TRIM_FROM_BYTES = 8 * 1024 * 1024
#: Pillow's largest pixel block: above glibc's highest dynamic mmap threshold (32 MiB), so a block of
#: a large image is always mapped on its own (Pillow's default, 16 MiB, lands in the heap).
PIXEL_BLOCK_BYTES = 64 * 1024 * 1024
Image.core.set_block_size(PIXEL_BLOCK_BYTES)


class ImageRejected(ValueError):
    """Bytes that cannot become an image within the caps.

    ``reason`` is one of ``empty_file``, ``too_many_bytes``, ``too_many_pixels``,
    ``too_many_decoded_bytes`` (the decode would need more memory than allowed), ``request_too_large``
    (a caller's budget for several images is spent), ``unreadable`` (the
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


class Budget(Protocol):
    """Something that admits a decode of ``nbytes`` working memory for the duration of a ``with``."""

    def hold(self, nbytes: int) -> AbstractContextManager[None]: ...


class DecodeBudget:
    """At most ``capacity`` bytes of decode working memory in flight across threads; a decode waits for room.

    A single decode larger than the whole budget can never fit and is refused at once.
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("a decode budget needs a positive capacity")
        self.capacity = capacity
        self.in_flight = 0
        self._room = threading.Condition()

    @contextmanager
    def hold(self, nbytes: int) -> Iterator[None]:
        if nbytes > self.capacity:
            raise ImageRejected(
                "too_many_decoded_bytes",
                f"image needs {nbytes} bytes to decode; the process allows {self.capacity} in flight",
            )
        with self._room:
            self._room.wait_for(lambda: self.in_flight + nbytes <= self.capacity)
            self.in_flight += nbytes
        try:
            yield
        finally:
            with self._room:
                self.in_flight -= nbytes
                self._room.notify_all()


def _pixel_bytes(mode: str) -> int:
    """Bytes per pixel in Pillow's storage (3-band modes are stored in 4 bytes)."""
    if mode in ("1", "L", "P"):
        return 1
    return 2 if mode.startswith("I;16") else 4


def decoded_bytes(mode: str, width: int, height: int, factor: int = 1) -> int:
    """Working memory of decoding a ``mode`` image of ``width`` x ``height`` and reducing it by ``factor``.

    The loaded pixels, the full-size copy made before reducing (``1`` -> ``L``, anything but ``L`` and
    ``RGB`` flattened to RGB) or, without a reduction, the RGB copy flattening makes, and the reduced image.
    """
    full = width * height
    if factor > 1:
        convert = full if mode == "1" else 0 if mode in ("L", "RGB") else 4 * full
        return full * _pixel_bytes(mode) + convert + 8 * (width // factor) * (height // factor)
    return full * (_pixel_bytes(mode) + 4)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    libc = ctypes.util.find_library("c")
    return getattr(ctypes.CDLL(libc), "malloc_trim", None) if libc else None


def _release_freed_memory() -> None:
    """Return free heap memory of every thread's arena to the system (glibc; elsewhere a no-op).

    glibc keeps memory freed by a thread for that thread's later allocations; a trim hands it back.
    Only after large decodes (:data:`TRIM_FROM_BYTES`): a trim costs more than decoding a small image.
    (A fixed ``mmap`` threshold instead would unmap torch's tensors of the same sizes after every
    forward pass: the embedder served four times fewer images with one at 8 MiB.)
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def _shrink(im: Image.Image, factor: int, background: tuple[int, int, int] | None) -> Image.Image:
    """Box-reduce by ``factor`` (in a mode ``reduce`` takes, compositing alpha first), then flatten."""
    if factor > 1:
        if im.mode == "1":
            im = im.convert("L")
        elif im.mode not in ("L", "RGB"):
            im = flatten(im, background)
        im = im.reduce(factor)
    return flatten(im, background)


def decode_rgb(
    data: bytes,
    *,
    max_pixels: int,
    max_bytes: int = 0,
    max_decoded_bytes: int = 0,
    min_side: int = 0,
    budget: Budget | None = None,
    background: tuple[int, int, int] | None = None,
    upright: bool = False,
) -> Image.Image:
    """Encoded bytes -> RGB PIL image, or :class:`ImageRejected`.

    ``max_bytes`` (> 0) bounds the encoded size, ``max_pixels`` the image's pixels and
    ``max_decoded_bytes`` (> 0) the working memory of the decode (:func:`decoded_bytes`), all checked
    before any pixel is decoded; ``budget`` admits the decode's working memory while it runs.
    ``min_side`` (> 0) decodes at reduced scale while the shorter side stays at least ``min_side`` px
    (a JPEG in its DCT, other formats by an integer box reduction); ``background`` flattens alpha onto
    that colour (else alpha is dropped); ``upright`` applies the EXIF orientation.
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
            if min_side:
                im.draft("RGB", (min_side, min_side))  # JPEG only; a no-op for other formats
            factor = max(1, min(im.size) // min_side) if min_side else 1
            need = decoded_bytes(im.mode, im.width, im.height, factor)
            if max_decoded_bytes and need > max_decoded_bytes:
                raise ImageRejected(
                    "too_many_decoded_bytes",
                    f"image of {im.width}x{im.height} pixels in mode {im.mode} needs {need} bytes to decode; "
                    f"the limit is {max_decoded_bytes}",
                )
            with budget.hold(need) if budget is not None else nullcontext():
                try:
                    im.load()
                    out = _shrink(ImageOps.exif_transpose(im) if upright else im, factor, background)
                except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
                    raise ImageRejected("too_many_pixels", f"cannot decode image: {e}") from None
                except _DECODE_ERRORS as e:
                    raise ImageRejected("corrupt", f"cannot decode image: {e}") from None
    if need >= TRIM_FROM_BYTES:
        del im  # the full-size pixels go with it
        _release_freed_memory()
    return out


def thumbnail_jpeg(image: Image.Image, side: int, quality: int = 80) -> bytes:
    """A JPEG of ``image`` scaled (never up) to fit ``side`` x ``side``; ``image`` itself is left as it is."""
    thumb = image.copy()
    thumb.thumbnail((side, side), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    thumb.save(buf, "JPEG", quality=quality, optimize=True)
    return buf.getvalue()

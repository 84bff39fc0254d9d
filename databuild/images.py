"""Robust image normalisation for the corpus and benchmark: any source file -> a small RGB PNG/JPEG.

Why one gate: the sources hold corrupt files, SVGs that do not rasterise, CMYK JPEGs, palette and
alpha PNGs and drawings above 178 Mpx. Every file either comes out as a bounded RGB image or is
rejected with a short reason that the build report counts; nothing crashes the build. The decoding
guards are the core's (:func:`mofi.images.decode_rgb`); this module adds SVG rendering, the minimum
size and the stored encoding.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image

from mofi.images import WHITE, ImageRejected, decode_rgb

__all__ = ["Rejected", "NormalizedImage", "normalize_image", "rasterize_svg"]


class Rejected(ValueError):
    """An input that cannot become a corpus image; ``reason`` is a short, countable label."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass(frozen=True)
class NormalizedImage:
    data: bytes
    ext: str  # "png" or "jpg"
    width: int
    height: int

    @property
    def mime(self) -> str:
        return "image/png" if self.ext == "png" else "image/jpeg"


def rasterize_svg(svg: bytes, size: int) -> bytes:
    """SVG -> PNG bytes whose longest side is ``size``; :class:`Rejected` if cairosvg cannot draw it."""
    import cairosvg

    try:
        return cairosvg.svg2png(bytestring=svg, output_width=size, unsafe=False)  # height keeps the aspect
    except Exception as e:  # cairosvg raises many types (XML, value, cairo errors) for broken files
        raise Rejected("svg_render_failed", type(e).__name__) from None


def normalize_image(
    data: bytes, *, is_svg: bool = False, max_pixels: int, image_size: int, photo: bool = False
) -> NormalizedImage:
    """Decode, reject bombs and corrupt files, flatten alpha, convert CMYK/grey/palette to RGB, downscale.

    ``photo`` stores JPEG (quality 90) instead of PNG: photographs compress ten times better that way,
    drawings and emoji keep their hard edges as PNG.
    """
    if not data:
        raise Rejected("empty_file")
    if is_svg:
        data = rasterize_svg(data, image_size)
    try:
        rgb = decode_rgb(
            data, max_pixels=max_pixels, min_side=image_size, background=WHITE
        )  # drawings and emoji are mostly alpha
    except ImageRejected as e:
        raise Rejected(e.reason, str(e)) from None
    if min(rgb.size) < 8:
        raise Rejected("too_small", f"{rgb.size[0]}x{rgb.size[1]}")
    rgb.thumbnail((image_size, image_size), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    if photo:
        rgb.save(out, "JPEG", quality=90, optimize=True)
        ext = "jpg"
    else:
        rgb.save(out, "PNG", optimize=True)
        ext = "png"
    return NormalizedImage(out.getvalue(), ext, rgb.width, rgb.height)

"""Robust image normalisation for the corpus and benchmark: any source file -> a small RGB PNG/JPEG.

Why one gate: the sources hold corrupt files, SVGs that do not rasterise, CMYK JPEGs, palette and
alpha PNGs and drawings above 178 Mpx. Every file either comes out as a bounded RGB image or is
rejected with a short reason that the build report counts; nothing crashes the build.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from PIL import Image, ImageFile, UnidentifiedImageError

__all__ = ["Rejected", "NormalizedImage", "normalize_image", "rasterize_svg", "probe_pixels"]

ImageFile.LOAD_TRUNCATED_IMAGES = False

#: Background that transparent pixels are composited onto (drawings and emoji are mostly alpha).
BACKGROUND = (255, 255, 255)


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


def probe_pixels(data: bytes) -> int:
    """Pixel count from the header only (no decode), so a bomb is caught before it allocates."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            return im.width * im.height
    except Image.DecompressionBombError:
        raise Rejected("too_many_pixels", "decompression bomb") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise Rejected("unreadable", type(e).__name__) from None


def _flatten(im: Image.Image) -> Image.Image:
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, BACKGROUND)
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    return im.convert("RGB")


def normalize_image(data: bytes, *, is_svg: bool = False, max_pixels: int, image_size: int,
                    photo: bool = False) -> NormalizedImage:
    """Decode, reject bombs and corrupt files, flatten alpha, convert CMYK/grey/palette to RGB, downscale.

    ``photo`` stores JPEG (quality 90) instead of PNG: photographs compress ten times better that way,
    drawings and emoji keep their hard edges as PNG.
    """
    if not data:
        raise Rejected("empty_file")
    if is_svg:
        data = rasterize_svg(data, image_size)
    if probe_pixels(data) > max_pixels:
        raise Rejected("too_many_pixels", f"> {max_pixels}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                im.draft("RGB", (image_size, image_size))  # JPEG: decode at reduced scale
                im.load()
                rgb = _flatten(im)
    except Image.DecompressionBombWarning:
        raise Rejected("too_many_pixels", "decompression bomb") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise Rejected("corrupt", type(e).__name__) from None
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

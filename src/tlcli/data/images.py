"""Opening one image safely, whatever its mode, orientation or size.

Every path into the model (training, evaluation, prediction, data check) goes through
``load_image`` so that they all see the same pixels.
"""

from __future__ import annotations

import io
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"})
# PIL's own default (about 89 M pixels): above it an image is treated as a decompression bomb.
MAX_PIXELS = Image.MAX_IMAGE_PIXELS or 89_478_485
# Dot files and folders (.DS_Store, ._x.jpg, .ipynb_checkpoints, .git), Office lock files and the
# __MACOSX folder of unzipped macOS archives are never data.
_JUNK_PREFIXES = (".", "~$")


class BadImageError(Exception):
    """An image file that cannot be used; the message is the reason shown to the user."""


@dataclass(frozen=True)
class ImageInfo:
    """What the header of an image says, for data checks."""

    format: str
    mode: str
    width: int
    height: int
    frames: int


def is_hidden(name: str) -> bool:
    return name.startswith(_JUNK_PREFIXES) or name in {"Thumbs.db", "desktop.ini", "__MACOSX"}


def has_image_extension(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def _open(source: Path | bytes) -> Image.Image:
    """Open (header only) a file, or bytes from inside a container such as a TFRecord."""
    try:
        if (len(source) if isinstance(source, bytes) else source.stat().st_size) == 0:
            raise BadImageError("empty file (0 bytes)")
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
    except BadImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise BadImageError(f"larger than {MAX_PIXELS:,} pixels (possible decompression bomb)") from None
    except UnidentifiedImageError:
        raise BadImageError("not an image PIL can read") from None
    except OSError as exc:
        raise BadImageError(f"cannot be read: {exc}") from None
    if image.width * image.height > MAX_PIXELS:
        image.close()
        raise BadImageError(f"larger than {MAX_PIXELS:,} pixels (possible decompression bomb)")
    return image


def probe_image(source: Path | bytes) -> ImageInfo:
    """Read the header only (cheap) of a file or of encoded bytes; raises BadImageError for
    what cannot be an image."""
    with _open(source) as image:
        return ImageInfo(
            format=image.format or "?",
            mode=image.mode,
            width=image.width,
            height=image.height,
            frames=getattr(image, "n_frames", 1),
        )


def to_rgb_or_gray(image: Image.Image) -> Image.Image:
    """Normalise any PIL mode to 8-bit ``RGB`` or ``L``.

    PIL's own ``convert`` clips 16-bit and 32-bit pixels instead of scaling them, and
    drops transparency onto black; here high-bit-depth images are scaled into 0..255 and
    transparent pixels are composited onto white, as a viewer shows them.
    """
    mode = image.mode
    if mode in ("RGB", "L"):
        return image
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        array = np.asarray(image, dtype=np.float64)
        if mode.startswith("I;16"):
            array = array / 257.0
        elif array.size and array.max() > 255:
            array = array * (255.0 / array.max())
        return Image.fromarray(np.clip(np.rint(array), 0, 255).astype(np.uint8), mode="L")
    if mode == "1":
        return image.convert("L")
    has_alpha = mode in ("RGBA", "LA", "La", "RGBa", "PA") or (mode == "P" and "transparency" in image.info)
    if has_alpha:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")  # P, CMYK, YCbCr, LAB, HSV


def load_image(path: Path, *, draft_size: int | None = None) -> Image.Image:
    """Decode a whole image: first frame of animations, EXIF orientation applied, RGB or L.

    ``draft_size``: a JPEG whose shorter side is over twice this is decoded at 1/2, 1/4 or 1/8
    scale inside the JPEG decoder (several times faster), its shorter side staying at least
    ``draft_size``; every path into a model passes its preset's resize size, so all see the
    same pixels.
    """
    return _decode(_open(path), draft_size)


def open_image_bytes(data: bytes, *, draft_size: int | None = None) -> Image.Image:
    """``load_image`` for encoded bytes (a JPEG inside a TFRecord, an upload)."""
    return _decode(_open(data), draft_size)


def _draft(image: Image.Image, shorter_side: int | None) -> None:
    if shorter_side and image.format == "JPEG":
        scale = shorter_side / min(image.size)
        if scale <= 0.5:
            image.draft(None, (math.ceil(image.width * scale), math.ceil(image.height * scale)))


def _decode(image: Image.Image, draft_size: int | None = None) -> Image.Image:
    try:
        with image:
            image.seek(0)
            _draft(image, draft_size)
            image.load()
            # exif_transpose returns a new image, so it outlives the closed file.
            return to_rgb_or_gray(ImageOps.exif_transpose(image))
    except BadImageError:
        raise
    except (OSError, ValueError, SyntaxError) as exc:
        # Truncated files and corrupt streams surface here, on the full decode.
        raise BadImageError(f"cannot be decoded: {exc}") from None

"""Robust loading of media files (images) and content hashing.

Every failure is a :class:`MediaError` whose message names the file and says what is wrong, so a
featurizer can turn it into ``Result.failed(str(err))`` for that one item and go on with the batch.

``load_image`` never relies on file extensions (PIL sniffs the content), never sets
``ImageFile.LOAD_TRUNCATED_IMAGES`` (a truncated file is an error, not a grey half-image), checks the
pixel count from the header *before* decoding, forces a full decode with ``.load()``, applies EXIF
orientation, and normalizes every mode (CMYK, palette with transparency, 16-bit and 32-bit
grayscale, float, LA/RGBA) to 8-bit RGB, compositing alpha over white.
"""

from __future__ import annotations

import os
import struct
import warnings
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from mmfeat.featurizers import hashing as _hashing

PathLike = Union[str, "os.PathLike[str]"]

#: Background used when flattening transparent images.
BACKGROUND = (255, 255, 255)


class MediaError(ValueError):
    """A media file cannot be used; the message says which file and why."""


def _check_file(path: PathLike, kind: str = "file") -> Path:
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise MediaError(f"{kind} not found: {p}") from None
    except OSError as exc:
        raise MediaError(f"cannot access {kind} {p}: {exc}") from None
    if p.is_dir():
        raise MediaError(f"{kind} path is a directory, not a file: {p}")
    if st.st_size == 0:
        raise MediaError(f"{kind} is empty (0 bytes): {p}")
    if not os.access(p, os.R_OK):
        raise MediaError(f"{kind} is not readable (permission denied): {p}")
    return p


def file_sha256(path: PathLike) -> str:
    """sha256 of a media file (memoized per process by :mod:`mmfeat.featurizers.hashing`), raising
    :class:`MediaError` with the reason instead of a bare ``OSError``."""
    p = Path(path)
    try:
        return _hashing.file_sha256(p)
    except FileNotFoundError:
        raise MediaError(f"file not found: {p}") from None
    except OSError as exc:
        raise MediaError(f"cannot read {p}: {exc.strerror or exc}") from None


def _to_8bit_gray(im: Image.Image) -> Image.Image:
    """16-bit / 32-bit integer / float grayscale -> mode L, scaling instead of clipping."""
    arr = np.asarray(im)
    if arr.dtype.kind == "f":
        arr = np.nan_to_num(arr.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        lo, hi = float(arr.min(initial=0.0)), float(arr.max(initial=0.0))
        if lo >= 0.0 and hi <= 1.0:
            scaled = arr * 255.0
        elif hi > lo:
            scaled = (arr - lo) / (hi - lo) * 255.0
        else:
            scaled = np.zeros_like(arr)
    else:
        arr = arr.astype(np.int64)
        if im.mode.startswith("I;16"):
            scaled = arr / 257.0  # 0..65535 -> 0..255
        else:  # mode "I" (int32): 16-bit PNGs often decode to it
            lo, hi = int(arr.min(initial=0)), int(arr.max(initial=0))
            if lo >= 0 and hi <= 255:
                scaled = arr.astype(np.float64)
            elif lo >= 0 and hi <= 65535:
                scaled = arr / 257.0
            elif hi > lo:
                scaled = (arr - lo) / (hi - lo) * 255.0
            else:
                scaled = np.zeros(arr.shape)
    return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8), mode="L")


def _flatten_alpha(im: Image.Image) -> Image.Image:
    rgba = im.convert("RGBA")
    background = Image.new("RGBA", rgba.size, BACKGROUND + (255,))
    return Image.alpha_composite(background, rgba).convert("RGB")


def to_rgb(im: Image.Image) -> Image.Image:
    """Normalize any PIL mode to 8-bit RGB (alpha and palette transparency composited over white)."""
    mode = im.mode
    if mode == "RGB" and "transparency" not in im.info:
        return im
    if mode in ("RGBA", "LA", "La", "RGBa", "PA"):
        return _flatten_alpha(im)
    if mode == "P":
        if "transparency" in im.info or im.palette is not None and im.palette.mode == "RGBA":
            return _flatten_alpha(im)
        return im.convert("RGB")
    if mode in ("L", "RGB") and "transparency" in im.info:
        return _flatten_alpha(im)
    if mode.startswith("I") or mode == "F":
        return _to_8bit_gray(im).convert("RGB")
    if mode in ("1", "L", "CMYK", "YCbCr", "HSV"):
        return im.convert("RGB")
    if mode == "LAB":
        from PIL import ImageCms

        srgb = ImageCms.createProfile("sRGB")
        lab = ImageCms.createProfile("LAB")
        return ImageCms.profileToProfile(im, lab, srgb, outputMode="RGB")
    return im.convert("RGB")


def load_image(path: PathLike, *, max_pixels: int = 50_000_000) -> Image.Image:
    """Open, fully decode and normalize an image file to an 8-bit RGB ``PIL.Image``.

    Raises :class:`MediaError` (with the file name and a reason) for a missing, empty, unreadable,
    unrecognized, truncated or corrupt file, or one whose header declares more than ``max_pixels``
    pixels (checked before any pixel data is decoded).
    """
    p = _check_file(path, "image")
    try:
        with warnings.catch_warnings():
            # PIL warns above Image.MAX_IMAGE_PIXELS; our own max_pixels check below is authoritative.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(p)
    except Image.DecompressionBombError as exc:
        raise MediaError(f"image too large (decompression bomb guard) {p}: {exc}") from None
    except UnidentifiedImageError:
        raise MediaError(
            f"not a recognized image (content sniffed, extension {p.suffix or '(none)'!r} ignored): {p}"
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise MediaError(f"cannot open image {p}: {type(exc).__name__}: {exc}") from None

    with im:
        width, height = im.size
        if width <= 0 or height <= 0:
            raise MediaError(f"image has invalid size {width}x{height}: {p}")
        if width * height > max_pixels:
            raise MediaError(
                f"image too large: {width}x{height} = {width * height:,} pixels exceeds max_pixels="
                f"{max_pixels:,} (not decoded): {p}"
            )
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                im.load()
        except Image.DecompressionBombError as exc:
            raise MediaError(f"image too large (decompression bomb guard) {p}: {exc}") from None
        except (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error) as exc:
            raise MediaError(
                f"corrupt or truncated image data ({im.format or 'unknown'} {width}x{height}) "
                f"{p}: {type(exc).__name__}: {exc}"
            ) from None
        try:
            oriented = ImageOps.exif_transpose(im)
        except Exception:  # a broken EXIF block is not worth failing the image for
            oriented = im
        if oriented is None:
            oriented = im
        try:
            rgb = to_rgb(oriented)
        except Exception as exc:
            raise MediaError(f"cannot convert image mode {im.mode!r} to RGB {p}: {exc}") from None
        if rgb is im:
            rgb = im.copy()  # detach from the (closed) file handle
    return rgb


__all__ = ["MediaError", "load_image", "file_sha256", "to_rgb", "BACKGROUND"]

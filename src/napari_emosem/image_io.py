"""Reading paintings: any file PIL reads, any array napari holds, to RGB ``uint8`` (H, W, 3).

Grayscale, palette, RGBA, CMYK, 16-bit and float inputs are converted; what cannot be used
(not an image, corrupt, too small, too large, not a regular file) raises :class:`ImageError`
naming the file and the problem.

Files are opened with :func:`open_image`, never with ``PIL.Image.open``: PIL's decompression-bomb
guard refuses paintings above 179 MP although we allow 200 MP (:data:`MAX_PIXELS`, checked with a
clearer message before any pixel is decoded), and switching the guard off and on around a call
(``Image.MAX_IMAGE_PIXELS = None``) is a process-wide toggle that races between threads and can
leave it off for everyone.
"""

from __future__ import annotations

import contextlib
import errno
import os
import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .errors import ImageError

#: Smallest side the encoder can make sense of.
MIN_SIDE = 32
#: Largest painting read, in pixels (12,000 × 9,000 is 108 MP). Masks come back at full
#: resolution, so this bounds memory: about 1 byte per pixel per emotion, plus the RGB copy.
MAX_PIXELS = 200_000_000

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp", ".gif")


def open_regular_file(path: str | os.PathLike):
    """Open an image file for binary reading; a missing file, a folder, a FIFO or a device
    raises ImageError (see :func:`napari_emosem._io.open_regular`)."""
    from ._io import NotRegularFileError, open_regular

    try:
        return open_regular(path)
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ImageError(f"{path}: is a folder, not an image file") from None
    except NotRegularFileError:
        raise ImageError(f"{path}: not a regular file (a pipe, socket or device); give an image file") from None
    except OSError as exc:
        if exc.errno == errno.ENAMETOOLONG:
            raise ImageError(f"{path}: the file name is too long for this file system") from None
        raise ImageError(f"{path}: cannot read it ({exc.strerror or exc})") from None


@contextlib.contextmanager
def open_image(path: str | os.PathLike) -> Iterator:
    """``PIL.Image.open`` for a file, without PIL's decompression-bomb check (see the module
    docstring): identifies the file from its header and decodes nothing. The caller checks the
    size before loading pixels. Raises ImageError for what is not a readable image file."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    with open_regular_file(path) as fp:
        prefix = fp.read(16)
        Image.init()  # every format plugin (what Image.open falls back to)
        image = None
        for fmt in list(Image.ID):
            factory, accept = Image.OPEN[fmt]
            try:
                accepted = not accept or accept(prefix)
                if accepted and not isinstance(accepted, str):  # a str is PIL's "almost" warning
                    fp.seek(0)
                    image = factory(fp, os.fspath(path))
                    break
            except (SyntaxError, IndexError, TypeError, struct.error):
                continue  # not this format (what Image.open does too)
            except (OSError, ValueError, UnidentifiedImageError) as exc:
                raise ImageError(f"{path}: cannot read the image ({exc})") from None
        if image is None:
            raise ImageError(f"{path}: not an image file that can be read (expected JPEG, PNG, TIFF, …)")
        with image:
            yield image


def header_size(path: str | os.PathLike) -> tuple[int, int]:
    """(width, height) of the image file as :func:`load_image` returns it (EXIF rotation applied),
    from its header: no pixel is decoded. Raises ImageError."""
    with open_image(path) as img:
        width, height = img.size
        try:
            orientation = img.getexif().get(0x0112, 1)
        except Exception:  # a broken EXIF block: load_image ignores it too
            orientation = 1
    if orientation in (5, 6, 7, 8):  # rotated by 90°: load_image transposes it
        width, height = height, width
    return int(width), int(height)


def load_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as RGB uint8, applying its EXIF orientation."""
    from PIL import ImageOps

    path = Path(path)
    with open_image(path) as img:
        _check_size(path, img.width, img.height)
        try:
            img.load()
        except (OSError, SyntaxError, ValueError, struct.error, EOFError) as exc:
            raise ImageError(f"{path}: the image data is corrupt or truncated ({exc})") from None
        return _pil_to_rgb(ImageOps.exif_transpose(img))


def _check_size(name, width: int, height: int) -> None:
    if min(width, height) < MIN_SIDE:
        raise ImageError(
            f"{name}: {width} × {height} px is too small; a painting needs at least "
            f"{MIN_SIDE} px on each side"
        )
    if width * height > MAX_PIXELS:
        raise ImageError(
            f"{name}: {width} × {height} px ({width * height / 1e6:.0f} MP) is larger than the "
            f"{MAX_PIXELS / 1e6:.0f} MP limit; save a downscaled copy and open that"
        )


def _pil_to_rgb(img) -> np.ndarray:
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        return to_rgb_uint8(np.asarray(img))
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info):
        return to_rgb_uint8(np.asarray(img.convert("RGBA")))
    if mode != "RGB":
        img = img.convert("RGB")
    return np.ascontiguousarray(np.asarray(img, dtype=np.uint8))


def to_rgb_uint8(data, name: str = "image") -> np.ndarray:
    """Convert an array (grayscale, RGB, RGBA; any integer or float dtype) to RGB uint8.

    Integers wider than 8 bits are scaled by the bit depth their values use (so 12-bit data in a
    16-bit container is not nearly black); floats in [0, 1] are scaled by 255, other floats
    stretched to their range. Alpha is composited over white, as the painting would be shown.
    """
    array = np.asarray(data)
    if array.ndim == 3 and array.shape[-1] not in (1, 3, 4) and array.shape[0] in (3, 4):
        array = np.moveaxis(array, 0, -1)  # channels-first
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (3, 4)):
        raise ImageError(
            f"{name}: shape {array.shape} is not a 2-D grayscale, RGB or RGBA image; "
            "pick a single 2-D plane of the layer"
        )
    if array.dtype == bool:
        array = array.astype(np.uint8) * 255
    _check_size(name, array.shape[1], array.shape[0])
    alpha = None
    if array.ndim == 3 and array.shape[-1] == 4:
        array, alpha = array[..., :3], array[..., 3]
    rgb = _scale_to_uint8(array, name)
    if alpha is not None:
        a = _scale_to_uint8(alpha, name).astype(np.float32)[..., None] / 255.0
        rgb = (rgb.astype(np.float32) * a + 255.0 * (1.0 - a) + 0.5).astype(np.uint8)
    if rgb.ndim == 2:
        rgb = np.repeat(rgb[..., None], 3, axis=-1)
    return np.ascontiguousarray(rgb)


def _scale_to_uint8(array: np.ndarray, name: str) -> np.ndarray:
    if array.dtype == np.uint8:
        return array
    if np.issubdtype(array.dtype, np.integer):
        top = int(array.max(initial=0))
        low = int(array.min(initial=0))
        if low < 0:  # signed data: stretch
            return _stretch(array.astype(np.float64))
        bits = max(8, min(int(array.dtype.itemsize * 8), int(np.ceil(np.log2(top + 1))) if top else 8))
        scale = 255.0 / (2**bits - 1)
        return np.clip(array.astype(np.float64) * scale + 0.5, 0, 255).astype(np.uint8)
    if np.issubdtype(array.dtype, np.floating):
        finite = np.isfinite(array)
        if not finite.all():
            if not finite.any():
                raise ImageError(f"{name}: every pixel is NaN or infinite")
            array = np.where(finite, array, np.nanmin(array[finite]))
        lo, hi = float(array.min()), float(array.max())
        if lo >= 0.0 and hi <= 1.0:
            return (array * 255.0 + 0.5).astype(np.uint8)
        return _stretch(array)
    raise ImageError(f"{name}: pixel type {array.dtype} is not an image type")


def _stretch(array: np.ndarray) -> np.ndarray:
    lo, hi = float(array.min()), float(array.max())
    if hi <= lo:
        return np.zeros(array.shape, np.uint8)
    return ((array - lo) * (255.0 / (hi - lo)) + 0.5).astype(np.uint8)


def image_digest(rgb: np.ndarray) -> str:
    """Content hash of a painting's pixels (shape included): the key of the embedding cache."""
    import hashlib

    h = hashlib.blake2b(digest_size=16)
    h.update(repr((rgb.shape, str(rgb.dtype))).encode())
    h.update(np.ascontiguousarray(rgb).data)
    return h.hexdigest()

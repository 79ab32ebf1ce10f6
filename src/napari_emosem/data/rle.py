"""Masks <-> COCO run-length encoding (RLE), through pycocotools.

COCO stores a mask column-major as alternating runs of 0s and 1s (starting with 0s), either as a
list of integers ("uncompressed") or as pycocotools' compact ASCII string ("compressed"). We write
compressed RLE; we read both, and polygons.

pycocotools' C code trusts its input: runs that add up to more than height × width make its
decoder write past the mask buffer, and polygon coordinates far outside the image (1e9, NaN)
overflow its rasteriser's integers (a segmentation fault). So every segmentation is *checked*
here before pycocotools sees it: RLE strings are parsed in numpy and their runs must be
non-negative and cover exactly height × width pixels (in arithmetic that cannot overflow), and
polygon points must be finite and near the image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


class RLEError(ValueError):
    """A segmentation that cannot be decoded; the message says why."""


@dataclass(frozen=True)
class RLE:
    """A checked, compressed COCO RLE: ``counts`` is pycocotools' ASCII string."""

    height: int
    width: int
    counts: str
    #: foreground pixels
    area: int

    def to_json(self) -> dict:
        return {"size": [self.height, self.width], "counts": self.counts}


def encode_mask(mask: np.ndarray) -> RLE:
    """Encode a 2-D boolean mask as compressed COCO RLE."""
    from pycocotools import mask as mask_utils

    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise RLEError(f"a mask must be 2-D (height, width); got shape {mask.shape}")
    h, w = mask.shape
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8, copy=False)))
    counts = rle["counts"].decode("ascii")
    return RLE(int(h), int(w), counts, int(np.count_nonzero(mask)))


def empty_rle(height: int, width: int) -> RLE:
    """The RLE of an all-background mask (one run of height × width zeros)."""
    return RLE(int(height), int(width), _runs_to_string(np.array([height * width], np.int64)), 0)


def decode_rle(rle: RLE) -> np.ndarray:
    """Decode a checked :class:`RLE` to a bool (H, W) mask."""
    from pycocotools import mask as mask_utils

    if rle.area == 0:
        return np.zeros((rle.height, rle.width), dtype=bool)
    out = mask_utils.decode({"size": [rle.height, rle.width], "counts": rle.counts.encode("ascii")})
    return out.astype(bool, copy=False)


def parse_segmentation(segmentation, height: int, width: int) -> RLE:
    """Check any COCO segmentation (compressed or uncompressed RLE, or polygons) and return it
    as a compressed :class:`RLE` for an image of ``height`` × ``width``.

    Raises :class:`RLEError` with a one-line reason when it cannot be decoded or does not fit.
    """
    if isinstance(segmentation, dict):
        size = segmentation.get("size")
        counts = segmentation.get("counts")
        if (
            not isinstance(size, (list, tuple))
            or len(size) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in size)
        ):
            raise RLEError(f"RLE 'size' must be [height, width]; got {size!r}")
        h, w = int(size[0]), int(size[1])
        if (h, w) != (height, width):
            raise RLEError(f"mask size {w} × {h} differs from the image size {width} × {height}")
        if isinstance(counts, (bytes, bytearray)):
            counts = counts.decode("ascii", errors="replace")
        if isinstance(counts, str):
            runs = string_to_runs(counts)
            _check_runs(runs, h, w)
            return RLE(h, w, counts, int(runs[1::2].sum()))
        if isinstance(counts, list):
            if not all(isinstance(v, int) and not isinstance(v, bool) for v in counts):
                raise RLEError("uncompressed RLE 'counts' must be a list of integers")
            # checked before numpy: 2**64 does not fit an int64
            if any(v < 0 for v in counts):
                raise RLEError("RLE 'counts' holds a negative run length")
            if any(v > h * w for v in counts):
                raise RLEError(f"RLE 'counts' holds a run longer than the mask's {h * w} pixels")
            runs = np.asarray(counts, dtype=np.int64)
            _check_runs(runs, h, w)
            return RLE(h, w, _runs_to_string(runs), int(runs[1::2].sum()))
        raise RLEError(f"RLE 'counts' must be a string or a list of integers; got {type(counts).__name__}")
    if isinstance(segmentation, list):
        return _polygons_to_rle(segmentation, height, width)
    raise RLEError(
        f"segmentation must be an RLE object or a list of polygons; got {type(segmentation).__name__}"
    )


def string_to_runs(counts: str) -> np.ndarray:
    """Parse pycocotools' compressed RLE string into run lengths (vectorised rleFrString).

    Each run is a little-endian sequence of 6-bit chunks (character - 48): 5 value bits, bit 5 says
    "more chunks follow", bit 4 of the last chunk is the sign. From the fourth run on, the stored
    value is the difference to the run two places earlier.
    """
    if not counts:
        raise RLEError("RLE 'counts' is an empty string")
    try:
        raw = np.frombuffer(counts.encode("ascii"), dtype=np.uint8).astype(np.int64) - 48
    except UnicodeEncodeError:
        raise RLEError("RLE 'counts' holds non-ASCII characters") from None
    if raw.min() < 0 or raw.max() > 63:
        raise RLEError("RLE 'counts' holds characters outside pycocotools' alphabet")
    more = (raw & 0x20) != 0
    if more[-1]:
        raise RLEError("RLE 'counts' is truncated (its last run is unfinished)")
    ends = np.flatnonzero(~more)
    starts = np.concatenate(([0], ends[:-1] + 1))
    group = np.repeat(np.arange(len(ends)), ends - starts + 1)
    position = np.arange(len(raw)) - starts[group]
    if position.max() > 11:  # 12 chunks = 60 bits; real runs need at most 7
        raise RLEError("RLE 'counts' holds a run too long to be real")
    values = np.zeros(len(ends), dtype=np.int64)
    np.add.at(values, group, (raw & 0x1F) << (5 * position))
    negative = (raw[ends] & 0x10) != 0
    values[negative] -= np.int64(1) << (5 * (position[ends][negative] + 1))
    # Runs and the differences between them are below 2**31 in any mask we accept
    # (validate.MAX_DECLARED_PIXELS; pycocotools keeps runs in 32-bit unsigned ints): bounding
    # them by 2**32 keeps the running sums below from overflowing 64 bits (that would take a
    # string of more than 2**31 runs).
    if np.abs(values).max() > 1 << 32:
        raise RLEError("RLE 'counts' holds a run too long to be real")
    runs = values.copy()
    # delta coding applies from index 3 on (pycocotools: `if (m > 2) x += cnts[m - 2]`)
    if len(runs) > 3:
        odd = runs[1::2].copy()
        runs[1::2] = np.cumsum(odd)
        even_tail = runs[2::2].copy()
        runs[2::2] = np.cumsum(even_tail)
    return runs


def _runs_to_string(runs: np.ndarray) -> str:
    # pycocotools' rleToString; only used for small or uncompressed inputs
    chars = []
    runs = [int(v) for v in runs]
    for i, value in enumerate(runs):
        x = value - runs[i - 2] if i > 2 else value
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            more = (x != -1) if (c & 0x10) else (x != 0)
            if more:
                c |= 0x20
            chars.append(chr(c + 48))
    return "".join(chars)


def _check_runs(runs: np.ndarray, h: int, w: int) -> None:
    if len(runs) == 0:
        raise RLEError("RLE 'counts' is empty")
    if (runs < 0).any():
        raise RLEError("RLE 'counts' holds a negative run length")
    if (runs > h * w).any():
        raise RLEError(f"RLE 'counts' holds a run longer than the mask's {h * w} pixels")
    # each run <= h*w <= 2**31, so an int64 sum of fewer than 2**32 runs cannot overflow
    total = int(runs.sum())
    if total != h * w:
        raise RLEError(
            f"RLE runs cover {total} pixels but the mask has {h} × {w} = {h * w}; the RLE is corrupt"
        )


def _polygons_to_rle(polygons: list, height: int, width: int) -> RLE:
    from pycocotools import mask as mask_utils

    if not polygons:
        return empty_rle(height, width)
    for poly in polygons:
        if (
            not isinstance(poly, list)
            or len(poly) < 6
            or len(poly) % 2
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in poly)
        ):
            raise RLEError(
                "a polygon must be a flat list [x1, y1, x2, y2, ...] of at least 3 points"
            )
        xy = np.asarray(poly, dtype=np.float64).reshape(-1, 2)
        if not np.isfinite(xy).all():
            raise RLEError("a polygon holds a coordinate that is NaN or infinite")
        # pycocotools rasterises at 5× in C ints, and its buffers grow with the outline's length:
        # points far off the image overflow or exhaust it. A margin of one image size is generous.
        x, y = xy[:, 0], xy[:, 1]
        if x.min() < -width or x.max() > 2 * width or y.min() < -height or y.max() > 2 * height:
            far = xy[np.argmax(np.maximum(np.abs(x - width / 2) / width, np.abs(y - height / 2) / height))]
            raise RLEError(
                f"a polygon point ({far[0]:g}, {far[1]:g}) lies far outside the {width} × {height} image"
            )
    rles = mask_utils.frPyObjects(polygons, height, width)
    rle = mask_utils.merge(rles)
    counts = rle["counts"].decode("ascii")
    return RLE(height, width, counts, int(mask_utils.area(rle)))


def rle_bbox(rle: RLE) -> list[float]:
    """COCO bbox ``[x, y, width, height]`` of the foreground (zeros when empty)."""
    from pycocotools import mask as mask_utils

    if rle.area == 0:
        return [0.0, 0.0, 0.0, 0.0]
    box = mask_utils.toBbox({"size": [rle.height, rle.width], "counts": rle.counts.encode("ascii")})
    return [float(v) for v in box]

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

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np


class RLEError(ValueError):
    """A segmentation that cannot be decoded; the message says why."""


class RLE(NamedTuple):
    """A checked, compressed COCO RLE: ``counts`` is pycocotools' ASCII string. (A named tuple:
    a large dataset holds tens of thousands, made as it opens.)"""

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
            areas, errors = check_compressed([counts], [h], [w])
            if errors:
                raise RLEError(errors[0])
            return RLE(h, w, counts, int(areas[0]))
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
    raise RLEError(f"segmentation must be an RLE object or a list of polygons; got {type(segmentation).__name__}")


def string_to_runs(counts: str) -> np.ndarray:
    """Parse pycocotools' compressed RLE string into run lengths (vectorised rleFrString).

    Each run is a little-endian sequence of 6-bit chunks (character - 48): 5 value bits, bit 5 says
    "more chunks follow", bit 4 of the last chunk is the sign. From the fourth run on, the stored
    value is the difference to the run two places earlier.
    """
    parsed = _parse_strings([counts])
    if 0 in parsed.errors:
        raise RLEError(parsed.errors[0])
    return parsed.runs


def check_compressed(
    counts: Sequence[str], heights: Sequence[int], widths: Sequence[int]
) -> tuple[np.ndarray, dict[int, str]]:
    """Check many compressed RLE strings at once, exactly as :func:`parse_segmentation` checks
    one: ``counts[i]`` must be a mask of ``heights[i]`` × ``widths[i]``.

    Returns every string's foreground area (int64; 0 where there is an error) and ``{index:
    reason}`` for the strings that cannot be decoded. One pass of numpy over all the strings of a
    dataset costs a few array operations in all instead of a few per mask.
    """
    n = len(counts)
    pixels = np.asarray(heights, np.int64).reshape(n) * np.asarray(widths, np.int64).reshape(n)
    areas = np.zeros(n, np.int64)
    errors: dict[int, str] = {}
    # in chunks of a few million characters: memory stays at some 100 MB for any dataset
    start = 0
    while start < n:
        stop, size = start, 0
        while stop < n and (size < _CHUNK_CHARS or stop == start):
            size += len(counts[stop])
            stop += 1
        parsed = _parse_strings(counts[start:stop])
        chunk_pixels = pixels[start:stop]
        found = parsed.errors
        # the first problem of each string, in the order _check_runs looks for them
        for i in np.flatnonzero(parsed.smallest < 0).tolist():
            found.setdefault(i, "RLE 'counts' holds a negative run length")
        for i in np.flatnonzero(parsed.largest > chunk_pixels).tolist():
            found.setdefault(i, f"RLE 'counts' holds a run longer than the mask's {int(chunk_pixels[i])} pixels")
        for i in np.flatnonzero(parsed.totals != chunk_pixels).tolist():
            if i not in found:
                h, w = int(heights[start + i]), int(widths[start + i])
                found[i] = (
                    f"RLE runs cover {int(parsed.totals[i])} pixels but the mask has {h} × {w} = {h * w}; "
                    "the RLE is corrupt"
                )
        areas[start:stop] = parsed.areas
        errors.update((start + i, reason) for i, reason in found.items())
        start = stop
    areas[list(errors)] = 0
    return areas, errors


_CHUNK_CHARS = 1 << 22


@dataclass
class _Parsed:
    #: run lengths of every string, one after the other
    runs: np.ndarray
    #: index of each string's first run
    first: np.ndarray
    #: per string: the smallest and largest run, the sum of the runs, the sum of the runs of 1s
    smallest: np.ndarray
    largest: np.ndarray
    totals: np.ndarray
    areas: np.ndarray
    #: string index -> why it cannot be parsed (the figures above mean nothing there)
    errors: dict[int, str]


def _parse_strings(counts: Sequence[str]) -> _Parsed:
    """rleFrString over many strings in one pass; a string's problems never leak into another's
    runs (every string's last character ends a run, whatever it says).

    Written for speed on large datasets (40,000 masks hold some 20 million characters and 7
    million runs): characters are touched only in uint8 passes, a run's value is gathered from
    its characters (one pass per character position, most runs have one or two), and per-string
    figures come from reductions over segments, never from per-run copies of per-string values.
    """
    errors: dict[int, str] = {}
    raw, offsets = _characters(counts, errors)
    values, first, stop = _run_values(raw, offsets, errors)
    del raw
    for i in errors:  # a bad string's values are not runs: keep them out of the sums below
        values[first[i] : stop[i]] = 0
    runs = _undo_delta_coding(values, first, stop)
    smallest, largest, totals, areas = _string_figures(runs, first, stop)
    return _Parsed(runs, first, smallest, largest, totals, areas, errors)


def _characters(counts: Sequence[str], errors: dict[int, str]) -> tuple[np.ndarray, np.ndarray]:
    """Every string's characters as chunks 0..63, one array, and where each string starts (the
    last offset is the end). A string that is empty, not ASCII or outside the alphabet is listed
    in ``errors`` (an empty or non-ASCII one stands as one placeholder run)."""
    n = len(counts)
    encoded = []
    for i, text in enumerate(counts):
        if not text:
            errors[i] = "RLE 'counts' is an empty string"
            encoded.append(b"0")  # a placeholder run; the string is reported
            continue
        try:
            encoded.append(text.encode("ascii"))
        except UnicodeEncodeError:
            errors[i] = "RLE 'counts' holds non-ASCII characters"
            encoded.append(b"0")
    offsets = np.zeros(n + 1, np.int64)
    np.cumsum(np.fromiter(map(len, encoded), np.int64, n), out=offsets[1:])
    raw = np.frombuffer(b"".join(encoded), np.uint8) - np.uint8(48)  # below '0' wraps to >= 208
    outside = np.flatnonzero(raw > 63)
    if len(outside):
        for i in np.unique(np.searchsorted(offsets, outside, side="right") - 1).tolist():
            errors.setdefault(i, "RLE 'counts' holds characters outside pycocotools' alphabet")
        raw = raw & np.uint8(0x3F)
    return raw, offsets


def _run_values(
    raw: np.ndarray, offsets: np.ndarray, errors: dict[int, str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The runs' values as coded (deltas from the run two before, from the fourth on), and each
    string's first run and the run after its last. Truncated strings and runs too long to be real
    are listed in ``errors``."""
    last = offsets[1:] - 1
    for i in np.flatnonzero(raw[last] >= 0x20).tolist():  # bit 5: more chunks follow
        errors.setdefault(i, "RLE 'counts' is truncated (its last run is unfinished)")
    is_end = raw < 0x20
    is_end[last] = True
    ends = np.flatnonzero(is_end)
    del is_end
    first = np.searchsorted(ends, offsets[:-1])  # each string's first run (every string has one)
    stop = np.append(first[1:], len(ends))
    # A run's chunks are 5 bits each, least significant first; the last one's bit 4 is the sign.
    # So its value is the last chunk as a signed 5-bit number, shifted up past the others (Horner).
    values = _SIGNED_CHUNK[raw[ends]]
    chunks = _gather_chunks(values, raw, ends, first, errors)
    del ends
    if chunks > 6:
        # Runs and the differences between them are below 2**31 in any mask we accept
        # (validate.MAX_DECLARED_PIXELS; pycocotools keeps runs in 32-bit unsigned ints):
        # bounding them by 2**32 keeps the running sums below from overflowing 64 bits (that
        # would take more than 2**31 runs). Six chunks or fewer hold less than 2**30.
        huge = (np.maximum.reduceat(values, first) > 1 << 32) | (np.minimum.reduceat(values, first) < -(1 << 32))
        for i in np.flatnonzero(huge).tolist():
            errors.setdefault(i, "RLE 'counts' holds a run too long to be real")
    return values, first, stop


def _gather_chunks(
    values: np.ndarray, raw: np.ndarray, ends: np.ndarray, first: np.ndarray, errors: dict[int, str]
) -> int:
    """Shift the earlier chunks of runs of two chunks or more into ``values``, one character
    position per pass; returns the passes made plus one (the most chunks a run had, up to 12)."""
    gaps = np.empty_like(ends)  # characters per run
    gaps[:1] = ends[:1] + 1
    np.subtract(ends[1:], ends[:-1], out=gaps[1:])
    longer = np.flatnonzero(gaps > 1)  # runs of two chunks or more
    del gaps
    k = 1
    while len(longer):
        if k == 12:  # 12 chunks = 60 bits; real runs need at most 7
            owners = np.searchsorted(first, longer, side="right") - 1
            for i in np.unique(owners).tolist():
                errors.setdefault(i, "RLE 'counts' holds a run too long to be real")
            values[longer] = 0
            break
        values[longer] = (values[longer] << 5) | (raw[ends[longer] - k] & np.uint8(0x1F))
        k += 1
        previous_end = np.where(longer > 0, ends[np.maximum(longer - 1, 0)], -1)
        longer = longer[ends[longer] - previous_end > k]
    return k


def _string_figures(
    runs: np.ndarray, first: np.ndarray, stop: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per string: the smallest and largest run, the sum of its runs, and its area (the sum of
    its runs of 1s)."""
    # per string: the sum of each parity chain of runs (a string's runs of 1s are its odd runs)
    chain_sums = []
    for parity in (0, 1):
        lo, hi = (first + (1 - parity)) // 2, (stop + (1 - parity)) // 2
        # string i's runs of this parity are chain[lo[i]:hi[i]], and hi[i] == lo[i + 1]; the 0
        # appended keeps every lo a valid index (reduceat gives chain[lo] where lo == hi)
        sums = np.add.reduceat(np.append(runs[parity::2], 0), lo)
        chain_sums.append(np.where(hi > lo, sums, 0))
    areas = np.where((first & 1).astype(bool), chain_sums[0], chain_sums[1])
    totals = chain_sums[0] + chain_sums[1]
    smallest, largest = np.minimum.reduceat(runs, first), np.maximum.reduceat(runs, first)
    return smallest, largest, totals, areas


#: a chunk (0..63) read as the last chunk of a run: its low 5 bits as a signed number
_SIGNED_CHUNK = np.array([(c & 0x0F) - (c & 0x10) for c in range(64)], np.int64)


def _undo_delta_coding(values: np.ndarray, first: np.ndarray, stop: np.ndarray) -> np.ndarray:
    """Runs from pycocotools' stored values (``if (m > 2) x += cnts[m - 2]``): within a string,
    run k (k >= 3) is its value plus run k - 2. So runs 1, 3, 5, … are running sums of their values,
    and so are runs 2, 4, 6, …; run 0 stands alone. Two running sums over every other run of all
    the strings, minus what earlier strings contributed, give them all (in place of ``values``)."""
    run0 = values[first].copy()
    values[first] = 0  # run 0 is not part of the chain that runs 2, 4, … sum up
    for parity in (0, 1):
        chain = values[parity::2]
        if not len(chain):
            continue
        np.cumsum(chain, out=chain)
        # each string's first run of this parity; what the chain summed before it belongs to
        # earlier strings
        lo = (first + (1 - parity)) // 2
        hi = (stop + (1 - parity)) // 2
        before = np.where(lo > 0, chain[np.maximum(lo - 1, 0)], 0)
        chain -= np.repeat(before, hi - lo)
    values[first] = run0
    return values


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
        raise RLEError(f"RLE runs cover {total} pixels but the mask has {h} × {w} = {h * w}; the RLE is corrupt")


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
            raise RLEError("a polygon must be a flat list [x1, y1, x2, y2, ...] of at least 3 points")
        xy = np.asarray(poly, dtype=np.float64).reshape(-1, 2)
        if not np.isfinite(xy).all():
            raise RLEError("a polygon holds a coordinate that is NaN or infinite")
        # pycocotools rasterises at 5× in C ints, and its buffers grow with the outline's length:
        # points far off the image overflow or exhaust it. A margin of one image size is generous.
        x, y = xy[:, 0], xy[:, 1]
        if x.min() < -width or x.max() > 2 * width or y.min() < -height or y.max() > 2 * height:
            far = xy[np.argmax(np.maximum(np.abs(x - width / 2) / width, np.abs(y - height / 2) / height))]
            raise RLEError(f"a polygon point ({far[0]:g}, {far[1]:g}) lies far outside the {width} × {height} image")
    rles = mask_utils.frPyObjects(polygons, height, width)
    rle = mask_utils.merge(rles)
    counts = rle["counts"].decode("ascii")
    return RLE(height, width, counts, int(mask_utils.area(rle)))


def rle_bbox(rle: RLE) -> list[int]:
    """COCO bbox ``[x, y, width, height]`` of the foreground (zeros when empty). A mask's box
    has whole-pixel corners: written as integers, which JSON readers parse fastest."""
    from pycocotools import mask as mask_utils

    if rle.area == 0:
        return [0, 0, 0, 0]
    box = mask_utils.toBbox({"size": [rle.height, rle.width], "counts": rle.counts.encode("ascii")})
    return [int(v) for v in box]

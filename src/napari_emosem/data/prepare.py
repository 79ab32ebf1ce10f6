"""Preparing a write, outside the lock: each :class:`~.updates.PaintingUpdate` checked and encoded.

Everything that depends on the update alone is done here, before the lock is taken: the image's
size (from its header, or the array), its PNG bytes, the file name it is stored under, and every
record checked and its mask encoded. What depends on the dataset (the stored painting, other
paintings' names) is checked under the lock by :mod:`.transaction`.
"""

from __future__ import annotations

import io
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, NamedTuple

import numpy as np

from ..emotions import SOMETHING_ELSE
from ..errors import DatasetError
from ..image_io import IMAGE_SUFFIXES, MAX_PIXELS, MIN_SIDE, load_image, to_rgb_uint8
from .records import ANNOTATION_FIELDS, Slot, Stimulus
from .rle import RLE, empty_rle, encode_mask
from .updates import RECORD_MODES, PaintingUpdate
from .validate import check_file_name, image_header_size, painting_field_problem

_RESERVED = frozenset(ANNOTATION_FIELDS)


@dataclass
class Prepared:
    """One painting of a write, checked and encoded; what :mod:`.transaction` plans and applies."""

    file_name: str
    alt_file_name: str | None  # the name an array is stored under when file_name is not .png
    #: None for an update of the stored painting (image=None): its size is known under the lock
    width: int | None
    height: int | None
    png: bytes | None
    source: Path | None
    rgb: np.ndarray | None
    records: list[tuple[Stimulus, RLE | None]]
    metadata: dict[str, Any] | None
    replace: bool
    mode: str
    overwrite_reviewed: bool
    #: the annotators whose records an "exact" write may remove
    writers: frozenset[str | None]

    @property
    def stored_pixels(self) -> bool:
        return self.png is None and self.source is None


class _Pixels(NamedTuple):
    """Where a painting's pixels come from, and the names they are stored under."""

    file_name: str
    alt_file_name: str | None
    width: int | None
    height: int | None
    png: bytes | None = None
    source: Path | None = None
    rgb: np.ndarray | None = None


def prepare(update: PaintingUpdate) -> Prepared:
    """Check and encode one update; raises :class:`DatasetError` listing its problems."""
    pixels = _pixels(update)
    file_name, alt = pixels.file_name, pixels.alt_file_name
    problem = check_file_name(file_name) or (alt and check_file_name(alt))
    if problem:
        raise DatasetError(problem)
    if alt is None and PurePosixPath(file_name).suffix.lower() not in IMAGE_SUFFIXES:
        raise DatasetError(f"file_name {file_name!r} must end in an image suffix ({', '.join(IMAGE_SUFFIXES)})")
    records = _checked_records(update, file_name, pixels.width, pixels.height)
    return Prepared(
        file_name, alt, pixels.width, pixels.height, pixels.png, pixels.source, pixels.rgb, records,
        update.metadata, update.replace, update.records, bool(update.overwrite_reviewed), _writers(update, records),
    )  # fmt: skip


# -- the image --
def _pixels(update: PaintingUpdate) -> _Pixels:
    image, file_name = update.image, update.file_name
    if image is None:
        if not isinstance(file_name, str):
            raise DatasetError("give the file_name of the stored painting to update (image=None)")
        return _Pixels(file_name, None, None, None)
    if isinstance(image, (str, os.PathLike)):
        return _file_pixels(Path(image).expanduser(), file_name)
    return _array_pixels(image, file_name)


def _file_pixels(source: Path, file_name: str | None) -> _Pixels:
    """An image file, copied as is: its size from its header (no pixels decoded)."""
    if file_name is None:
        file_name = source.name
    size = image_header_size(source)
    if isinstance(size, str):
        raise DatasetError(f"{source} {size}")
    width, height = size
    if min(width, height) < MIN_SIDE or width * height > MAX_PIXELS:
        load_image(source)  # raises the ImageError that explains the size limit
    return _Pixels(file_name, None, width, height, source=source)


def _array_pixels(image: np.ndarray, file_name: str | None) -> _Pixels:
    """An array, stored as PNG: under ``<stem>.png`` when ``file_name`` is not a PNG's name."""
    if file_name is None:
        raise DatasetError("give a file_name for a painting passed as an array")
    rgb = to_rgb_uint8(image, file_name)
    height, width = rgb.shape[:2]
    alt = None
    if PurePosixPath(file_name).suffix.lower() != ".png":
        alt = str(PurePosixPath(file_name).with_suffix(".png"))
        if PurePosixPath(file_name).suffix.lower() not in IMAGE_SUFFIXES:
            alt = file_name + ".png"  # "Starry night" or "v1.2": keep the whole name
    return _Pixels(file_name, alt, width, height, png=_encode_png(rgb), rgb=rgb)


def _encode_png(rgb: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG", compress_level=4)
    return buffer.getvalue()


# -- the records --
def _checked_records(
    update: PaintingUpdate, where: str, width: int | None, height: int | None
) -> list[tuple[Stimulus, RLE | None]]:
    """The update's records with their encoded masks; every problem of the painting at once."""
    records, problems = [], _painting_problems(update, where)
    seen: set[tuple[str, Slot]] = set()
    for s in update.stimuli:
        if not isinstance(s, Stimulus):
            problems.append(f"{where}: expected Stimulus records; got {type(s).__name__}")
            continue
        if (s.emotion, s.slot) in seen:
            problems.append(
                f"{where}: two records for {s.emotion!r} in one slot ({s.slot.label}); give one "
                "draft, one adjudicated record and one record per annotator for each emotion"
            )
            continue
        seen.add((s.emotion, s.slot))
        rle, problem = _checked_record(s, where, width, height)
        if problem:
            problems.append(problem)
            continue
        records.append((s, rle))
    if problems:
        raise DatasetError("bad records", problems)
    return records


def _painting_problems(update: PaintingUpdate, where: str) -> list[str]:
    problems = []
    if update.records not in RECORD_MODES:
        problems.append(f"{where}: records={update.records!r}; choose {' or '.join(map(repr, RECORD_MODES))}")
    if _json_problem(update.metadata):
        problems.append(f"{where}: metadata {_json_problem(update.metadata)}")
    else:
        field_problem = painting_field_problem({k: v for k, v in (update.metadata or {}).items() if v is not None})
        if field_problem:
            problems.append(f"{where}: {field_problem}")
    return problems


def _checked_record(s: Stimulus, where: str, width: int | None, height: int | None) -> tuple[RLE | None, str | None]:
    """The mask a record is stored with (None: the stored painting's empty mask, or none), or
    why it cannot be written."""
    rle = s._stored_rle()
    mask = None if rle is not None else s._mask
    shape = s.mask_shape
    if shape is not None and height is not None and tuple(shape) != (height, width):
        return None, f"{where}, {s.emotion}: mask is {shape[1]} × {shape[0]} px but the painting is {width} × {height}"
    if s.emotion == SOMETHING_ELSE:
        if s.area > 0:
            return None, f"{where}: '{SOMETHING_ELSE}' carries explanations only, never a mask"
        rle = None
    elif s.no_stimulus:
        if s.area > 0:
            return None, f"{where}, {s.emotion}: no_stimulus is set but the mask is not empty"
        rle = None if shape is None else empty_rle(*shape)  # no shape: the stored painting's, under the lock
    elif mask is not None:
        rle = encode_mask(mask)
    return rle, _field_problem(s, where)


def _field_problem(s: Stimulus, where: str) -> str | None:
    """Why a record's own fields cannot be written (extra fields, score, time), or None."""
    bad_extra = [k for k in s.extra if k in _RESERVED]
    if bad_extra:
        return f"{where}, {s.emotion}: extra fields {bad_extra} clash with the format's own"
    if s.score is not None and not math.isfinite(s.score):
        return f"{where}, {s.emotion}: score {s.score} is not a number; give one in [0, 1] or None"
    if not (math.isfinite(s.annotation_seconds) and s.annotation_seconds >= 0):
        return f"{where}, {s.emotion}: annotation_seconds {s.annotation_seconds} is not a time; give seconds >= 0"
    if _json_problem(s.extra):
        return f"{where}, {s.emotion}: extra fields {_json_problem(s.extra)}"
    return None


def _writers(update: PaintingUpdate, records: list[tuple[Stimulus, RLE | None]]) -> frozenset[str | None]:
    """The annotators whose records an "exact" write may remove: the writer given, else the
    annotators of the reviewed records given (an unnamed one when they name none)."""
    if update.writer is not None:
        return frozenset([update.writer])
    return frozenset(s.annotator for s, _ in records if s.reviewed and not s.adjudicated) or frozenset([None])


def _json_problem(value: Any) -> str | None:
    """Why ``value`` cannot be written into annotations.json (not JSON, NaN, too deep), or None."""
    if not value:
        return None
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        return f"cannot be written as JSON ({str(exc).splitlines()[0][:120]})"
    return None

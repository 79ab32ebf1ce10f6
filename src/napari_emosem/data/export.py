"""Exporting a dataset for other tools: APOLO layout, ArtEmis-style CSV, one PNG per pair, or a
COCO dataset with one record per pair.

Every format but COCO names a painting by its file stem (``Painting.name``), so two paintings with
the same stem (``a.jpg`` and ``a.png``) are refused before anything is written. With several
annotators, ``consensus`` (APOLO and COCO) writes each pair's consensus instead of its effective
record (``docs/annotators.md``).
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._io import (
    atomic_write_bytes,
    check_writable_dir,
    describe_os_error,
    remove_stale_temp_files,
)
from ..emotions import EMOTIONS, SOMETHING_ELSE, parse_emotions
from ..errors import EmoSEMError
from .apolo import _check_unique_names, export_apolo
from .artemis import write_artemis_csv
from .dataset import StimulusDataset

FORMATS = ("apolo", "artemis", "png", "coco")
#: the formats that can write the annotators' consensus
CONSENSUS_FORMATS = ("apolo", "coco")


@dataclass
class ExportReport:
    format: str
    out: Path
    #: files written
    files: int
    #: what they hold, for the CLI's summary line
    description: str


def export_dataset(
    dataset: StimulusDataset, fmt: str, out_dir: str | os.PathLike, *, emotions=None, consensus: bool = False
) -> ExportReport:
    """Write ``dataset`` in format ``fmt`` (apolo, artemis, png or coco) into ``out_dir``.

    Each file is replaced atomically; a full disk or a folder that turns read-only half-way
    raises EmoSEMError (the files written so far are whole, the rest is not written).
    """
    out = Path(out_dir).expanduser()
    fmt = fmt.lower()
    if consensus and fmt not in CONSENSUS_FORMATS:
        raise EmoSEMError(f"--consensus writes {' or '.join(CONSENSUS_FORMATS)}, not {fmt}")
    try:
        return _export(dataset, fmt, out, emotions, consensus)
    except OSError as exc:
        raise EmoSEMError(f"{out}: the export stopped half-way ({describe_os_error(exc)})") from None


def _export(dataset: StimulusDataset, fmt: str, out: Path, emotions, consensus: bool) -> ExportReport:
    if fmt == "apolo":
        rows, maps = export_apolo(dataset, out, emotions=emotions, consensus=consensus)
        kind = "float32 consensus maps" if consensus else "maps"
        return ExportReport(
            fmt, out, maps + 1, f"apolo.json ({rows} rows) and {maps} {kind} in {out / 'apolo_pixel_map'}"
        )
    if fmt == "artemis":
        check_writable_dir(out)
        remove_stale_temp_files(out)
        _check_unique_names(dataset)
        path, n = write_artemis_csv(dataset, out, emotions=emotions)
        return ExportReport(fmt, out, 1, f"{path} ({n} rows, one per explanation)")
    if fmt == "png":
        n = export_png(dataset, out, emotions=emotions)
        return ExportReport(fmt, out, n, f"{n} PNG masks in {out}")
    if fmt == "coco":
        paintings, records = export_coco(dataset, out, emotions=emotions, consensus=consensus)
        kind = "consensus records" if consensus else "records"
        return ExportReport(
            fmt,
            out,
            paintings + 1,
            f"{out / 'annotations.json'} ({records} {kind}, one per pair) and {paintings} images",
        )
    raise EmoSEMError(f"unknown export format {fmt!r}: choose {', '.join(FORMATS)}")


def export_coco(
    dataset: StimulusDataset, out_dir: str | os.PathLike, *, emotions=None, consensus: bool = False
) -> tuple[int, int]:
    """A stimulus dataset at ``out_dir`` (a new or empty folder: ``annotations.json`` and its
    images) with one record per (painting, emotion) pair, complete for COCO tools; returns
    (paintings, records).

    Without ``consensus`` a pair's record is its effective record. With it (see
    ``docs/annotators.md``): the adjudicated record where there is one, else a record whose mask
    is the pixels marked by at least half the votes (:func:`~napari_emosem.annotators.majority_mask`),
    ``no_stimulus`` when that is empty and at least half the votes said *no stimulus*; either way
    with every person's explanation of the pair, and the voters' names in the field ``annotators``.
    Pairs without votes (drafts, text only) keep their effective record.
    """
    from ..annotators import majority_mask
    from .dataset import PaintingUpdate
    from .records import Stimulus

    chosen = set(parse_emotions(emotions)) | {SOMETHING_ELSE}
    out = Path(out_dir).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise EmoSEMError(f"{out}: a COCO export goes into a new (or empty) folder; this one is not")
    target = StimulusDataset.open(out, create=True)
    updates, records = [], 0
    for painting in dataset.paintings:
        stimuli = []
        for emotion in dict.fromkeys(s.emotion for s in dataset.stimuli(painting)):
            if emotion not in chosen:
                continue
            pair = dataset.pair(painting, emotion)
            record = pair.effective.copy()
            votes = pair.votes
            if consensus and pair.adjudicated is None and votes:
                marked = majority_mask(pair.consensus_map())
                said_none = sum(v.no_stimulus for v in votes)
                empty = not marked.any() and 2 * said_none >= len(votes)
                record = Stimulus(
                    emotion, None if empty else marked, pair.explanations, no_stimulus=empty, source="consensus",
                    created=min(filter(None, (v.created for v in votes)), default=None),
                    modified=max(filter(None, (v.modified for v in votes)), default=None),
                )  # fmt: skip
            elif consensus and pair.explanations:
                record.explanations = pair.explanations
            record.annotator = None if consensus else record.annotator
            record.adjudicated = False  # one record per pair: nothing to decide between
            if consensus:
                record.extra = {**record.extra, "annotators": pair.annotators}
            stimuli.append(record)
        records += len(stimuli)
        updates.append(
            PaintingUpdate(dataset.image_path(painting), painting.file_name, stimuli, metadata=painting.metadata)
        )
    for start in range(0, len(updates), 256):
        target.write_paintings(updates[start : start + 256])
    target.compact()
    return len(updates), records


def export_png(dataset: StimulusDataset, out_dir: str | os.PathLike, *, emotions=None) -> int:
    """One 8-bit grayscale PNG per (painting, emotion) record that holds a mask:
    ``{painting}_{emotion}.png`` at the painting's size, 255 = stimulus, 0 = not (all black for
    a ``no_stimulus`` record). Returns the number of files written."""
    from PIL import Image

    chosen = set(parse_emotions(emotions))
    out = check_writable_dir(Path(out_dir).expanduser())
    remove_stale_temp_files(out)
    _check_unique_names(dataset)
    n = 0
    for painting in dataset.paintings:
        for s in dataset.stimuli(painting):
            if s.emotion not in chosen or not s.has_mask or s.emotion not in EMOTIONS:
                continue
            buffer = io.BytesIO()
            Image.fromarray(s.mask.astype(np.uint8) * 255).save(buffer, format="PNG")
            atomic_write_bytes(out / f"{painting.name}_{s.emotion}.png", buffer.getvalue())
            n += 1
    return n

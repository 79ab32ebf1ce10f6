"""Exporting a dataset for other tools: APOLO layout, ArtEmis-style CSV, or one PNG per pair.

Every format names a painting by its file stem (``Painting.name``), so two paintings with the
same stem (``a.jpg`` and ``a.png``) are refused before anything is written.
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
from ..emotions import EMOTIONS, parse_emotions
from ..errors import EmoSEMError
from .apolo import _check_unique_names, export_apolo
from .artemis import write_artemis_csv
from .dataset import StimulusDataset

FORMATS = ("apolo", "artemis", "png")


@dataclass
class ExportReport:
    format: str
    out: Path
    #: files written
    files: int
    #: what they hold, for the CLI's summary line
    description: str


def export_dataset(
    dataset: StimulusDataset, fmt: str, out_dir: str | os.PathLike, *, emotions=None
) -> ExportReport:
    """Write ``dataset`` in format ``fmt`` (apolo, artemis or png) into ``out_dir``.

    Each file is replaced atomically; a full disk or a folder that turns read-only half-way
    raises EmoSEMError (the files written so far are whole, the rest is not written).
    """
    out = Path(out_dir).expanduser()
    try:
        return _export(dataset, fmt.lower(), out, emotions)
    except OSError as exc:
        raise EmoSEMError(f"{out}: the export stopped half-way ({describe_os_error(exc)})") from None


def _export(dataset: StimulusDataset, fmt: str, out: Path, emotions) -> ExportReport:
    if fmt == "apolo":
        rows, maps = export_apolo(dataset, out, emotions=emotions)
        return ExportReport(fmt, out, maps + 1, f"apolo.json ({rows} rows) and {maps} maps in {out / 'apolo_pixel_map'}")
    if fmt == "artemis":
        check_writable_dir(out)
        remove_stale_temp_files(out)
        _check_unique_names(dataset)
        path, n = write_artemis_csv(dataset, out, emotions=emotions)
        return ExportReport(fmt, out, 1, f"{path} ({n} rows, one per explanation)")
    if fmt == "png":
        n = export_png(dataset, out, emotions=emotions)
        return ExportReport(fmt, out, n, f"{n} PNG masks in {out}")
    raise EmoSEMError(f"unknown export format {fmt!r}: choose {', '.join(FORMATS)}")


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

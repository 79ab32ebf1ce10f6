"""Which paintings a campaign holds: adding them without proposing, skipping them with a reason."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..data import Painting, PaintingUpdate, StimulusDataset
from ..data.records import now_iso
from ..errors import DatasetError, EmoSEMError
from .status import SKIPPED

#: paintings written per transaction: one rewrite of annotations.json per batch, and a bad file
#: costs a re-try of its batch one by one, not of the whole collection
ADD_BATCH = 256


@dataclass
class AddReport:
    added: list[str] = field(default_factory=list)
    #: file names the campaign already held (left exactly as they were)
    present: list[str] = field(default_factory=list)
    #: (input, one-line reason)
    failed: list[tuple[str, str]] = field(default_factory=list)


def add_paintings(
    dataset: StimulusDataset,
    paths: Sequence[str | os.PathLike],
    *,
    on_failure: Callable[[str, str], None] | None = None,
) -> AddReport:
    """Add image files to the campaign as *not started* (no records; their bytes are copied).

    A painting the dataset already holds under the same file name is left alone, records and all;
    a bad file is reported (one line) and the others still land.
    """
    report = AddReport()
    held = {p.file_name for p in dataset.paintings}
    todo = []
    for path in map(Path, paths):
        if path.name not in held:
            todo.append(path)
        elif _same_pixels(path, dataset.image_path(path.name)):
            report.present.append(path.name)
        else:
            reason = (f"{path}: the campaign already holds a different image named {path.name}; "
                      "rename the file to add it as another painting")
            report.failed.append((str(path), reason))
            if on_failure:
                on_failure(str(path), reason)
    for start in range(0, len(todo), ADD_BATCH):
        batch = todo[start : start + ADD_BATCH]
        try:
            written = dataset.write_paintings(
                PaintingUpdate(path, path.name, records="merge") for path in batch
            ).paintings
        except EmoSEMError:
            written = _one_by_one(dataset, batch, report, on_failure)
        report.added.extend(p.file_name for p in written)
    return report


def _same_pixels(a: Path, b: Path) -> bool:
    from ..image_io import image_digest, load_image

    try:
        if a.read_bytes() == b.read_bytes():
            return True
        return image_digest(load_image(a)) == image_digest(load_image(b))
    except (OSError, EmoSEMError):
        return False


def _one_by_one(dataset, batch: Iterable[Path], report: AddReport, on_failure) -> list[Painting]:
    written = []
    for path in batch:
        try:
            written.extend(dataset.write_paintings([PaintingUpdate(path, path.name, records="merge")]).paintings)
        except DatasetError as exc:
            reason = "; ".join(exc.problems) if exc.problems else str(exc)
            report.failed.append((str(path), reason))
            if on_failure:
                on_failure(str(path), reason)
        except EmoSEMError as exc:
            report.failed.append((str(path), str(exc)))
            if on_failure:
                on_failure(str(path), str(exc))
    return written


def skip_painting(
    dataset: StimulusDataset, painting: str | int | Painting, reason: str, *, annotator: str | None = None
) -> Painting:
    """Mark a painting *skipped* with the annotator's reason (its records stay as they are)."""
    reason = " ".join(str(reason).split())
    if not reason:
        raise EmoSEMError("say why the painting is skipped (e.g. 'not a painting', 'duplicate')")
    return _set_metadata(dataset, painting, {SKIPPED: {"reason": reason, "annotator": annotator, "at": now_iso()}})


def unskip_painting(dataset: StimulusDataset, painting: str | int | Painting) -> Painting:
    """Take a painting back into the campaign."""
    return _set_metadata(dataset, painting, {SKIPPED: None})


def _set_metadata(dataset: StimulusDataset, painting, metadata: dict) -> Painting:
    found = dataset.painting(painting)
    if found is None:
        raise DatasetError(f"{dataset.root}: no painting {painting!r} in this campaign")
    # metadata only: no record is touched (whoever wrote it) and no image read; O(the painting)
    return dataset.update_metadata(found, metadata)

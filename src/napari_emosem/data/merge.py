"""Joining several copies of a campaign (each annotator's laptop) into one dataset: ``emosem merge``.

Paintings are matched by what they show, not by their file names: two files with the same bytes
are one painting (the fast path); two files of the same size whose decoded pixels are equal are one
painting too (a JPEG saved again as PNG); the same name with other pixels is two paintings (the
later one is renamed). Within one dataset, two paintings always stay two.

Every annotator's records are kept, one per (painting, emotion, slot) (see
:class:`~napari_emosem.data.records.Slot`). When two copies hold different records in the same slot
(the same annotator changed the pair in both), the one modified last wins and the conflict is
reported; an unreviewed draft goes quietly to the newest, and is dropped where the merged pair has
a reviewed record (a draft is for pairs nobody has reviewed).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from ..errors import DatasetError
from .dataset import PaintingUpdate, StimulusDataset
from .records import ANNOTATION_SECONDS, Painting, Slot, Stimulus, parse_time, same_judgement

#: paintings per write of the merged dataset (one journal line each)
BATCH = 256


@dataclass(frozen=True)
class Conflict:
    """Two copies hold different records in one slot: ``kept`` won (modified last)."""

    file_name: str
    emotion: str
    slot: Slot
    #: (dataset folder, modified) of the record kept and of the one dropped
    kept: tuple[str, str | None]
    dropped: tuple[str, str | None]

    def line(self) -> str:
        who = "adjudicated record" if self.slot.kind == "adjudicated" else f"annotator {self.slot.label}"
        return (
            f"{self.file_name}, {self.emotion}, {who}: the two copies differ; kept {self.kept[0]}'s "
            f"(modified {self.kept[1]}), dropped {self.dropped[0]}'s (modified {self.dropped[1]})"
        )


@dataclass
class MergeReport:
    #: paintings in the merged dataset
    paintings: int = 0
    records: int = 0
    #: (dataset, its file name, the merged file name): matched to a painting of an earlier dataset
    #: by its pixels under another name
    matched_by_content: list[tuple[str, str, str]] = field(default_factory=list)
    #: (dataset, its file name, the merged file name): another painting already had its name
    renamed: list[tuple[str, str, str]] = field(default_factory=list)
    conflicts: list[Conflict] = field(default_factory=list)


@dataclass
class _Merged:
    file_name: str
    painting: Painting
    image: Path
    file_digest: str
    #: (emotion, slot) -> (record, dataset it came from)
    records: dict[tuple[str, Slot], tuple[Stimulus, str]] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    pixel_digest: str | None = None


def merge_datasets(
    sources: Sequence[StimulusDataset],
    out: str | os.PathLike,
    *,
    on_painting: Callable[[int, int], None] | None = None,
) -> MergeReport:
    """Merge ``sources`` into a new dataset at ``out`` (a new or empty folder); see the module."""
    out = Path(out).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DatasetError(f"{out}: the merged dataset goes into a new (or empty) folder; this one is not")
    roots = [ds.root.resolve() for ds in sources]
    if len(set(roots)) != len(roots):
        raise DatasetError("a dataset is given twice; give each copy once")
    report = MergeReport()
    merged: list[_Merged] = []
    by_bytes: dict[str, list[_Merged]] = {}
    by_size: dict[tuple[int, int], list[_Merged]] = {}
    by_name: dict[str, _Merged] = {}
    total = sum(len(ds) for ds in sources)
    done = 0
    for ds in sources:
        label = str(ds.root)
        claimed: set[int] = set()  # merged paintings matched by this dataset already (one each)
        for painting in ds.paintings:
            path = ds.image_path(painting)
            digest = _file_digest(path)
            target = _match(painting, path, digest, by_bytes, by_size, claimed)
            if target is None:
                name = _free_name(painting.file_name, by_name)
                if name != painting.file_name:
                    report.renamed.append((label, painting.file_name, name))
                target = _Merged(name, painting, path, digest)
                merged.append(target)
                by_bytes.setdefault(digest, []).append(target)
                by_size.setdefault((painting.width, painting.height), []).append(target)
                by_name[name] = target
            elif target.file_name != painting.file_name:
                report.matched_by_content.append((label, painting.file_name, target.file_name))
            claimed.add(id(target))
            _merge_metadata(target.metadata, painting.metadata)
            for record in ds.records(painting):
                _merge_record(target, record, label, report)
            done += 1
            if on_painting:
                on_painting(done, total)

    dataset = StimulusDataset.open(out, create=True)
    updates = []
    for item in merged:
        stimuli = [record for record, _ in item.records.values()]
        updates.append(PaintingUpdate(item.image, item.file_name, stimuli, metadata=item.metadata or None))
    for start in range(0, len(updates), BATCH):
        dataset.write_paintings(updates[start : start + BATCH])
    dataset.compact()
    report.paintings = len(merged)
    # (drafts of pairs that have a reviewed record were not written)
    report.records = sum(len(dataset.records(p)) for p in dataset.paintings)
    return report


def _match(painting: Painting, path: Path, digest: str, by_bytes, by_size, claimed: set[int]) -> _Merged | None:
    """The merged painting ``painting`` shows, if any: same bytes first, else same decoded pixels;
    of several, the one of the same file name."""
    candidates = [m for m in by_bytes.get(digest, []) if id(m) not in claimed]
    if not candidates:
        same_size = [m for m in by_size.get((painting.width, painting.height), []) if id(m) not in claimed]
        if same_size:
            pixels = _pixel_digest(path)
            candidates = [m for m in same_size if _merged_pixels(m) == pixels]
    if not candidates:
        return None
    return next((m for m in candidates if m.file_name == painting.file_name), candidates[0])


def _merged_pixels(item: _Merged) -> str:
    if item.pixel_digest is None:
        item.pixel_digest = _pixel_digest(item.image)
    return item.pixel_digest


def _pixel_digest(path: Path) -> str:
    from ..image_io import image_digest, load_image

    return image_digest(load_image(path))


def _file_digest(path: Path) -> str:
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _free_name(name: str, taken: dict[str, _Merged]) -> str:
    """``name``, or ``stem-2.ext``, ``stem-3.ext``, … when another painting has it."""
    if name not in taken:
        return name
    path = PurePosixPath(name)
    n = 2
    while str(path.with_name(f"{path.stem}-{n}{path.suffix}")) in taken:
        n += 1
    return str(path.with_name(f"{path.stem}-{n}{path.suffix}"))


def _merge_metadata(into: dict[str, Any], metadata: dict[str, Any]) -> None:
    """The first copy's value of each key; the painting's own time is the largest (the copies of
    one campaign share what was spent before they were split: adding them would count it twice)."""
    for key, value in metadata.items():
        if key == ANNOTATION_SECONDS:
            into[key] = max(float(into.get(key) or 0.0), float(value or 0.0))
        elif into.get(key) is None:
            into[key] = value


def _merge_record(item: _Merged, record: Stimulus, label: str, report: MergeReport) -> None:
    key = (record.emotion, record.slot)
    held = item.records.get(key)
    if held is None:
        item.records[key] = (record, label)
        return
    other, other_label = held
    if same_judgement(other, record):
        if record.annotation_seconds > other.annotation_seconds:  # revisited in one copy only
            other.annotation_seconds = record.annotation_seconds
        return
    never = parse_time("0001-01-01T00:00:00+00:00")
    newer = (parse_time(record.modified) or never) > (parse_time(other.modified) or never)
    kept, dropped = (record, label), (other, other_label)
    if not newer:
        kept, dropped = dropped, kept
    item.records[key] = kept
    if record.reviewed:  # two copies of one draft slot differing is no one's conflict
        report.conflicts.append(
            Conflict(
                item.file_name, record.emotion, key[1], (kept[1], kept[0].modified), (dropped[1], dropped[0].modified)
            )
        )

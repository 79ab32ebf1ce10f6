"""Proposing for many paintings into a stimulus dataset (what ``emosem propose`` does).

Each painting is read, proposed for and written on its own: a bad file, a full disk or a folder
that turned read-only is reported on one line and the batch goes on; a painting is either written
whole (image, masks, drafts in one locked crash-safe update, then its overlay) or not at all.
Re-proposing a painting updates the proposed emotions in place and leaves its other records alone;
a record a person reviewed is kept unless ``overwrite_reviewed`` (see
:func:`napari_emosem.data.records.replaces`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ._io import describe_os_error
from .errors import EmoSEMError
from .image_io import IMAGE_SUFFIXES, load_image, open_image
from .predictor import Predictor, Proposal

OVERLAYS = "overlays"


@dataclass
class ProposeReport:
    written: list[str] = field(default_factory=list)
    #: (input, one-line reason)
    failed: list[tuple[str, str]] = field(default_factory=list)
    #: (file name, emotion) of reviewed records kept instead of the new proposal
    kept_reviewed: list[tuple[str, str]] = field(default_factory=list)
    #: (file name, emotion) of reviewed records the proposals replaced (``overwrite_reviewed``)
    replaced_reviewed: list[tuple[str, str]] = field(default_factory=list)


def expand_inputs(inputs: Iterable[str | os.PathLike]) -> list[Path]:
    """Image files as given; folders expand to the images directly inside them (sorted)."""
    out = []
    for item in inputs:
        path = Path(item).expanduser()
        try:
            is_dir = path.is_dir()
        except OSError:  # a name too long, a link loop: reading it reports the problem
            is_dir = False
        if not is_dir:
            out.append(path)
            continue
        try:
            entries = sorted(path.iterdir())
        except OSError as exc:
            raise EmoSEMError(f"{path}: cannot list the folder ({exc.strerror or exc})") from None
        # is_file: regular files only (a FIFO in the folder is not a painting)
        out.extend(p for p in entries if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    return out


def shard(items: Sequence, rank: int, world_size: int) -> list:
    """Every ``world_size``-th item from ``rank``: how torchrun processes split a folder."""
    return list(items[rank::world_size])


def propose_paintings(
    paths: Sequence[str | os.PathLike],
    predictor: Predictor,
    emotions: Sequence[str],
    out: str | os.PathLike,
    *,
    overlays: bool = True,
    overwrite_reviewed: bool = False,
    on_painting: Callable[[Path, list[Proposal] | None, str | None], None] | None = None,
    batch_size: int = 1,
    num_workers: int | None = None,
) -> ProposeReport:
    """Propose ``emotions`` for each painting and write them into the dataset at ``out``.

    Only the proposed emotions' records are written (the painting's other records stay); a
    reviewed record is kept rather than replaced unless ``overwrite_reviewed``.
    ``batch_size`` > 1 (EmoSEM only) reads paintings in ``num_workers`` worker processes and
    encodes and drafts them in batches (:mod:`napari_emosem.collection`); the records written
    are the same.
    """
    from ._io import remove_stale_temp_files
    from .data import PaintingUpdate, Stimulus, StimulusDataset

    dataset = StimulusDataset.open(out, create=True)
    remove_stale_temp_files(dataset.root / OVERLAYS)  # what killed runs left; never a live writer's
    report = ProposeReport()
    if batch_size > 1 and hasattr(predictor, "propose_batch"):
        from .collection import batched_proposals

        results = batched_proposals(
            [Path(p) for p in paths], predictor, emotions, batch_size=batch_size, num_workers=num_workers
        )
    else:
        results = _one_at_a_time(paths, predictor, emotions)
    for path, image, proposals, error in results:
        try:
            if error is not None:
                raise EmoSEMError(error)
            stimuli = [
                Stimulus(
                    emotion=p.emotion,
                    mask=p.mask,
                    explanations=[p.explanation] if p.explanation else [],
                    source=predictor.source,
                    edited=False,
                    score=round(float(p.score), 4),
                )
                for p in proposals
            ]
            # Keep the original file's bytes unless reading changed its geometry (EXIF rotation)
            source = path if _stored_size(path) == image.shape[:2] else image
            written = dataset.write_paintings([
                PaintingUpdate(source, path.name, stimuli, records="merge", overwrite_reviewed=overwrite_reviewed)
            ])
            painting = written.paintings[0]
            report.kept_reviewed.extend(written.kept_reviewed)
            report.replaced_reviewed.extend(written.replaced_reviewed)
            if overlays:
                target = dataset.root / OVERLAYS / f"{Path(painting.file_name).stem}.png"
                try:
                    _write_overlay(target, image, proposals, predictor)
                except OSError as exc:
                    raise EmoSEMError(
                        f"{path}: written to the dataset, but not its overlay ({describe_os_error(exc)})"
                    ) from None
        except EmoSEMError as exc:
            report.failed.append((str(path), str(exc)))
            if on_painting:
                on_painting(path, None, str(exc))
            continue
        report.written.append(painting.file_name)
        if on_painting:
            on_painting(path, proposals, None)
    return report


def _one_at_a_time(paths, predictor: Predictor, emotions):
    for path in map(Path, paths):
        try:
            image = load_image(path)
            predictor.set_image(image)
            proposals = predictor.propose(emotions, explain=True)
        except EmoSEMError as exc:
            yield path, None, None, str(exc)
            continue
        yield path, image, proposals, None


def _stored_size(path: Path) -> tuple[int, int] | None:
    """(height, width) of the file's pixels as stored, before any EXIF rotation; from the header."""
    try:
        with open_image(path) as img:
            return img.height, img.width
    except EmoSEMError:
        return None


def _write_overlay(target: Path, image, proposals, predictor: Predictor) -> None:
    from PIL import Image

    from ._io import atomic_open
    from .overlay import render_overlay

    sheet = render_overlay(image, proposals, model=predictor.description)
    with atomic_open(target) as handle:
        Image.fromarray(sheet).save(handle, format="PNG")

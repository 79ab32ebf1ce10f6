"""Proposing into a stimulus dataset (what ``emosem propose`` does).

Three entry points share one way of writing a painting's drafts:

* :func:`propose_paintings`: image files into a dataset (``emosem propose IMAGES --out DS``);
* :func:`propose_pending`: every painting of a campaign that is neither done nor skipped, with a
  new model (``emosem propose --out DS --pending``; the widget's *Re-propose the rest*): a
  generator of :class:`ProposeStep`, so that a caller shows progress and cancels by not asking
  for the next painting;
* :func:`propose_painting`: one painting of the dataset (the widget's prefetch of the next one).

Each painting is read, proposed for and written on its own: a bad file, a full disk or a folder
that turned read-only is reported on one line and the batch goes on; a painting is either written
whole (image, masks, drafts in one locked crash-safe update, then its overlay) or not at all.
Re-proposing a painting updates the proposed emotions' drafts in place and leaves its other
records alone; a pair a person reviewed gets no draft unless ``overwrite_reviewed`` (see
:func:`napari_emosem.data.records.replaces`), and the dataset entry points do not even propose
for it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
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
    reviewed pair keeps its records unless ``overwrite_reviewed``.
    ``batch_size`` > 1 (EmoSEM only) reads paintings in ``num_workers`` worker processes and
    encodes and drafts them in batches (:mod:`napari_emosem.collection`); the records written
    are the same.
    """
    from ._io import remove_stale_temp_files
    from .data import StimulusDataset

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
            # Keep the original file's bytes unless reading changed its geometry (EXIF rotation)
            source = path if _stored_size(path) == image.shape[:2] else image
            painting = _write_drafts(
                dataset, predictor, proposals, image, source, path.name, report,
                overwrite_reviewed=overwrite_reviewed, overlays=overlays, where=str(path),
            )  # fmt: skip
        except EmoSEMError as exc:
            report.failed.append((str(path), str(exc)))
            if on_painting:
                on_painting(path, None, str(exc))
            continue
        report.written.append(painting.file_name)
        if on_painting:
            on_painting(path, proposals, None)
    return report


@dataclass(frozen=True)
class ProposeStep:
    """One painting of :func:`propose_pending`: ``index`` of ``total`` (1-based)."""

    index: int
    total: int
    file_name: str
    #: the emotions proposed (the campaign's emotions nobody has reviewed yet)
    emotions: tuple[str, ...]
    proposals: list[Proposal] | None
    #: why the painting was not written (one line), or None
    error: str | None = None


def pending_paintings(dataset, emotions: Sequence[str] | None = None) -> list[tuple[str, tuple[str, ...]]]:
    """(file name, emotions to propose) for every painting of the campaign that is neither done
    nor skipped: the emotions (default: the campaign's, ``campaign.json``) none of whose records a
    person has reviewed. Statuses come from :mod:`napari_emosem.campaign.status`."""
    from .campaign import campaign_progress, read_settings
    from .campaign.settings import CampaignSettings
    from .campaign.status import PaintingStatus

    settings = read_settings(dataset.root)
    if emotions is not None:
        settings = CampaignSettings(tuple(emotions))
    out = []
    for progress in campaign_progress(dataset, settings).paintings:
        if progress.status in (PaintingStatus.DONE, PaintingStatus.SKIPPED):
            continue
        todo = tuple(e for e in settings.emotions if e not in progress.reviewed)
        if todo:
            out.append((progress.painting.file_name, todo))
    return out


def propose_pending(
    dataset,
    predictor: Predictor,
    emotions: Sequence[str] | None = None,
    *,
    overlays: bool = False,
    paintings: Sequence[tuple[str, tuple[str, ...]]] | None = None,
    report: ProposeReport | None = None,
) -> Iterator[ProposeStep]:
    """Propose with ``predictor`` for every painting of the campaign ``dataset`` (a
    :class:`~napari_emosem.data.StimulusDataset`) that is neither done nor skipped, one painting
    at a time; yields a :class:`ProposeStep` after each (progress). Stop iterating to cancel: the
    paintings written so far stay written, whole.

    Only pairs nobody has reviewed are proposed for; their drafts (an older model's included) are
    replaced by the new ones. A pair an annotator reviews while this runs keeps their record (the
    write checks again under the dataset's lock: :attr:`ProposeReport.kept_reviewed`).
    ``paintings`` (default: :func:`pending_paintings`) fixes the work list, e.g. one shard of it;
    ``report`` collects what was written.
    """
    todo = pending_paintings(dataset, emotions) if paintings is None else list(paintings)
    report = report if report is not None else ProposeReport()
    for index, (file_name, chosen) in enumerate(todo, start=1):
        try:
            image = dataset.image(file_name)
            proposals = _propose(predictor, image, chosen)
            _write_drafts(
                dataset, predictor, proposals, image, None, file_name, report, overlays=overlays, where=file_name
            )
        except EmoSEMError as exc:
            report.failed.append((file_name, str(exc)))
            yield ProposeStep(index, len(todo), file_name, chosen, None, str(exc))
            continue
        report.written.append(file_name)
        yield ProposeStep(index, len(todo), file_name, chosen, proposals)


def propose_painting(
    dataset,
    painting,
    predictor: Predictor,
    emotions: Sequence[str] | None = None,
    *,
    image=None,
    overlays: bool = False,
) -> tuple[list[Proposal], ProposeReport]:
    """Propose for one painting of ``dataset`` and write the drafts into it (the widget's
    prefetch of the next painting): the emotions (default: the campaign's) nobody has reviewed.
    ``image`` saves reading the painting again when the caller holds its pixels. Returns the
    proposals (none when every emotion is reviewed) and what was written."""
    from .campaign import painting_status, read_settings

    found = dataset.painting(painting)
    if found is None:
        raise EmoSEMError(f"{dataset.root}: no painting {painting!r} in this dataset")
    wanted = tuple(emotions) if emotions is not None else read_settings(dataset.root).emotions
    reviewed = set(painting_status(found, dataset.stimuli(found), wanted).reviewed)
    chosen = tuple(e for e in wanted if e not in reviewed)
    report = ProposeReport()
    if not chosen:
        return [], report
    pixels = dataset.image(found) if image is None else image
    proposals = _propose(predictor, pixels, chosen)
    _write_drafts(dataset, predictor, proposals, pixels, None, found.file_name, report, overlays=overlays,
                  where=found.file_name)  # fmt: skip
    report.written.append(found.file_name)
    return proposals, report


def _propose(predictor: Predictor, image, emotions: Sequence[str]) -> list[Proposal]:
    predictor.set_image(image)
    return predictor.propose(list(emotions), explain=True)


def _write_drafts(
    dataset, predictor: Predictor, proposals: list[Proposal], image, source, file_name: str,
    report: ProposeReport, *, overwrite_reviewed: bool = False, overlays: bool, where: str,
):  # fmt: skip
    """Write ``proposals`` (made on ``image``) as drafts of painting ``file_name`` (``source``: the
    image to store, None for the dataset's own painting), then its overlay; returns the painting."""
    from .data import PaintingUpdate, Stimulus

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
    written = dataset.write_paintings(
        [PaintingUpdate(source, file_name, stimuli, records="merge", overwrite_reviewed=overwrite_reviewed)]
    )
    painting = written.paintings[0]
    report.kept_reviewed.extend(written.kept_reviewed)
    report.replaced_reviewed.extend(written.replaced_reviewed)
    if overlays:
        target = dataset.root / OVERLAYS / f"{Path(painting.file_name).stem}.png"
        try:
            _write_overlay(target, image, proposals, predictor)
        except OSError as exc:
            raise EmoSEMError(
                f"{where}: written to the dataset, but not its overlay ({describe_os_error(exc)})"
            ) from None
    return painting


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

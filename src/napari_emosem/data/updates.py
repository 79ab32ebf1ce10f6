"""What a caller asks a write to do (:class:`PaintingUpdate`) and what it reports back
(:class:`WriteReport`): the request and answer of :meth:`.StimulusDataset.write_paintings`."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .records import Painting, Stimulus

#: How a write treats the painting's records: see :class:`PaintingUpdate`.
RECORD_MODES = ("exact", "merge")


@dataclass
class PaintingUpdate:
    """One painting to write with :meth:`StimulusDataset.write_paintings`."""

    #: RGB uint8 array (stored as PNG), the path of an image file (its bytes are copied as is), or
    #: None: the painting the dataset holds under ``file_name``, pixels unchanged (a records- or
    #: metadata-only update: no image is read or written)
    image: np.ndarray | str | os.PathLike | None
    #: name under ``images/``; defaults to the source file's name for a path
    file_name: str | None = None
    stimuli: Sequence[Stimulus] = ()
    #: merged into the painting's metadata (artist, title, style, …); a None value removes a key
    metadata: dict[str, Any] | None = None
    #: overwrite an image of the same file name with different pixels
    replace: bool = False
    #: "exact" (an annotator's save): the writer's part of the painting becomes ``stimuli``: for
    #: every emotion, the writer's own record and the draft are removed unless given again
    #: (deleting or rejecting one is a person's decision); other annotators' records and the
    #: adjudicated one stay unless a record for their slot is given.
    #: "merge": only the records given are written, each into its slot; the painting's other
    #: records stay (a model's proposals for some emotions, an adjudication).
    records: str = "exact"
    #: let an unreviewed record (a model's draft) replace the reviewed records of its pair; see
    #: :func:`napari_emosem.data.records.replaces`. Without it such a record is kept out and
    #: counted in :attr:`WriteReport.kept_reviewed`.
    overwrite_reviewed: bool = False
    #: whose save this is, for "exact" (whose records it may remove); default: the annotator the
    #: given reviewed records name (an unnamed annotator when they name none)
    writer: str | None = None


@dataclass
class WriteReport:
    """What :meth:`StimulusDataset.write_paintings` wrote."""

    #: the paintings written, in the order given
    paintings: list[Painting] = dataclasses.field(default_factory=list)
    #: (file name, emotion) of reviewed pairs that kept their records instead of taking a draft
    kept_reviewed: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    #: (file name, emotion) of pairs whose reviewed records an unreviewed write replaced or
    #: dropped (only with ``overwrite_reviewed``)
    replaced_reviewed: list[tuple[str, str]] = dataclasses.field(default_factory=list)

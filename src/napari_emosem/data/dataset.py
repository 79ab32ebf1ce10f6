"""The stimulus dataset: a folder with ``images/`` and a COCO ``annotations.json``.

One :class:`StimulusDataset` API serves the plugin, ``propose``, ``train`` and ``evaluate``::

    ds = StimulusDataset.open("my-dataset", create=True)
    ds.write_painting(rgb, "starry-night.png", [Stimulus("awe", mask, ["the swirling sky"])])
    for painting, stimulus in ds.pairs(with_masks_only=True):
        ...

Opening validates the whole file and the journal lines written since it (see :mod:`.validate`);
the checked parse of a large dataset is cached under the hash of its bytes (:mod:`.parse_cache`).
Writing upserts paintings under a cross-process lock, catching up with the file first, so
concurrent writers never lose each other's paintings. Each write appends one line to the journal
(O(the paintings written), crash-safe: see :mod:`.store`); when the journal has grown enough (see
:class:`Compaction`) it is folded into ``annotations.json``. A reviewed record is never replaced by
a model's draft unless the write asks for it (:func:`.records.replaces`), and a person's save
replaces only their own records (:class:`~.records.Slot`). The format is documented in
``docs/dataset-format.md``.

:class:`StimulusDataset` is the facade; the jobs behind it live in their own modules:
:mod:`.reading` (opening, the parse-cache path), :mod:`.queries` (paintings, pairs, counts),
:mod:`.content_hash`, :mod:`.writing` (the locked write, the journal, compaction) with
:mod:`.prepare` (checking updates outside the lock) and :mod:`.transaction` (planning and applying
them under it), and :mod:`.coco_json` (the document as JSON).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._io import check_writable_dir
from ..errors import DatasetError
from ..image_io import load_image
from . import store
from .content_hash import HASH_SCHEME, ContentHasher
from .parse_cache import ParseCache
from .queries import RecordQueries
from .reading import DatasetReader, DiskState, LocalCopy
from .records import Painting, PairRecords, Stimulus, copy_painting
from .store import IMAGES
from .updates import RECORD_MODES, PaintingUpdate, WriteReport
from .validate import Document
from .writing import Compaction, DatasetWriter, journal_bytes

__all__ = [
    "DEFAULT_COMPACTION", "DEFAULT_PARSE_CACHE", "HASH_SCHEME", "IMAGES", "RECORD_MODES",
    "Compaction", "PaintingUpdate", "StimulusDataset", "WriteReport",
]  # fmt: skip

#: when writes fold the journal into annotations.json unless :meth:`StimulusDataset.open` is told
DEFAULT_COMPACTION = Compaction()
#: :meth:`StimulusDataset.open`'s parse cache: in the user cache folder, looked up when used
DEFAULT_PARSE_CACHE = ParseCache()


class StimulusDataset:
    """A stimulus dataset on disk. Create with :meth:`open`."""

    def __init__(
        self, root: Path, document: Document, *, lock_timeout: float, disk: DiskState | None,
        compaction: Compaction = DEFAULT_COMPACTION, parse_cache: ParseCache | None = None,
    ):  # fmt: skip
        self._root = root
        #: the dataset as this process holds it, shared by the jobs below
        self._copy = LocalCopy(document, disk)
        self._reader = DatasetReader(root, self._copy, parse_cache)
        self._writer = DatasetWriter(
            root, self._copy, self._reader, lock_timeout=lock_timeout, compaction=compaction
        )  # fmt: skip
        self._queries = RecordQueries(self._copy)
        self._hasher = ContentHasher()

    # what the document was read from (tests compare a cached open with a fresh one through these)
    @property
    def _doc(self) -> Document:
        return self._copy.doc

    @property
    def _disk(self) -> DiskState | None:
        return self._copy.disk

    @property
    def _pending(self) -> dict[str, Path]:
        return self._copy.pending

    @property
    def _from_cache(self) -> bool:
        """Whether the last read of annotations.json came from the parse cache."""
        return self._copy.from_cache

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(
        cls,
        root: str | os.PathLike,
        *,
        create: bool = False,
        lock_timeout: float = store.DEFAULT_LOCK_TIMEOUT,
        compaction: Compaction = DEFAULT_COMPACTION,
        parse_cache: ParseCache | None = DEFAULT_PARSE_CACHE,
    ) -> StimulusDataset:
        """Open the dataset in folder ``root`` (or the folder of an ``annotations.json`` path).

        Everything is validated; problems raise one :class:`DatasetError` listing all of them.
        With ``create=True`` a folder without ``annotations.json`` opens as an empty dataset
        (the folder is created; the file is written by the first write). ``compaction`` says when
        writes fold the journal into ``annotations.json``. ``parse_cache`` keeps the checked parse
        of a large dataset in the user cache folder, so that opening it again unchanged skips
        reading and checking its records (see :mod:`.parse_cache`; image files are checked each
        time); None: never.
        """
        root = Path(root).expanduser()
        if root.name == store.ANNOTATIONS and root.is_file():
            root = root.parent
        if root.exists() and not root.is_dir():
            raise DatasetError(f"{root} is a file; a stimulus dataset is a folder")
        if not root.exists() and not create:
            raise DatasetError(
                f"{root}: no such folder; give the folder of a stimulus dataset (the one that "
                f"holds {store.ANNOTATIONS} and images/)"
            )
        if create:
            check_writable_dir(root)
        dataset = cls(
            root, Document(), lock_timeout=lock_timeout, disk=None, compaction=compaction, parse_cache=parse_cache
        )
        dataset._reader.header_cache.load(root)
        found = dataset._reader.load(check_images=True)
        if not found and not create:
            raise DatasetError(
                f"{root} has no {store.ANNOTATIONS}, so it is not a stimulus dataset; give the "
                f"folder that holds {store.ANNOTATIONS} and images/ (emosem propose --out, "
                "import-apolo --out and the annotator's Export create one)"
            )
        return dataset

    def reload(self) -> None:
        """Re-read the dataset (e.g. after another process wrote to it)."""
        self._reader.load(check_images=True)

    # ------------------------------------------------------------------ reading
    @property
    def root(self) -> Path:
        """The dataset folder."""
        return self._root

    @property
    def images_dir(self) -> Path:
        return store.images_dir(self._root)

    @property
    def paintings(self) -> list[Painting]:
        """All paintings, in file order."""
        return [copy_painting(p) for p in self._doc.paintings.values()]

    def __len__(self) -> int:
        return len(self._doc.paintings)

    def __repr__(self) -> str:
        n_records = sum(len(r) for r in self._doc.records.values())
        return f"StimulusDataset({str(self._root)!r}, paintings={len(self)}, records={n_records})"

    def painting(self, key: str | int | Painting) -> Painting | None:
        """The painting with this id, file name, or name (file stem, when unique); else None."""
        found = self._queries.find(key)
        return None if found is None else copy_painting(found)

    def _require(self, key: str | int | Painting) -> Painting:
        found = self._queries.find(key)
        if found is None:
            raise DatasetError(f"{self._root}: no painting {key!r} in this dataset")
        return found

    def stimuli(self, painting: str | int | Painting) -> list[Stimulus]:
        """One record per annotated emotion of ``painting``: the pair's effective record (the
        adjudicated one, else a person's, else the draft: see
        :func:`~napari_emosem.data.records.effective_record`). Copies: changing them changes
        nothing until written. Every record of a pair: :meth:`records`."""
        return self._queries.stimuli(self._require(painting))

    def stimulus(self, painting: str | int | Painting, emotion: str) -> Stimulus | None:
        """The effective record of (painting, emotion), or None when that pair is not annotated."""
        pair = self.pair(painting, emotion)
        return None if pair is None else pair.effective

    def records(self, painting: str | int | Painting, emotion: str | None = None) -> list[Stimulus]:
        """Every record of ``painting`` (of one ``emotion`` when given): drafts, each annotator's,
        adjudicated ones; each says whose it is (:attr:`Stimulus.slot`). Copies."""
        return self._queries.records(self._require(painting), emotion)

    def pair(self, painting: str | int | Painting, emotion: str) -> PairRecords | None:
        """Everything the pair (painting, emotion) holds, or None when it holds nothing."""
        return self._queries.pair(self._require(painting), emotion)

    def every_pair(
        self, emotions: str | Iterable[str] | None = None, *, include_something_else: bool = False
    ) -> list[PairRecords]:
        """:class:`~napari_emosem.data.records.PairRecords` of every annotated pair of the chosen
        emotions (default: all eight), painting by painting: what multi-annotator readers need
        (votes, consensus maps, adjudicated records, every annotator's explanations)."""
        return self._queries.every_pair(emotions, include_something_else)

    def annotators(self) -> list[str]:
        """Names of the annotators with a reviewed record (``(unnamed)`` for records without a
        name), sorted; adjudicators count by their adjudicated records too."""
        return self._queries.annotators()

    def image_path(self, painting: str | int | Painting) -> Path:
        """The painting's image file."""
        return self._image_file(self._require(painting).file_name)

    def _image_file(self, file_name: str) -> Path:
        staged = self._pending.get(file_name)
        if staged is not None and staged.exists():  # committed, not moved into place yet
            return staged
        return self.images_dir / file_name

    def image(self, painting: str | int | Painting) -> np.ndarray:
        """The painting's pixels, RGB uint8 (H, W, 3)."""
        p = self._require(painting)
        path = self._image_file(p.file_name)
        rgb = load_image(path)
        if rgb.shape[:2] != (p.height, p.width):
            raise DatasetError(
                f"{path} is {rgb.shape[1]} × {rgb.shape[0]} px but the "
                f"dataset says {p.width} × {p.height}; the file was replaced outside "
                "napari-emosem. Restore it, or write the painting again"
            )
        return rgb

    def pairs(
        self,
        emotions: str | Iterable[str] | None = None,
        *,
        with_masks_only: bool = False,
        include_something_else: bool = False,
    ) -> list[tuple[Painting, Stimulus]]:
        """(painting, stimulus) for every annotated pair of the chosen emotions (default: all
        eight), with the pair's effective record (see :meth:`stimuli`).

        ``with_masks_only`` keeps records that hold a mask, including the empty masks of
        ``no_stimulus`` records (negatives for training); text-only records are dropped.
        "something else" records (text only) come along only with ``include_something_else``.
        Masks are decoded when read (see :class:`Stimulus`), so this list stays small.
        """
        return self._queries.pairs(emotions, with_masks_only, include_something_else)

    def summary(self) -> dict[str, Any]:
        """Counts for checkpoint metadata and status lines (JSON-serialisable): pairs counted by
        their effective record; ``records`` counts every record, ``annotators`` names them."""
        return {"root": str(self._root), **self._queries.summary()}

    def content_hash(self) -> str:
        """A stable hash of what training reads: every painting's file bytes and size, and each
        record's emotion, mask, explanations and no-stimulus flag, and which record is adjudicated
        (not ids, times or authors). Two datasets with the same content hash train the same model.
        """
        return self._hasher.content_hash(self._doc, self._image_file)

    @property
    def journal_bytes(self) -> int:
        """Bytes of journal not yet folded into ``annotations.json`` (0: the file is complete)."""
        return journal_bytes(self._root)

    # ------------------------------------------------------------------ writing
    def write_painting(
        self,
        image: np.ndarray | str | os.PathLike | None,
        file_name: str | None = None,
        stimuli: Sequence[Stimulus] = (),
        *,
        metadata: dict[str, Any] | None = None,
        replace: bool = False,
        records: str = "exact",
        overwrite_reviewed: bool = False,
        writer: str | None = None,
    ) -> Painting:
        """Add a painting with its records, or update the painting stored under the same file
        name (its id and the ids of its records stay).

        ``image`` is an RGB array (stored as PNG; a ``file_name`` not ending in ``.png`` is
        stored as ``<stem>.png`` unless the dataset already holds a painting of exactly that
        name and the same pixels), the path of an image file (its bytes are copied), or None for
        the painting stored under ``file_name`` as it is. A stored image with different pixels is
        only overwritten with ``replace=True``. ``records``, ``overwrite_reviewed`` and
        ``writer``: see :class:`PaintingUpdate`; a reviewed record is kept rather than replaced by
        an unreviewed one unless ``overwrite_reviewed`` (:meth:`write_paintings` reports how many).
        """
        update = PaintingUpdate(
            image, file_name, stimuli, metadata=metadata, replace=replace, records=records,
            overwrite_reviewed=overwrite_reviewed, writer=writer,
        )  # fmt: skip
        return self.write_paintings([update]).paintings[0]

    def update_metadata(self, painting: str | int | Painting, metadata: dict[str, Any]) -> Painting:
        """Change only a painting's metadata (a None value removes a key): skipping it
        (``skipped``), its ``annotation_seconds``, its artist… No record is touched and no image
        read: O(the painting)."""
        found = self._require(painting)
        update = PaintingUpdate(None, found.file_name, (), metadata=metadata, records="merge")
        return self.write_paintings([update]).paintings[0]

    def write_paintings(self, updates: Iterable[PaintingUpdate]) -> WriteReport:
        """Write several paintings in one locked transaction (one line of the journal).

        Either every painting is written or none is (a refused painting raises
        :class:`DatasetError` listing every problem, before anything is written).
        """
        return self._writer.write(updates)

    def remove_painting(self, painting: str | int | Painting, *, delete_image: bool = True) -> bool:
        """Remove a painting and all its records; returns False when it was not there."""
        key = painting.file_name if isinstance(painting, Painting) else painting
        return self._writer.remove(key, self._queries.find, delete_image=delete_image)

    def compact(self) -> bool:
        """Fold the journal into ``annotations.json`` now, so that the file alone is the whole
        dataset (what ``emosem compact`` and exports do before other tools read it). Returns False
        when there was nothing to fold."""
        return self._writer.compact()

"""Reading a COCO stimulus file into records, checking everything at once.

:func:`parse_document` turns the JSON object of ``annotations.json`` into a :class:`Document` or
raises one :class:`~napari_emosem.errors.DatasetError` whose ``problems`` list every bad record:
missing or unreadable image files, sizes that disagree, unknown emotions, duplicate ids,
references to missing images or categories, undecodable RLE, file names that leave the folder,
masks on "something else". Nothing is half-imported: either the whole file is usable or nothing
is returned.

Image files are checked for existence and size from their header only (PIL reads no pixels), and
the result is remembered per (file, mtime, size) in :class:`HeaderCache`, which the dataset keeps
in its folder, so that re-opening a large dataset costs one ``stat`` per image. Compressed RLE
strings are checked all at once (:func:`~.rle.check_compressed`).

The same checks apply to each line of the journal (:func:`apply_entry`): a painting saved since
the last compaction is validated like one read from ``annotations.json``.

Nothing in the file can crash the reader: NaN, Infinity and JSON nested deeper than Python can
parse are refused with a line and column, polygons are checked before pycocotools rasterises them
and RLE before it decodes them (both trust their input: wild values crash the process), and image
files must be regular files inside the dataset's ``images/`` folder.
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, NamedTuple

from ..emotions import EMOTIONS, SOMETHING_ELSE, normalise_emotion
from ..errors import DatasetError, ImageError, UnknownEmotionError
from .records import (
    ANNOTATION_FIELDS,
    ANNOTATION_SECONDS,
    IMAGE_CORE_FIELDS,
    SKIPPED,
    Painting,
    Stimulus,
)
from .rle import RLE, RLEError, check_compressed, empty_rle, parse_segmentation

#: Identifies files written by this project; ``format_version`` grows when the layout changes.
FORMAT_NAME = "napari-emosem stimulus dataset"
#: 2: several records per (painting, emotion): one per annotator, a draft, an adjudicated one
FORMAT_VERSION = 2
#: Category ids we write: the 8 emotions in EMOTIONS order, then "something else".
CATEGORY_IDS: dict[str, int] = {e: i + 1 for i, e in enumerate(EMOTIONS)} | {SOMETHING_ELSE: 9}
#: How journal lines name emotions (always with this project's category ids)
JOURNAL_CATEGORIES: dict[int, str] = {i: e for e, i in CATEGORY_IDS.items()}
#: Largest width × height an image entry may claim (2 gigapixels, ten times the largest painting
#: napari-emosem reads): pycocotools counts pixels in 32-bit integers, so larger masks overflow it.
MAX_DECLARED_PIXELS = 1 << 31
#: Deepest nesting of a kept extra field (COCO itself needs 3 levels).
MAX_EXTRA_DEPTH = 32
#: Longest file or folder name most file systems allow, in bytes.
NAME_MAX = 255


class StoredRecord(NamedTuple):
    """One annotation as held in memory: its id in the file and the stimulus (mask as RLE)."""

    id: int
    stimulus: Stimulus


@dataclass
class _Index:
    by_name: dict[str, Painting]
    #: annotation id -> image id
    owners: dict[int, int]
    #: the largest ids used (new ones count on from them; ids are never reused while a document is open)
    last_image_id: int = 0
    last_record_id: int = 0


@dataclass
class Document:
    """The content of a dataset: ``annotations.json`` and the journal lines replayed on it."""

    info: dict[str, Any] = field(default_factory=dict)
    #: by image id, in file order
    paintings: dict[int, Painting] = field(default_factory=dict)
    #: image id -> records, in file order (several per emotion: one per slot)
    records: dict[int, list[StoredRecord]] = field(default_factory=dict)
    #: top-level keys other than info/images/annotations/categories (e.g. COCO "licenses")
    extra: dict[str, Any] = field(default_factory=dict)

    #: lookups built on first use and kept current by :meth:`put` and :meth:`drop`
    _index: _Index | None = field(default=None, repr=False, compare=False)

    @property
    def index(self) -> _Index:
        if self._index is None:
            self._index = _Index(
                by_name={p.file_name: p for p in self.paintings.values()},
                owners={r.id: image_id for image_id, records in self.records.items() for r in records},
                last_image_id=max(self.paintings, default=0),
            )
            self._index.last_record_id = max(self._index.owners, default=0)
        return self._index

    def put(self, painting: Painting, records: list[StoredRecord]) -> None:
        """Add or replace a painting (by id) with its records."""
        index = self.index
        old = self.paintings.get(painting.id)
        if old is not None:
            index.by_name.pop(old.file_name, None)
            for r in self.records.get(painting.id, []):
                index.owners.pop(r.id, None)
        self.paintings[painting.id] = painting
        self.records[painting.id] = records
        index.by_name[painting.file_name] = painting
        for r in records:
            index.owners[r.id] = painting.id
        index.last_image_id = max(index.last_image_id, painting.id)
        index.last_record_id = max([index.last_record_id, *(r.id for r in records)])

    def drop(self, image_id: int) -> Painting | None:
        """Remove a painting and its records; returns it (None when it was not there)."""
        index = self.index
        painting = self.paintings.pop(image_id, None)
        if painting is not None:
            index.by_name.pop(painting.file_name, None)
        for r in self.records.pop(image_id, []):
            index.owners.pop(r.id, None)
        return painting

    def copy(self) -> Document:
        """A copy to change in a transaction (paintings and records are shared, not copied:
        a transaction replaces them, never changes them in place)."""
        index = self._index
        return Document(
            info=dict(self.info),
            paintings=dict(self.paintings),
            records=dict(self.records),
            extra=dict(self.extra),
            _index=None
            if index is None
            else _Index(dict(index.by_name), dict(index.owners), index.last_image_id, index.last_record_id),
        )

    @property
    def snapshot_id(self) -> str | None:
        """The id of the ``annotations.json`` this document starts from (journal lines name it)."""
        value = self.info.get("write_id")
        return value if isinstance(value, str) and value else None


class HeaderCache:
    """(width, height) of image files read from their headers, by (file, mtime, size).

    Kept in the dataset folder (:data:`CACHE_FILE`) so that opening a dataset again costs a
    ``stat`` per image instead of opening each one. It is a cache: an unreadable or odd file is
    ignored, and an entry counts only while the file's mtime and size are the ones recorded.
    """

    CACHE_FILE = ".emosem-image-sizes.json"

    def __init__(self) -> None:
        #: file name under images/ -> (mtime_ns, size, width, height)
        self._entries: dict[str, tuple[int, int, int, int]] = {}
        self._changed = False

    def size(self, path: Path, name: str | None = None) -> tuple[int, int] | str:
        """:func:`image_header_size` of ``path``, remembered under ``name`` (its file name under
        images/; None: not remembered)."""
        try:
            st = path.stat()
        except FileNotFoundError:
            return "is missing"
        except OSError as exc:
            return f"cannot be read ({exc.strerror or exc})"
        if name is not None:
            known = self._entries.get(name)
            if known is not None and known[:2] == (st.st_mtime_ns, st.st_size):
                return known[2], known[3]
        result = image_header_size(path)
        if name is not None and not isinstance(result, str):
            self._entries[name] = (st.st_mtime_ns, st.st_size, *result)
            self._changed = True
        return result

    def load(self, root: Path) -> None:
        try:
            obj = json.loads((root / self.CACHE_FILE).read_text(encoding="utf-8"))
            entries = {
                str(name): tuple(int(v) for v in value)
                for name, value in obj["sizes"].items()
                if isinstance(value, list) and len(value) == 4 and all(_is_int(v) and v >= 0 for v in value)
            }
        except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError):
            return
        self._entries.update(entries)  # type: ignore[arg-type]

    def save(self, root: Path, names: Iterable[str]) -> None:
        """Keep the entries of ``names`` (the dataset's images) in the folder; best effort."""
        if not self._changed:
            return
        from .._io import atomic_write_json

        keep = {name: list(self._entries[name]) for name in names if name in self._entries}
        try:
            atomic_write_json(root / self.CACHE_FILE, {"sizes": keep}, indent=None)
        except (OSError, ValueError):  # a read-only dataset: the next open reads the headers again
            return
        self._changed = False


def check_file_name(name: Any) -> str | None:
    """Why ``name`` cannot be an image file name inside ``images/``, or None when it is fine."""
    if not isinstance(name, str) or not name.strip():
        return "file_name must be a non-empty string"
    if "\x00" in name:
        return "file_name contains a NUL character"
    if "\\" in name:
        return f"file_name {name!r} uses a backslash; use '/' between folders"
    posix, windows = PurePosixPath(name), PureWindowsPath(name)
    if posix.is_absolute() or windows.is_absolute() or windows.drive:
        return f"file_name {name!r} is an absolute path; it must be relative to the images/ folder"
    if ".." in posix.parts:
        return f"file_name {name!r} leaves the images/ folder ('..')"
    if name.endswith("/") or posix.name in ("", "."):
        return f"file_name {name!r} names a folder, not a file"
    if posix.parts and posix.parts[0] == ".emosem-staging":
        return f"file_name {name!r} is inside the folder napari-emosem writes its unfinished images to"
    long = [part for part in posix.parts if len(part.encode("utf-8", "surrogateescape")) > NAME_MAX]
    if long:
        return f"file_name {name!r} is too long: a name may hold at most {NAME_MAX} bytes"
    return None


def image_header_size(path: Path) -> tuple[int, int] | str:
    """(width, height) of the image at ``path`` as :func:`~napari_emosem.image_io.load_image`
    will return it (EXIF rotation applied), read from the header; or a problem string."""
    from ..image_io import header_size

    try:
        return header_size(path)
    except ImageError as exc:
        # the message starts with the path; the caller names the file its own way
        result = str(exc).removeprefix(f"{path}: ").removeprefix(f"{path} ")
        return "is " + result if result.startswith(("a folder", "not")) else result


def outside_folder(path: Path, folder: Path, real_dirs: dict[str, str] | None = None) -> Path | None:
    """Where ``path`` really leads when a link takes it out of ``folder``, else None.

    ``real_dirs`` remembers resolved folders between calls: checking thousands of images of one
    folder then costs an ``lstat`` each, not a resolution of every component of every path.
    """
    real_dirs = {} if real_dirs is None else real_dirs

    def real(directory: str) -> str:
        found = real_dirs.get(directory)
        if found is None:
            found = real_dirs[directory] = os.path.realpath(directory)
        return found

    text = os.fspath(path)
    try:
        base = real(os.fspath(folder))
        parent, name = os.path.split(text)
        where = os.path.join(real(parent), name)
        if stat.S_ISLNK(os.lstat(text).st_mode):
            where = os.path.realpath(text)
    except FileNotFoundError:
        return None  # reported as missing
    except (OSError, ValueError):
        return None
    return None if where == base or where.startswith(base.rstrip(os.sep) + os.sep) else Path(where)


def _depth(value: Any, limit: int) -> int:
    """Nesting depth of a JSON value, counted up to ``limit + 1`` (iteratively: no recursion)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (list, dict)):
            deepest = max(deepest, depth)
            if depth > limit:
                return depth
            stack.extend((v, depth + 1) for v in (item.values() if isinstance(item, dict) else item))
    return deepest


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_seconds(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0


@dataclass
class _Context:
    """What checking the paintings of one document needs, shared by the whole file and each
    journal line."""

    root: Path
    check_images: bool
    header_cache: HeaderCache | None
    pending: dict[str, Path]
    real_dirs: dict[str, str] = field(default_factory=dict)
    #: root / "images", made once: a dataset of thousands of paintings checks one file each
    image_dir: Path = field(init=False)

    def __post_init__(self) -> None:
        self.image_dir = self.root / "images"


def parse_document(
    obj: Any,
    root: Path,
    *,
    check_images: bool = True,
    header_cache: HeaderCache | None = None,
    pending: dict[str, Path] | None = None,
    later: set[int] = frozenset(),
) -> Document:
    """Validate a COCO object read from ``root/annotations.json``; see the module docstring.

    ``pending`` maps file names to staged files of a committed write not yet moved into place
    (:func:`~napari_emosem.data.store.pending_images`): those are checked instead. The image files
    of the paintings in ``later`` (ids: those the journal writes or removes) are not checked here:
    :func:`check_image_files` checks them once the journal is replayed.
    """
    context = _Context(root, check_images, header_cache, pending or {})
    info, images, categories, annotations = _top_level(obj, root)
    doc = Document(info=dict(info))
    doc.extra = {k: v for k, v in obj.items() if k not in ("info", "images", "categories", "annotations")}
    problems = _parse_images(images, doc, later, context)
    category_emotion, category_problems = _parse_categories(categories)
    problems.extend(category_problems)
    image_ids_listed = {img.get("id") for img in images if isinstance(img, dict)}
    records, record_problems = _parse_annotations(
        annotations, doc.paintings, category_emotion, skip_images=image_ids_listed
    )
    problems.extend(record_problems)
    for image_id, record in records:
        doc.records[image_id].append(record)
    _raise(problems, f"{root / 'annotations.json'}", "open the dataset again")
    return doc


def _top_level(obj: Any, root: Path) -> tuple[dict, list, list, list]:
    """``info``, ``images``, ``categories`` and ``annotations``, or the problems that stop reading."""
    problems: list[str] = []
    if not isinstance(obj, dict):
        raise DatasetError(
            f"{root / 'annotations.json'}: expected a JSON object with images, categories and "
            f"annotations; found {type(obj).__name__}"
        )
    info = obj.get("info") or {}
    if not isinstance(info, dict):
        problems.append("'info' must be an object")
        info = {}
    version = info.get("format_version")
    if info.get("format") == FORMAT_NAME and _is_int(version) and version > FORMAT_VERSION:
        problems.append(
            f"written in format version {version}, newer than this napari-emosem reads "
            f"({FORMAT_VERSION}); upgrade napari-emosem"
        )

    images = obj.get("images")
    categories = obj.get("categories", [])
    annotations = obj.get("annotations", [])
    for key, value in (("images", images), ("categories", categories), ("annotations", annotations)):
        if not isinstance(value, list):
            problems.append(f"'{key}' must be a list; found {type(value).__name__}")
    if problems:
        raise DatasetError(f"{root / 'annotations.json'} is not a usable COCO file", problems)
    return info, images, categories, annotations


def _parse_images(images: list[Any], doc: Document, later: set[int], context: _Context) -> list[str]:
    """Put the paintings of the ``images`` entries into ``doc``; the problems of the others."""
    problems: list[str] = []
    seen_names: dict[str, int] = {}
    for index, img in enumerate(images):
        painting, problem = _parse_image(img, f"images[{index}]")
        if problem is None:
            if painting.id in doc.paintings:
                problem = f"image id {painting.id}: duplicate image id"
            elif painting.file_name in seen_names:
                problem = (
                    f"image id {painting.id} ({painting.file_name!r}): the same file_name as image "
                    f"id {seen_names[painting.file_name]}"
                )
        if problem is None:
            seen_names[painting.file_name] = painting.id
            if painting.id not in later:
                problem = _image_file_problem(painting, context)
        if problem is not None:
            problems.append(problem)
            continue
        doc.paintings[painting.id] = painting
        doc.records[painting.id] = []
    return problems


def _parse_categories(categories: list[Any]) -> tuple[dict[int, str], list[str]]:
    """The emotion of each category id ("" for a category with a problem listed), and the problems."""
    problems: list[str] = []
    category_emotion: dict[int, str] = {}
    emotion_category: dict[str, int] = {}
    for index, cat in enumerate(categories):
        if not isinstance(cat, dict):
            problems.append(f"categories[{index}]: must be an object")
            continue
        cat_id, name = cat.get("id"), cat.get("name")
        if not _is_int(cat_id):
            problems.append(f"categories[{index}]: 'id' must be an integer; found {cat_id!r}")
            continue
        if cat_id in category_emotion:
            problems.append(f"category id {cat_id}: duplicate category id")
            continue
        try:
            emotion = normalise_emotion(name if isinstance(name, str) else "")
        except UnknownEmotionError:
            problems.append(
                f"category id {cat_id}: unknown emotion {name!r}; categories must be the "
                f"ArtEmis emotions ({', '.join(EMOTIONS)}) or '{SOMETHING_ELSE}'"
            )
            category_emotion[cat_id] = ""
            continue
        if emotion in emotion_category:
            problems.append(
                f"category id {cat_id}: emotion {emotion!r} is already category {emotion_category[emotion]}"
            )
            category_emotion[cat_id] = ""
            continue
        category_emotion[cat_id] = emotion
        emotion_category[emotion] = cat_id
    return category_emotion, problems


def apply_entry(
    doc: Document,
    entry: Any,
    root: Path,
    *,
    where: str,
    check_images: bool = True,
    header_cache: HeaderCache | None = None,
    pending: dict[str, Path] | None = None,
) -> None:
    """Replay one journal line on ``doc`` (in place), checked like ``annotations.json``: either
    the whole line applies or :class:`DatasetError` lists its problems and ``doc`` is unchanged.

    A line holds ``paintings``: each ``{"image": <COCO image entry>, "annotations": [<COCO
    annotation entry>, ...]}``, the painting's whole state after the write (its category ids are
    always this project's own, :data:`CATEGORY_IDS`); and ``removed``: ids of removed paintings.
    """
    context = _Context(root, check_images, header_cache, pending or {})
    problems: list[str] = []
    if not isinstance(entry, dict):
        _raise([f"expected an object; found {type(entry).__name__}"], where, "open the dataset again")
    removed, paintings = entry.get("removed", []), entry.get("paintings", [])
    if not isinstance(removed, list) or not isinstance(paintings, list):
        _raise(["'removed' and 'paintings' must be lists"], where, "open the dataset again")
    index = doc.index
    gone = set()
    for image_id in removed:
        if not _is_int(image_id) or image_id not in doc.paintings:
            problems.append(f"removes image id {image_id!r}, which is not in the dataset")
        gone.add(image_id)
    names: set[str] = set()
    staged: list[tuple[Painting, list[StoredRecord]]] = []
    for k, item in enumerate(paintings):
        if not isinstance(item, dict) or not isinstance(item.get("annotations", []), list):
            problems.append(f'paintings[{k}]: expected {{"image": {{...}}, "annotations": [...]}}')
            continue
        painting, problem = _parse_image(item.get("image"), f"paintings[{k}]")
        if problem is None:
            other = index.by_name.get(painting.file_name)
            if painting.file_name in names or (other is not None and other.id != painting.id and other.id not in gone):
                problem = f"image id {painting.id} ({painting.file_name!r}): another painting has this file_name"
            else:
                names.add(painting.file_name)
                problem = _image_file_problem(painting, context)
        if problem is not None:
            problems.append(problem)
            continue
        records, record_problems = _parse_annotations(
            item.get("annotations", []), {painting.id: painting}, JOURNAL_CATEGORIES, taken_ids=index.owners
        )
        problems.extend(record_problems)
        staged.append((painting, [record for _, record in records]))
    _raise(problems, where, "open the dataset again")
    for image_id in removed:
        doc.drop(image_id)
    for painting, records in staged:
        doc.put(painting, records)


def check_image_files(
    doc: Document,
    root: Path,
    ids: Iterable[int],
    *,
    header_cache: HeaderCache | None = None,
    pending: dict[str, Path] | None = None,
    file: str = "annotations.json.journal",
) -> None:
    """Check the image files of the paintings ``ids`` (those still in ``doc``) as
    :func:`parse_document` does: the journal's paintings, once it is replayed (a later line may
    delete a file an earlier one wrote); or, with ``file="annotations.json"``, the paintings of
    a parse read from the cache (:mod:`.parse_cache`), in the words of :func:`parse_document`."""
    context = _Context(root, True, header_cache, pending or {})
    paintings = [doc.paintings[i] for i in ids if i in doc.paintings]
    problems = [problem for p in paintings if (problem := _image_file_problem(p, context))]
    _raise(problems, f"{root / file}", "open the dataset again")


def _raise(problems: list[str], where: str, then: str) -> None:
    if len(problems) == 1:  # one line: the problem itself
        error = DatasetError(f"{where}: {problems[0]}; nothing was loaded. Fix this record (or remove it) and {then}")
        error.problems = problems
        raise error
    if problems:
        raise DatasetError(
            f"{where}: {len(problems)} problems found; nothing was loaded. Fix these records (or "
            f"remove them) and {then}",
            problems,
        )


def _parse_image(img: Any, where: str) -> tuple[Painting | None, str | None]:
    """A painting from a COCO image entry, or the problem with it (not its file: see
    :func:`_image_file_problem`; nor uniqueness, which depends on the other entries)."""
    if not isinstance(img, dict):
        return None, f"{where}: must be an object"
    image_id = img.get("id")
    if not _is_int(image_id):
        return None, f"{where}: 'id' must be an integer; found {image_id!r}"
    where = f"image id {image_id}"
    file_name = img.get("file_name")
    name_problem = check_file_name(file_name)
    if name_problem:
        return None, f"{where}: {name_problem}"
    where = f"image id {image_id} ({file_name!r})"
    width, height = img.get("width"), img.get("height")
    if not (_is_int(width) and _is_int(height) and width > 0 and height > 0):
        return None, f"{where}: 'width' and 'height' must be positive integers"
    if width * height > MAX_DECLARED_PIXELS:
        return None, f"{where}: {width} × {height} px is not the size of a real image"
    metadata = {k: v for k, v in img.items() if k not in IMAGE_CORE_FIELDS}
    deep = [k for k, v in metadata.items() if _depth(v, MAX_EXTRA_DEPTH) > MAX_EXTRA_DEPTH]
    if deep:  # it would be written back: deeper than JSON writers follow is refused now
        return None, f"{where}: field {deep[0]!r} is nested more than {MAX_EXTRA_DEPTH} levels deep"
    problem = painting_field_problem(metadata)
    if problem:
        return None, f"{where}: {problem}"
    return Painting(image_id, file_name, width, height, metadata), None


def painting_field_problem(metadata: dict[str, Any]) -> str | None:
    """What is wrong with the painting fields the format defines (``skipped``,
    ``annotation_seconds``) in ``metadata``, or None."""
    skipped = metadata.get(SKIPPED)
    if skipped is not None:
        if not isinstance(skipped, dict) or not isinstance(skipped.get("reason"), str) or not skipped["reason"].strip():
            shape = '{"reason": text, "annotator": name or null, "at": time}'
            return f"'{SKIPPED}' must be null or {shape}; found {skipped!r}"
        for key in ("annotator", "at"):
            if skipped.get(key) is not None and not isinstance(skipped[key], str):
                return f"'{SKIPPED}.{key}' must be a string or null; found {skipped[key]!r}"
    seconds = metadata.get(ANNOTATION_SECONDS)
    if seconds is not None and not _is_seconds(seconds):
        return f"'{ANNOTATION_SECONDS}' must be a number of seconds >= 0; found {seconds!r}"
    return None


def _image_file_problem(painting: Painting, context: _Context) -> str | None:
    """Why the painting's image file cannot be read as the entry says (None when it can, or when
    images are not checked)."""
    if not context.check_images:
        return None
    file_name = painting.file_name
    where = f"image id {painting.id} ({file_name!r})"
    image_dir = context.image_dir
    path = image_dir / file_name
    outside = outside_folder(path, image_dir, context.real_dirs)
    if outside is not None:
        return (
            f"{where}: images/{file_name} is a link to {outside}, outside the dataset's "
            "images/ folder; copy the file in instead of linking to it"
        )
    cache = context.header_cache or HeaderCache()
    staged = context.pending.get(file_name)
    size = cache.size(staged) if staged is not None else "is missing"
    if size == "is missing":  # not staged, or moved into place meanwhile
        size = cache.size(path, file_name)
    if isinstance(size, str):
        return f"{where}: images/{file_name} {size}"
    if size != (painting.width, painting.height):
        return (
            f"{where}: images/{file_name} is {size[0]} × {size[1]} px but the file "
            f"says {painting.width} × {painting.height}"
        )
    return None


#: an annotation entry on its way through: (entry, id, image id, painting, emotion)
_Item = tuple[dict, int, int, Painting, str]


def _parse_annotations(
    annotations: list[Any],
    paintings: dict[int, Painting],
    category_emotion: dict[int, str],
    *,
    skip_images: set[Any] = frozenset(),
    taken_ids: dict[int, int] | None = None,
) -> tuple[list[tuple[int, StoredRecord]], list[str]]:
    """Records from COCO annotation entries, and every problem with them.

    ``skip_images``: image ids whose entry already has a problem listed (their annotations are
    not reported again). ``taken_ids``: annotation ids already used by other paintings (id ->
    image id), for a journal line checked against the document it extends.
    """
    problems: list[str] = []
    items = _locate_annotations(annotations, paintings, category_emotion, skip_images, taken_ids or {}, problems)
    checked = _check_segmentations(items)
    records = _slot_records(items, checked, problems)
    return records, problems


def _locate_annotations(
    annotations: list[Any],
    paintings: dict[int, Painting],
    category_emotion: dict[int, str],
    skip_images: set[Any],
    taken_ids: dict[int, int],
    problems: list[str],
) -> list[_Item]:
    """Which record of which painting and emotion each entry is (problems appended)."""
    items: list[_Item] = []
    seen_ann: set[int] = set()
    for index, ann in enumerate(annotations):
        if type(ann) is not dict:
            problems.append(f"annotations[{index}]: must be an object")
            continue
        ann_id = ann.get("id")
        if type(ann_id) is not int:
            problems.append(f"annotations[{index}]: 'id' must be an integer; found {ann_id!r}")
            continue
        if ann_id in seen_ann:
            problems.append(f"annotation id {ann_id}: duplicate annotation id")
            continue
        seen_ann.add(ann_id)
        image_id, cat_id = ann.get("image_id"), ann.get("category_id")
        painting = paintings.get(image_id) if type(image_id) is int else None
        if painting is None:
            if image_id in skip_images:
                continue  # that image already has a problem listed
            problems.append(f"annotation id {ann_id}: image_id {image_id!r} is not in 'images'")
            continue
        if taken_ids and taken_ids.get(ann_id, image_id) != image_id:
            problems.append(
                f"annotation id {ann_id}: duplicate annotation id (image id {taken_ids[ann_id]} has it too)"
            )
            continue
        emotion = category_emotion.get(cat_id) if type(cat_id) is int else None
        if emotion is None:
            problems.append(f"annotation id {ann_id}: category_id {cat_id!r} is not in 'categories'")
            continue
        if emotion:  # else the category's problem is listed already
            items.append((ann, ann_id, image_id, painting, emotion))
    return items


def _check_segmentations(items: list[_Item]) -> dict[int, RLE | str]:
    """Compressed RLE strings of the right size, checked all at once: item index -> the mask, or
    why it cannot be decoded (items of other segmentations are checked one by one later)."""
    batch: list[int] = []
    counts: list[str] = []
    for k, (ann, _, _, painting, _) in enumerate(items):
        seg = ann.get("segmentation")
        if (
            type(seg) is dict
            and type(seg.get("counts")) is str
            and seg.get("size") == [painting.height, painting.width]
        ):
            batch.append(k)
            counts.append(seg["counts"])
    checked: dict[int, RLE | str] = {}
    if batch:
        heights = [items[k][3].height for k in batch]
        widths = [items[k][3].width for k in batch]
        areas, errors = check_compressed(counts, heights, widths)
        areas = areas.tolist()
        for j, k in enumerate(batch):
            error = errors.get(j)
            checked[k] = (
                f"undecodable segmentation: {error}" if error else RLE(heights[j], widths[j], counts[j], areas[j])
            )
    return checked


def _slot_records(
    items: list[_Item], checked: dict[int, RLE | str], problems: list[str]
) -> list[tuple[int, StoredRecord]]:
    """The records, one per slot of each pair (problems appended)."""
    records: list[tuple[int, StoredRecord]] = []
    seen_slot: dict[tuple, int] = {}
    for k, (ann, ann_id, image_id, painting, emotion) in enumerate(items):
        record, record_problems = _parse_annotation(ann, emotion, painting, checked.get(k))
        if record_problems:
            where = f"annotation id {ann_id} ({painting.file_name!r}, {emotion})"
            problems.extend(f"{where}: {p}" for p in record_problems)
            continue
        # the slot (see Slot), as a plain tuple: cheaper to make and hash by the ten thousand
        key = (image_id, emotion, record.adjudicated, record.reviewed and record.annotator, record.reviewed)
        first = seen_slot.setdefault(key, ann_id)
        if first != ann_id:
            slot = record.slot
            what = {"draft": "unreviewed draft", "adjudicated": "adjudicated record"}.get(
                slot.kind, f"record of annotator {slot.label!r}"
            )
            problems.append(
                f"annotation id {ann_id} ({painting.file_name!r}, {emotion}): a second record for "
                f"this (painting, emotion): a second {what}; the first is annotation id "
                f"{first} (keep one draft, one adjudicated record and one record per "
                "annotator for each pair)"
            )
            continue
        records.append((image_id, StoredRecord(ann_id, record)))
    return records


# written for speed (a large dataset has tens of thousands of records): one lookup and one type
# test per field on the way through, the messages only when something is wrong; each step appends
# its problems to the record's list
def _parse_annotation(
    ann: dict, emotion: str, painting: Painting, checked: RLE | str | None = None
) -> tuple[Stimulus | None, list[str]]:
    problems: list[str] = []
    get = ann.get
    rle = _segmentation(get, painting, checked, problems)
    no_stimulus = get("no_stimulus", False)
    has_mask = get("has_mask", True)
    if type(no_stimulus) is not bool:
        problems.append(f"'no_stimulus' must be true or false; found {no_stimulus!r}")
    if type(has_mask) is not bool:
        problems.append(f"'has_mask' must be true or false; found {has_mask!r}")
    if problems:
        return None, problems
    rle, no_stimulus = _stored_mask(rle, emotion, no_stimulus, has_mask, painting, problems)
    explanations = _explanations(get, problems)
    source, edited, annotator, reviewed, adjudicated = _provenance(get, problems)
    seconds, score, created, modified = _times_and_score(get, problems)
    if problems:
        return None, problems
    extra = _extra_fields(ann, problems)
    if problems:
        return None, problems
    if reviewed is None:
        reviewed = Stimulus.derive_reviewed(source, edited, no_stimulus, annotator)
    stimulus = Stimulus._checked(
        rle, emotion, explanations if explanations is not get("explanations") else list(explanations),
        no_stimulus, source, edited, annotator, None if score is None else float(score), created, modified,
        extra, reviewed or adjudicated, adjudicated, float(seconds),
    )  # fmt: skip
    return stimulus, []


def _segmentation(get: Any, painting: Painting, checked: RLE | str | None, problems: list[str]) -> RLE | None:
    """The entry's mask: checked in the batch already, or parsed here (any COCO segmentation)."""
    if checked is not None:
        if type(checked) is str:
            problems.append(checked)
            return None
        return checked
    segmentation = get("segmentation")
    if segmentation is not None:
        try:
            return parse_segmentation(segmentation, painting.height, painting.width)
        except RLEError as exc:
            problems.append(f"undecodable segmentation: {exc}")
    return None


def _stored_mask(
    rle: RLE | None, emotion: str, no_stimulus: bool, has_mask: bool, painting: Painting, problems: list[str]
) -> tuple[RLE | None, bool]:
    """The mask the record holds (None: text only) and its no-stimulus flag, by what it says it is."""
    if emotion == SOMETHING_ELSE:
        if rle is not None and rle.area > 0:
            problems.append(
                f"'{SOMETHING_ELSE}' carries explanations only, never a mask; remove its "
                "segmentation (or give the record one of the eight emotions)"
            )
        return None, False
    if no_stimulus:
        if rle is not None and rle.area > 0:
            problems.append("no_stimulus is true but the mask is not empty")
        return empty_rle(painting.height, painting.width), no_stimulus
    if not has_mask:
        if rle is not None and rle.area > 0:
            problems.append("has_mask is false but the segmentation is not empty")
        return None, no_stimulus
    return rle, no_stimulus


def _explanations(get: Any, problems: list[str]) -> list[str]:
    """``explanations``, with a legacy single ``explanation`` first when it is not among them."""
    explanations = get("explanations")
    explanation = get("explanation")
    if explanations is None:
        explanations = []
    elif type(explanations) is not list or not all(type(e) is str for e in explanations):
        problems.append("'explanations' must be a list of strings")
        explanations = []
    if explanation is not None and type(explanation) is not str:
        problems.append("'explanation' must be a string")
        explanation = None
    if explanation and explanation not in explanations:
        explanations = [explanation, *explanations]
    return explanations


def _provenance(get: Any, problems: list[str]) -> tuple[Any, Any, Any, Any, Any]:
    """Whose the record is: source, edited, annotator, reviewed (None: derived), adjudicated."""
    source = get("source", "human")
    if source is None:
        source = "human"
    elif type(source) is not str:
        problems.append(f"'source' must be a string ('human' or 'model:<id>'); found {source!r}")
    edited = get("edited", False)
    if type(edited) is not bool:
        problems.append(f"'edited' must be true or false; found {edited!r}")
    annotator = get("annotator")
    if annotator is not None and type(annotator) is not str:
        problems.append(f"'annotator' must be a string or null; found {annotator!r}")
    reviewed = get("reviewed")
    if reviewed is not None and type(reviewed) is not bool:
        problems.append(f"'reviewed' must be true or false; found {reviewed!r}")
    adjudicated = get("adjudicated", False)
    if type(adjudicated) is not bool:
        problems.append(f"'adjudicated' must be true or false; found {adjudicated!r}")
    elif adjudicated and reviewed is False:
        problems.append("an adjudicated record is a reviewer's decision: 'reviewed' must be true")
    return source, edited, annotator, reviewed, adjudicated


def _times_and_score(get: Any, problems: list[str]) -> tuple[Any, Any, Any, Any]:
    """annotation_seconds, score, created, modified."""
    seconds = get("annotation_seconds", 0)
    if seconds is None:
        seconds = 0
    elif type(seconds) is not int and not _is_seconds(seconds) or type(seconds) is int and seconds < 0:
        problems.append(f"'annotation_seconds' must be a number of seconds >= 0; found {seconds!r}")
    score = get("score")
    if score is not None and not (type(score) in (int, float) and math.isfinite(score)):
        problems.append(f"'score' must be a number or null; found {score!r}")
    created, modified = get("created"), get("modified")
    if created is not None and type(created) is not str:
        problems.append(f"'created' must be an ISO 8601 string or null; found {created!r}")
    if modified is not None and type(modified) is not str:
        problems.append(f"'modified' must be an ISO 8601 string or null; found {modified!r}")
    return seconds, score, created, modified


def _extra_fields(ann: dict, problems: list[str]) -> dict[str, Any]:
    """Fields the format does not know, kept as they are (if not nested too deep)."""
    unknown = ann.keys() - _KNOWN_FIELDS
    if not unknown:
        return {}
    extra = {k: ann[k] for k in ann if k in unknown}
    for key, value in extra.items():
        if isinstance(value, (dict, list)) and _depth(value, MAX_EXTRA_DEPTH) > MAX_EXTRA_DEPTH:
            problems.append(f"field {key!r} is nested more than {MAX_EXTRA_DEPTH} levels deep")
    return extra


_KNOWN_FIELDS = frozenset(ANNOTATION_FIELDS)


class _NotJSON(ValueError):
    """NaN, Infinity or a number too large for a float: Python reads them, JSON has none."""


def _refuse_constant(name: str) -> Any:
    raise _NotJSON(name)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NotJSON(text)
    return value


def _line_column(text: str, index: int) -> tuple[int, int]:
    line = text.count("\n", 0, index) + 1
    return line, index - (text.rfind("\n", 0, index) + 1) + 1


def parse_json_text(text: str, path: os.PathLike | str) -> Any:
    """``json.loads`` with an error that names the file, line and column. NaN and Infinity
    (which Python's json reads but JSON does not have) and nesting deeper than the parser can
    follow are refused too."""
    import json

    fix = "fix the file by hand or restore it from a backup"
    try:
        return json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except json.JSONDecodeError as exc:
        raise DatasetError(
            f"{path}: not valid JSON at line {exc.lineno}, column {exc.colno} ({exc.msg}); {fix}"
        ) from None
    except _NotJSON as exc:
        token = str(exc)
        found = re.search(r"(?<![\w.\"])" + re.escape(token) + r"(?![\w.\"])", text)
        where = " at line {}, column {}".format(*_line_column(text, found.start())) if found else ""
        raise DatasetError(
            f"{path}: not valid JSON{where} ({token} is not a JSON number: use a finite number or null); {fix}"
        ) from None
    except RecursionError:
        raise DatasetError(
            f"{path}: not valid JSON for this reader: arrays or objects nested thousands of levels deep; {fix}"
        ) from None

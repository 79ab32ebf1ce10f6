"""Reading a COCO stimulus file into records, checking everything at once.

:func:`parse_document` turns the JSON object of ``annotations.json`` into a :class:`Document` or
raises one :class:`~napari_emosem.errors.DatasetError` whose ``problems`` list every bad record:
missing or unreadable image files, sizes that disagree, unknown emotions, duplicate ids,
references to missing images or categories, undecodable RLE, file names that leave the folder,
masks on "something else". Nothing is half-imported: either the whole file is usable or nothing
is returned.

Image files are checked for existence and size from their header only (PIL reads no pixels), and
the result is remembered per (path, mtime, size) so that re-reading a large dataset on every write
costs one ``stat`` per image.

Nothing in the file can crash the reader: NaN, Infinity and JSON nested deeper than Python can
parse are refused with a line and column, polygons are checked before pycocotools rasterises them
and RLE before it decodes them (both trust their input: wild values crash the process), and image
files must be regular files inside the dataset's ``images/`` folder.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from ..emotions import EMOTIONS, SOMETHING_ELSE, normalise_emotion
from ..errors import DatasetError, ImageError, UnknownEmotionError
from .records import ANNOTATION_FIELDS, IMAGE_CORE_FIELDS, Painting, Stimulus
from .rle import RLE, RLEError, empty_rle, parse_segmentation

#: Identifies files written by this project; ``format_version`` grows when the layout changes.
FORMAT_NAME = "napari-emosem stimulus dataset"
FORMAT_VERSION = 1
#: Category ids we write: the 8 emotions in EMOTIONS order, then "something else".
CATEGORY_IDS: dict[str, int] = {e: i + 1 for i, e in enumerate(EMOTIONS)} | {SOMETHING_ELSE: 9}
#: Largest width × height an image entry may claim (2 gigapixels, ten times the largest painting
#: napari-emosem reads): pycocotools counts pixels in 32-bit integers, so larger masks overflow it.
MAX_DECLARED_PIXELS = 1 << 31
#: Deepest nesting of a kept extra field (COCO itself needs 3 levels).
MAX_EXTRA_DEPTH = 32
#: Longest file or folder name most file systems allow, in bytes.
NAME_MAX = 255


@dataclass
class StoredRecord:
    """One annotation as held in memory: its id in the file and the stimulus (mask as RLE)."""

    id: int
    stimulus: Stimulus


@dataclass
class Document:
    """The parsed content of ``annotations.json``."""

    info: dict[str, Any] = field(default_factory=dict)
    #: by image id, in file order
    paintings: dict[int, Painting] = field(default_factory=dict)
    #: image id -> records, in file order
    records: dict[int, list[StoredRecord]] = field(default_factory=dict)
    #: top-level keys other than info/images/annotations/categories (e.g. COCO "licenses")
    extra: dict[str, Any] = field(default_factory=dict)

    def by_file_name(self) -> dict[str, Painting]:
        return {p.file_name: p for p in self.paintings.values()}


# Header sizes of image files, keyed by (path, mtime_ns, size): (width, height) or an error.
HeaderCache = dict[tuple[str, int, int], "tuple[int, int] | str"]


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


def image_header_size(path: Path, cache: HeaderCache | None = None) -> tuple[int, int] | str:
    """(width, height) of the image at ``path`` as :func:`~napari_emosem.image_io.load_image`
    will return it (EXIF rotation applied), read from the header; or a problem string."""
    from ..image_io import header_size

    try:
        st = path.stat()
    except FileNotFoundError:
        return "is missing"
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    key = (str(path), st.st_mtime_ns, st.st_size)
    if cache is not None and key in cache:
        return cache[key]
    try:
        result: tuple[int, int] | str = header_size(path)
    except ImageError as exc:
        # the message starts with the path; the caller names the file its own way
        result = str(exc).removeprefix(f"{path}: ").removeprefix(f"{path} ")
        result = "is " + result if result.startswith(("a folder", "not")) else result
    if cache is not None:
        cache[key] = result
    return result


def outside_folder(path: Path, folder: Path) -> Path | None:
    """Where ``path`` really leads when a link takes it out of ``folder``, else None."""
    try:
        real = Path(os.path.realpath(path))
        base = Path(os.path.realpath(folder))
    except (OSError, ValueError):
        return None
    return None if real == base or base in real.parents else real


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


def parse_document(
    obj: Any,
    root: Path,
    *,
    check_images: bool = True,
    header_cache: HeaderCache | None = None,
    pending: dict[str, Path] | None = None,
) -> Document:
    """Validate a COCO object read from ``root/annotations.json``; see the module docstring.

    ``pending`` maps file names to staged files of a committed write not yet moved into place
    (:func:`~napari_emosem.data.store.pending_images`): those are checked instead.
    """
    pending = pending or {}
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

    doc = Document(info=dict(info))
    doc.extra = {
        k: v for k, v in obj.items() if k not in ("info", "images", "categories", "annotations")
    }
    image_dir = root / "images"

    # --- images ------------------------------------------------------------------------
    seen_names: dict[str, int] = {}
    for index, img in enumerate(images):
        where = f"images[{index}]"
        if not isinstance(img, dict):
            problems.append(f"{where}: must be an object")
            continue
        image_id = img.get("id")
        if not _is_int(image_id):
            problems.append(f"{where}: 'id' must be an integer; found {image_id!r}")
            continue
        where = f"image id {image_id}"
        if image_id in doc.paintings:
            problems.append(f"{where}: duplicate image id")
            continue
        file_name = img.get("file_name")
        name_problem = check_file_name(file_name)
        if name_problem:
            problems.append(f"{where}: {name_problem}")
            continue
        where = f"image id {image_id} ({file_name!r})"
        if file_name in seen_names:
            problems.append(f"{where}: the same file_name as image id {seen_names[file_name]}")
            continue
        seen_names[file_name] = image_id
        width, height = img.get("width"), img.get("height")
        if not (_is_int(width) and _is_int(height) and width > 0 and height > 0):
            problems.append(f"{where}: 'width' and 'height' must be positive integers")
            continue
        if width * height > MAX_DECLARED_PIXELS:
            problems.append(f"{where}: {width} × {height} px is not the size of a real image")
            continue
        if check_images:
            path = image_dir / file_name
            outside = outside_folder(path, image_dir)
            if outside is not None:
                problems.append(
                    f"{where}: images/{file_name} is a link to {outside}, outside the dataset's "
                    "images/ folder; copy the file in instead of linking to it"
                )
                continue
            size = image_header_size(pending.get(file_name, path), header_cache)
            if size == "is missing" and file_name in pending:  # moved into place meanwhile
                size = image_header_size(path, header_cache)
            if isinstance(size, str):
                problems.append(f"{where}: images/{file_name} {size}")
            elif size != (width, height):
                problems.append(
                    f"{where}: images/{file_name} is {size[0]} × {size[1]} px but the file "
                    f"says {width} × {height}"
                )
        metadata = {k: v for k, v in img.items() if k not in IMAGE_CORE_FIELDS}
        deep = [k for k, v in metadata.items() if _depth(v, MAX_EXTRA_DEPTH) > MAX_EXTRA_DEPTH]
        if deep:  # it would be written back: deeper than JSON writers follow is refused now
            problems.append(f"{where}: field {deep[0]!r} is nested more than {MAX_EXTRA_DEPTH} levels deep")
            continue
        doc.paintings[image_id] = Painting(image_id, file_name, width, height, metadata)
        doc.records[image_id] = []

    # --- categories --------------------------------------------------------------------
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
                f"category id {cat_id}: emotion {emotion!r} is already category "
                f"{emotion_category[emotion]}"
            )
            category_emotion[cat_id] = ""
            continue
        category_emotion[cat_id] = emotion
        emotion_category[emotion] = cat_id

    # --- annotations -------------------------------------------------------------------
    seen_ann: set[int] = set()
    seen_pair: dict[tuple[int, str], int] = {}
    image_ids_listed = {img.get("id") for img in images if isinstance(img, dict)}
    for index, ann in enumerate(annotations):
        if not isinstance(ann, dict):
            problems.append(f"annotations[{index}]: must be an object")
            continue
        ann_id = ann.get("id")
        if not _is_int(ann_id):
            problems.append(f"annotations[{index}]: 'id' must be an integer; found {ann_id!r}")
            continue
        where = f"annotation id {ann_id}"
        if ann_id in seen_ann:
            problems.append(f"{where}: duplicate annotation id")
            continue
        seen_ann.add(ann_id)
        image_id, cat_id = ann.get("image_id"), ann.get("category_id")
        painting = doc.paintings.get(image_id) if _is_int(image_id) else None
        if painting is None:
            if image_id in image_ids_listed:
                continue  # that image already has a problem listed
            problems.append(f"{where}: image_id {image_id!r} is not in 'images'")
            continue
        if not _is_int(cat_id) or cat_id not in category_emotion:
            problems.append(f"{where}: category_id {cat_id!r} is not in 'categories'")
            continue
        emotion = category_emotion[cat_id]
        if not emotion:
            continue  # the category's problem is listed already
        where = f"annotation id {ann_id} ({painting.file_name!r}, {emotion})"
        pair = (image_id, emotion)
        if pair in seen_pair:
            problems.append(
                f"{where}: a second record for this (painting, emotion); the first is "
                f"annotation id {seen_pair[pair]} (keep one record per pair)"
            )
            continue
        seen_pair[pair] = ann_id
        record, record_problems = _parse_annotation(ann, emotion, painting)
        problems.extend(f"{where}: {p}" for p in record_problems)
        if record is not None and not record_problems:
            doc.records[image_id].append(StoredRecord(ann_id, record))

    if len(problems) == 1:  # one line: the problem itself
        error = DatasetError(
            f"{root / 'annotations.json'}: {problems[0]}; nothing was loaded. Fix this record (or "
            "remove it) and open the dataset again"
        )
        error.problems = problems
        raise error
    if problems:
        raise DatasetError(
            f"{root / 'annotations.json'}: {len(problems)} problems found; nothing was loaded. Fix "
            "these records (or remove them) and open the dataset again",
            problems,
        )
    return doc


def _parse_annotation(ann: dict, emotion: str, painting: Painting) -> tuple[Stimulus | None, list[str]]:
    problems: list[str] = []
    h, w = painting.height, painting.width

    segmentation = ann.get("segmentation")
    rle: RLE | None = None
    if segmentation is not None:
        try:
            rle = parse_segmentation(segmentation, h, w)
        except RLEError as exc:
            problems.append(f"undecodable segmentation: {exc}")

    no_stimulus = ann.get("no_stimulus", False)
    has_mask = ann.get("has_mask", True)
    for key, value in (("no_stimulus", no_stimulus), ("has_mask", has_mask)):
        if not isinstance(value, bool):
            problems.append(f"'{key}' must be true or false; found {value!r}")
    if problems:
        return None, problems

    if emotion == SOMETHING_ELSE:
        if rle is not None and rle.area > 0:
            problems.append(
                f"'{SOMETHING_ELSE}' carries explanations only, never a mask; remove its "
                "segmentation (or give the record one of the eight emotions)"
            )
        rle = None
    elif no_stimulus:
        if rle is not None and rle.area > 0:
            problems.append("no_stimulus is true but the mask is not empty")
        rle = empty_rle(h, w)
    elif not has_mask:
        if rle is not None and rle.area > 0:
            problems.append("has_mask is false but the segmentation is not empty")
        rle = None

    explanations = ann.get("explanations")
    explanation = ann.get("explanation")
    if explanations is None:
        explanations = []
    if not isinstance(explanations, list) or not all(isinstance(e, str) for e in explanations):
        problems.append("'explanations' must be a list of strings")
        explanations = []
    if explanation is not None and not isinstance(explanation, str):
        problems.append("'explanation' must be a string")
        explanation = None
    explanations = list(explanations)
    if explanation and explanation not in explanations:
        explanations.insert(0, explanation)

    source = ann.get("source", "human")
    if source is None:
        source = "human"
    if not isinstance(source, str):
        problems.append(f"'source' must be a string ('human' or 'model:<id>'); found {source!r}")
    edited = ann.get("edited", False)
    if not isinstance(edited, bool):
        problems.append(f"'edited' must be true or false; found {edited!r}")
    annotator = ann.get("annotator")
    if annotator is not None and not isinstance(annotator, str):
        problems.append(f"'annotator' must be a string or null; found {annotator!r}")
    reviewed = ann.get("reviewed")
    if reviewed is not None and not isinstance(reviewed, bool):
        problems.append(f"'reviewed' must be true or false; found {reviewed!r}")
    score = ann.get("score")
    if score is not None and (
        isinstance(score, bool) or not isinstance(score, (int, float)) or not math.isfinite(score)
    ):
        problems.append(f"'score' must be a number or null; found {score!r}")
    for key in ("created", "modified"):
        value = ann.get(key)
        if value is not None and not isinstance(value, str):
            problems.append(f"'{key}' must be an ISO 8601 string or null; found {value!r}")
    if problems:
        return None, problems

    extra = {k: v for k, v in ann.items() if k not in ANNOTATION_FIELDS}
    for key, value in extra.items():
        if _depth(value, MAX_EXTRA_DEPTH) > MAX_EXTRA_DEPTH:
            problems.append(f"field {key!r} is nested more than {MAX_EXTRA_DEPTH} levels deep")
    if problems:
        return None, problems
    stimulus = Stimulus._stored(
        rle,
        emotion=emotion,
        explanations=explanations,
        no_stimulus=no_stimulus and emotion != SOMETHING_ELSE,
        source=source,
        edited=edited,
        annotator=annotator,
        score=score,
        created=ann.get("created"),
        modified=ann.get("modified"),
        extra=extra,
        reviewed=reviewed,
    )
    return stimulus, []


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
            f"{path}: not valid JSON{where} ({token} is not a JSON number: use a finite number "
            f"or null); {fix}"
        ) from None
    except RecursionError:
        raise DatasetError(
            f"{path}: not valid JSON for this reader: arrays or objects nested thousands of levels "
            f"deep; {fix}"
        ) from None

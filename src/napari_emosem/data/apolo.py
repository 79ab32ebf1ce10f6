"""APOLO (Chen, Garcia et al., ICMR 2024): import its release into a dataset, and export one.

The release (behind a request form) holds ``apolo.json`` and a folder of binary maps,
``{painting}_{emotion}.npy``; paintings are WikiArt images (not redistributed) and explanations
come from ArtEmis's CSV. In the authors' code (github.com/Tianwei3989/apolo) ``apolo.json`` is read
with ``pandas.read_json`` and each row holds ``painting`` (WikiArt stem), ``artemis_id`` (a list of
0-based row positions in ``artemis_dataset_release_v0.csv``; the pair's emotion is that of the
first row) and ``split`` (``val`` or ``test``); their derived ``apolo_val.json``/``apolo_test.json``
add ``emotion`` and ``utterances``. Maps are integer 0/1 arrays at the painting's resolution; an
all-zero map is a pair without a stimulus (their evaluation skips it).

What :func:`read_apolo_rows` accepts (liberally):
- a JSON list of row objects, a pandas column layout (``{"painting": {"0": ...}, ...}`` or
  ``{"painting": [...], ...}``), an object with the rows under ``"annotations"``/``"data"``, or
  JSON Lines;
- ``artemis_id`` as an integer, a list of integers, or absent; ``emotion`` optional when
  ``artemis_id`` is given; ``utterances`` (list or string) optional; ``split`` optional;
- ``painting`` with or without an image suffix or a ``style/`` prefix.
"""

from __future__ import annotations

import itertools
import json
import os
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from .._io import (
    atomic_open,
    atomic_write_json,
    check_writable_dir,
    open_regular,
    remove_stale_temp_files,
)
from ..emotions import EMOTIONS, SOMETHING_ELSE, normalise_emotion, parse_emotions
from ..errors import DatasetError, UnknownEmotionError
from ..image_io import IMAGE_SUFFIXES, MAX_PIXELS
from .artemis import ArtemisIndex, parse_wikiart_name, read_artemis_csv
from .dataset import PaintingUpdate, StimulusDataset
from .records import Stimulus
from .validate import image_header_size

#: Folder name of the maps in APOLO's README (``./data/apolo_pixel_map``); export uses it too.
MAPS_DIR = "apolo_pixel_map"
#: Map values at or above this are foreground (maps are 0/1 integers; this also reads bool,
#: 0/255 and float maps).
MAP_FOREGROUND = 0.5
#: Masks whose aspect ratio differs from the painting's by less than this are resized to it.
ASPECT_TOLERANCE = 0.02


@dataclass
class ApoloRow:
    painting: str
    emotion: str | None
    artemis_ids: list[int]
    split: str | None
    utterances: list[str]
    #: style folder from a "style/painting" name
    style: str | None = None


@dataclass
class ImportReport:
    """What :func:`import_apolo` did. Lists hold names, in the order met."""

    rows: int = 0
    paintings: int = 0
    pairs: int = 0
    no_stimulus: int = 0
    explanations: int = 0
    missing_images: list[str] = field(default_factory=list)
    missing_maps: list[str] = field(default_factory=list)
    bad_maps: list[str] = field(default_factory=list)
    bad_rows: list[str] = field(default_factory=list)
    resized_masks: list[str] = field(default_factory=list)
    skipped_split: int = 0

    @property
    def unusable(self) -> list[str]:
        """One line per input that was there but could not be used (a bad map or row)."""
        return self.bad_maps + self.bad_rows

    def lines(self, show: int = 5) -> list[str]:
        out = [
            f"imported {self.pairs} pairs ({self.no_stimulus} without a stimulus) on "
            f"{self.paintings} paintings, with {self.explanations} explanations, from {self.rows} "
            "APOLO rows"
        ]
        if self.skipped_split:
            out.append(f"{self.skipped_split} rows of other splits left out")
        for label, items in (
            ("paintings whose image was not found (skipped)", self.missing_images),
            ("pairs whose map file is missing (skipped)", self.missing_maps),
            ("maps that could not be used (skipped)", self.bad_maps),
            ("rows that could not be used (skipped)", self.bad_rows),
            ("masks resized to their painting's size", self.resized_masks),
        ):
            if items:
                shown = ", ".join(items[:show]) + (", …" if len(items) > show else "")
                out.append(f"{len(items)} {label}: {shown}")
        return out


# ----------------------------------------------------------------------------- reading rows
def read_apolo_rows(path: str | os.PathLike) -> tuple[list[ApoloRow], list[str]]:
    """Read ``apolo.json`` (see the module docstring for the accepted layouts).

    Returns the usable rows and a problem line for each row that is not.
    """
    path = Path(path).expanduser()
    try:
        with open_regular(path) as handle:
            text = handle.read().decode("utf-8-sig")
    except FileNotFoundError:
        raise DatasetError(f"{path}: no such file (expected APOLO's apolo.json)") from None
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: not UTF-8 text (byte {exc.start}); apolo.json is UTF-8 JSON") from None
    rows, problems = [], []
    for i, item in enumerate(_load_rows(text, path)):
        try:
            rows.append(_parse_row(item))
        except ValueError as exc:
            problems.append(f"row {i}: {exc}")
    if problems and not rows:
        raise DatasetError(f"{path}: no usable APOLO rows", problems)
    return rows, problems


def _load_rows(text: str, path: Path) -> list[Any]:
    try:
        obj = json.loads(text)
    except RecursionError:
        raise DatasetError(f"{path}: not valid JSON for this reader: nested thousands of levels deep") from None
    except json.JSONDecodeError as exc:
        lines = [line for line in text.splitlines() if line.strip()]
        try:  # JSON Lines
            return [json.loads(line) for line in lines]
        except (json.JSONDecodeError, RecursionError):
            raise DatasetError(
                f"{path}: not valid JSON at line {exc.lineno}, column {exc.colno} ({exc.msg})"
            ) from None
    if isinstance(obj, list):
        return obj
    if isinstance(obj, dict):
        for key in ("annotations", "data", "rows"):
            if isinstance(obj.get(key), list):
                return obj[key]
        if "painting" in obj:  # pandas column layout
            column = obj["painting"]
            if isinstance(column, dict):
                keys = sorted(column, key=lambda k: (len(str(k)), str(k)))
                return [
                    {name: (col.get(k) if isinstance(col, dict) else None) for name, col in obj.items()}
                    for k in keys
                ]
            if isinstance(column, list):
                return [
                    {name: (col[i] if isinstance(col, list) and i < len(col) else None) for name, col in obj.items()}
                    for i in range(len(column))
                ]
    raise DatasetError(
        f"{path}: expected a list of APOLO rows (objects with painting, artemis_id, split)"
    )


def _parse_row(item: Any) -> ApoloRow:
    if not isinstance(item, dict):
        raise ValueError("not an object")
    painting = item.get("painting")
    if not isinstance(painting, str) or not painting.strip():
        raise ValueError("no 'painting' name")
    painting = painting.strip()
    style = None
    if "/" in painting:
        style, painting = painting.rsplit("/", 1)
        style = style.rsplit("/", 1)[-1] or None
    if PurePosixPath(painting).suffix.lower() in IMAGE_SUFFIXES:
        painting = painting[: -len(PurePosixPath(painting).suffix)]
    ids = item.get("artemis_id", item.get("artemis_ids"))
    if ids is None:
        ids = []
    elif isinstance(ids, (int, float, str)) and not isinstance(ids, bool):
        ids = [ids]
    if not isinstance(ids, list):
        raise ValueError(f"artemis_id must be an integer or a list of integers; got {ids!r}")
    artemis_ids = []
    for value in ids:
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise ValueError(f"artemis_id {value!r} is not an integer") from None
        if number < 0 or number != float(value):
            raise ValueError(f"artemis_id {value!r} is not a row number")
        artemis_ids.append(number)
    emotion = item.get("emotion")
    if emotion is not None:
        try:
            emotion = normalise_emotion(str(emotion))
        except UnknownEmotionError as exc:
            raise ValueError(str(exc)) from None
    utterances = item.get("utterances", item.get("utterance"))
    if utterances is None:
        utterances = []
    elif isinstance(utterances, str):
        utterances = [utterances]
    utterances = [str(u) for u in utterances if isinstance(u, str) and u.strip()]
    split = item.get("split")
    split = None if split is None else str(split).strip().lower()
    if emotion is None and not artemis_ids:
        raise ValueError("neither 'emotion' nor 'artemis_id': the pair's emotion is unknown")
    return ApoloRow(painting, emotion, artemis_ids, split, utterances, style)


# ----------------------------------------------------------------------------- import
def import_apolo(
    apolo_json: str | os.PathLike,
    maps_dir: str | os.PathLike,
    images_dir: str | os.PathLike,
    out: str | os.PathLike,
    *,
    artemis_csv: str | os.PathLike | None = None,
    split: str = "all",
    batch_size: int = 100,
    progress: Callable[[int, int], None] | None = None,
    annotator: str = "APOLO",
) -> ImportReport:
    """Import APOLO pairs into the dataset at ``out`` (created if needed).

    Each (painting, emotion) row becomes a record: the mask from
    ``maps_dir/{painting}_{emotion}.npy`` (an all-zero map becomes ``no_stimulus``), the
    explanations of the ArtEmis rows in ``artemis_id`` followed by every other ArtEmis row of the
    same (painting, emotion), ``source="human"``, and ``extra`` fields ``artemis_id`` and
    ``split``. Images are looked up as ``images_dir/{painting}.<ext>`` or
    ``images_dir/{art_style}/{painting}.<ext>``; paintings without one are skipped and listed.
    Paintings already in the dataset are updated in place.
    """
    split = (split or "all").lower()
    if split not in ("val", "test", "all"):
        raise DatasetError(f"split {split!r}: choose val, test or all")
    maps_dir = Path(maps_dir).expanduser()
    images_dir = Path(images_dir).expanduser()
    for label, folder in (("maps", maps_dir), ("images", images_dir)):
        if not folder.is_dir():
            raise DatasetError(f"{folder}: no such folder (the {label} folder)")
    report = ImportReport()
    rows = _rows_of_split(apolo_json, split, report)
    artemis = _artemis_for(rows, artemis_csv)
    by_painting = _pairs_by_painting(rows, artemis, artemis_csv is not None, report)
    image_index = _ImageIndex(images_dir)
    check_writable_dir(Path(out).expanduser())
    dataset = StimulusDataset.open(out, create=True)
    batch: list[PaintingUpdate] = []
    total = len(by_painting)
    for done, (name, pairs) in enumerate(by_painting.items(), 1):
        update = _painting_update(name, pairs, image_index, maps_dir, artemis, annotator, report)
        if update is None:
            continue
        batch.append(update)
        report.paintings += 1
        report.pairs += len(update.stimuli)
        if len(batch) >= batch_size:
            dataset.write_paintings(batch)
            batch = []
        if progress is not None:
            progress(done, total)
    if batch:
        dataset.write_paintings(batch)
    if progress is not None:
        progress(total, total)
    return report


def _rows_of_split(apolo_json: str | os.PathLike, split: str, report: ImportReport) -> list[ApoloRow]:
    """The APOLO rows of ``split`` (all with "all"); bad rows and the rows of other splits counted."""
    rows, problems = read_apolo_rows(apolo_json)
    report.bad_rows.extend(problems)
    report.rows = len(rows) + len(report.bad_rows)
    if split != "all":
        kept = [r for r in rows if r.split == split]
        report.skipped_split = len(rows) - len(kept)
        rows = kept
    return rows


def _artemis_for(rows: list[ApoloRow], artemis_csv: str | os.PathLike | None) -> ArtemisIndex:
    """The ArtEmis rows these APOLO rows need (none without a CSV, which only some rows can do without)."""
    if artemis_csv is not None:
        return read_artemis_csv(
            artemis_csv,
            indices={i for r in rows for i in r.artemis_ids},
            paintings={r.painting for r in rows},
        )
    if any(r.emotion is None for r in rows):
        raise DatasetError(
            "these APOLO rows name their emotion only through artemis_id; give the ArtEmis CSV "
            "(--artemis artemis_dataset_release_v0.csv)"
        )
    return ArtemisIndex()


def _pairs_by_painting(
    rows: list[ApoloRow], artemis: ArtemisIndex, have_csv: bool, report: ImportReport
) -> dict[str, list[tuple[ApoloRow, str]]]:
    """Rows -> (row, emotion) pairs, grouped by painting (first-seen order); each row's artemis_ids
    cut to those of its painting found in the CSV."""
    by_painting: dict[str, list[tuple[ApoloRow, str]]] = defaultdict(list)
    for row in rows:
        emotion = row.emotion
        ids = [i for i in row.artemis_ids if i in artemis.rows]
        lost = [i for i in row.artemis_ids if i not in artemis.rows]
        if lost and have_csv:
            report.bad_rows.append(
                f"{row.painting}: artemis_id {lost[:3]} not in the ArtEmis CSV ({artemis.total_rows} rows)"
            )
        wrong = [i for i in ids if artemis.rows[i].painting != row.painting]
        if wrong:
            report.bad_rows.append(
                f"{row.painting}: artemis_id {wrong[:3]} belong to another painting "
                f"({artemis.rows[wrong[0]].painting}); ignored"
            )
            ids = [i for i in ids if i not in wrong]
        if emotion is None:
            if not ids:
                report.bad_rows.append(f"{row.painting}: emotion unknown (no usable artemis_id)")
                continue
            emotion = artemis.rows[ids[0]].emotion
        if emotion == SOMETHING_ELSE:
            report.bad_rows.append(f"{row.painting}: '{SOMETHING_ELSE}' has no stimulus maps")
            continue
        row.artemis_ids = ids
        by_painting[row.painting].append((row, emotion))
    return by_painting


def _painting_update(
    name: str,
    pairs: list[tuple[ApoloRow, str]],
    image_index: _ImageIndex,
    maps_dir: Path,
    artemis: ArtemisIndex,
    annotator: str,
    report: ImportReport,
) -> PaintingUpdate | None:
    """One painting's update: its image file, a record per pair with a usable map, its metadata;
    None (and reported) when the image or every map is missing."""
    style = next((r.style for r, _ in pairs if r.style), None) or artemis.styles.get(name)
    image_path = image_index.find(name, style)
    if image_path is None:
        report.missing_images.append(name)
        return None
    size = image_header_size(image_path)
    if isinstance(size, str):
        report.missing_images.append(f"{name} ({size})")
        return None
    width, height = size
    stimuli = _pair_stimuli(name, pairs, maps_dir, (height, width), artemis, annotator, report)
    if not stimuli:
        return None
    metadata: dict[str, Any] = parse_wikiart_name(name)
    if style:
        metadata["style"] = style
    splits = {r.split for r, _ in pairs if r.split}
    if len(splits) == 1:
        metadata["split"] = splits.pop()
    metadata["source_dataset"] = "APOLO"
    return PaintingUpdate(image_path, image_path.name, stimuli, metadata=metadata)


def _pair_stimuli(
    name: str,
    pairs: list[tuple[ApoloRow, str]],
    maps_dir: Path,
    shape: tuple[int, int],
    artemis: ArtemisIndex,
    annotator: str,
    report: ImportReport,
) -> list[Stimulus]:
    """A record per (painting, emotion) pair from its stimulus map (``shape``: the painting's
    height and width) and its explanations; missing, bad and repeated pairs reported."""
    stimuli = []
    seen = set()
    for row, emotion in pairs:
        key = f"{name}_{emotion}"
        if emotion in seen:
            report.bad_rows.append(f"{key}: a second row for this pair; ignored")
            continue
        seen.add(emotion)
        map_path = maps_dir / f"{key}.npy"
        if not map_path.is_file():
            report.missing_maps.append(key)
            continue
        mask, problem = _read_map(map_path, *shape)
        if mask is None:
            report.bad_maps.append(f"{map_path}: {problem}")
            continue
        if problem:
            report.resized_masks.append(key)
        explanations = _explanations(row, emotion, artemis)
        empty = not mask.any()
        extra: dict[str, Any] = {"artemis_id": row.artemis_ids}
        if row.split:
            extra["split"] = row.split
        stimuli.append(
            Stimulus(
                emotion,
                None if empty else mask,
                explanations,
                no_stimulus=empty,
                source="human",
                annotator=annotator,
                extra=extra,
            )
        )
        report.no_stimulus += empty
        report.explanations += len(explanations)
    return stimuli


def _explanations(row: ApoloRow, emotion: str, artemis: ArtemisIndex) -> list[str]:
    ordered = list(row.artemis_ids)
    ordered += [i for i in artemis.by_pair.get((row.painting, emotion), []) if i not in ordered]
    texts = [artemis.rows[i].utterance for i in ordered if i in artemis.rows]
    texts += row.utterances
    texts = [" ".join(t.split()) for t in texts]  # ArtEmis utterances are one line each
    out: list[str] = []
    for text in texts:
        if text and text not in out:
            out.append(text)
    return out


def _read_map(path: Path, height: int, width: int) -> tuple[np.ndarray | None, str]:
    """(mask, "") / (mask, "resized") / (None, reason)."""
    try:
        with open_regular(path) as handle:
            if handle.read(6) != b"\x93NUMPY":
                return None, "not a .npy file (NumPy's array format)"
        # memory-mapped first: a header that claims a huge shape costs nothing (and a file shorter
        # than its header says is refused) before anything is read into memory
        array = np.load(path, allow_pickle=False, mmap_mode="r")
    except ValueError as exc:
        if "allow_pickle" in str(exc) or "Python objects" in str(exc):
            return None, (
                "a pickled object array; re-save it as a plain numeric array "
                "(pickles can run code, so they are not read)"
            )
        return None, f"not a .npy array ({str(exc).splitlines()[0][:120]})"
    except OSError as exc:
        return None, f"cannot be read ({exc.strerror or exc})"
    if array.size > MAX_PIXELS:
        return None, f"holds {array.size} values, more than the {MAX_PIXELS / 1e6:.0f} MP a painting may have"
    array = np.squeeze(np.array(array))
    if array.ndim != 2 or array.dtype.kind not in "biuf":
        return None, f"expected a 2-D numeric map; got shape {array.shape}, type {array.dtype}"
    mask = np.nan_to_num(array.astype(np.float32, copy=False)) >= MAP_FOREGROUND
    if mask.shape == (height, width):
        return mask, ""
    h, w = mask.shape
    if abs((w / h) / (width / height) - 1.0) > ASPECT_TOLERANCE:
        return None, f"map is {w} × {h} px but the image is {width} × {height} (another shape)"
    from PIL import Image

    resized = Image.fromarray(mask.astype(np.uint8) * 255).resize((width, height), Image.NEAREST)
    return np.asarray(resized) > 127, "resized"


class _ImageIndex:
    """Finds ``{painting}.<ext>`` in a folder or its ``{style}/`` subfolder; one scan, if needed."""

    def __init__(self, root: Path):
        self.root = root
        self._stems: dict[str, Path] | None = None

    def find(self, name: str, style: str | None) -> Path | None:
        for folder in (self.root, self.root / style) if style else (self.root,):
            for suffix in IMAGE_SUFFIXES:
                for candidate in (folder / f"{name}{suffix}", folder / f"{name}{suffix.upper()}"):
                    if candidate.is_file():
                        return candidate
        return self._scan().get(name)

    def _scan(self) -> dict[str, Path]:
        if self._stems is None:
            self._stems = {}
            for entry in _walk(self.root, depth=2):
                if entry.suffix.lower() in IMAGE_SUFFIXES:
                    self._stems.setdefault(entry.stem, entry)
        return self._stems


def _walk(root: Path, depth: int) -> Iterable[Path]:
    try:
        entries = list(os.scandir(root))
    except OSError:
        return
    for entry in sorted(entries, key=lambda e: e.name):
        if entry.is_file():
            yield Path(entry.path)
        elif entry.is_dir() and depth > 1:
            yield from _walk(Path(entry.path), depth - 1)


# ----------------------------------------------------------------------------- export
def export_apolo(
    dataset: StimulusDataset, out_dir: str | os.PathLike, *, emotions=None, consensus: bool = False
) -> tuple[int, int]:
    """Write the APOLO layout into ``out_dir``; returns (rows, maps).

    - ``apolo.json``: a list with one row per (painting, emotion) record that holds a mask:
      ``{"painting": <file stem>, "emotion": ..., "split": <record or painting split, else
      "test">, "artemis_id": [...] (only when the record came from an APOLO import: row
      positions in the original ArtEmis CSV), "utterances": [...]}``.
    - ``apolo_pixel_map/{painting}_{emotion}.npy``: uint8 (H, W) maps, 1 = stimulus, 0 = not;
      all zeros for a ``no_stimulus`` record (APOLO's evaluation skips those).
    Text-only and "something else" records have no map and are not written.

    With ``consensus`` (several annotators; ``docs/annotators.md``), a row per pair with votes or
    an adjudicated mask, its map the pair's target as float32 in [0, 1] (APOLO's own kind of
    map): the adjudicated mask where there is one, else the consensus map; ``utterances`` every
    person's explanation of the pair, and ``annotators`` who voted.
    """
    chosen = set(parse_emotions(emotions))
    out_dir = check_writable_dir(Path(out_dir).expanduser())
    maps = check_writable_dir(out_dir / MAPS_DIR)
    remove_stale_temp_files(maps)
    _check_unique_names(dataset)
    rows = []
    order = {e: i for i, e in enumerate(EMOTIONS)}
    for _, pairs in itertools.groupby(dataset.every_pair(chosen), key=lambda pair: pair.painting.id):
        for pair in sorted(pairs, key=lambda p: order[p.emotion]):
            painting, record = pair.painting, pair.effective
            if consensus:
                target = pair.target()
                utterances = pair.explanations
            else:
                target = record.mask.astype(np.uint8) if record.has_mask else None
                utterances = list(record.explanations)
            if target is None:
                continue
            row: dict[str, Any] = {
                "painting": painting.name,
                "emotion": pair.emotion,
                "split": str(record.extra.get("split") or painting.metadata.get("split") or "test"),
            }
            if record.extra.get("artemis_id"):
                row["artemis_id"] = record.extra["artemis_id"]
            row["utterances"] = utterances
            if consensus:
                row["annotators"] = pair.annotators
            rows.append(row)
            with atomic_open(maps / f"{painting.name}_{pair.emotion}.npy") as handle:
                np.save(handle, target, allow_pickle=False)
    atomic_write_json(out_dir / "apolo.json", rows)
    return len(rows), len(rows)


def _check_unique_names(dataset: StimulusDataset) -> None:
    seen: dict[str, str] = {}
    clashes = []
    for p in dataset.paintings:
        if p.name in seen:
            clashes.append(f"{seen[p.name]!r} and {p.file_name!r} are both {p.name!r}")
        seen[p.name] = p.file_name
    if clashes:
        raise DatasetError(
            "APOLO, ArtEmis and PNG exports name paintings by file stem, and these paintings "
            "share one; rename one of each pair",
            clashes,
        )

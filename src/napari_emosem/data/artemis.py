"""ArtEmis's CSV (``art_style, painting, emotion, utterance, repetition``): reading and writing.

ArtEmis (Achlioptas et al., CVPR 2021) ships ``artemis_dataset_release_v0.csv``: one row per
(annotator, painting) with the emotion they felt and their explanation ("utterance").
``painting`` is the WikiArt file stem (``artist-name_title-words-year``), ``art_style`` the WikiArt
style folder. APOLO's ``artemis_id`` values are 0-based row positions in this file (the header
excluded), as ``pandas.read_csv(...).iloc[i]`` counts them.
"""

from __future__ import annotations

import csv
import io
import os
import re
from collections import defaultdict
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from .._io import atomic_write_text, open_regular
from ..emotions import EMOTIONS, SOMETHING_ELSE, normalise_emotion
from ..errors import DatasetError, UnknownEmotionError

COLUMNS = ("art_style", "painting", "emotion", "utterance", "repetition")
REQUIRED = ("painting", "emotion", "utterance")


@dataclass
class ArtemisRow:
    index: int
    art_style: str
    painting: str
    emotion: str
    utterance: str
    repetition: str = ""


@dataclass
class ArtemisIndex:
    """The rows of an ArtEmis CSV that were asked for."""

    #: row position -> row
    rows: dict[int, ArtemisRow] = field(default_factory=dict)
    #: (painting, emotion) -> row positions, in file order
    by_pair: dict[tuple[str, str], list[int]] = field(default_factory=lambda: defaultdict(list))
    #: painting -> art_style
    styles: dict[str, str] = field(default_factory=dict)
    #: number of data rows in the file
    total_rows: int = 0


class _Columns(NamedTuple):
    """Positions of ArtEmis's columns in the file (None: an optional column it lacks)."""

    style: int | None
    painting: int
    emotion: int
    utterance: int
    repetition: int | None


def read_artemis_csv(
    path: str | os.PathLike,
    *,
    indices: Collection[int] | None = None,
    paintings: Collection[str] | None = None,
) -> ArtemisIndex:
    """Read the rows at ``indices`` and every row of ``paintings`` (all rows when both are None).

    Rows with an emotion outside ArtEmis's nine labels are skipped (ArtEmis has none).
    """
    path = Path(path).expanduser()
    wanted_indices = None if indices is None else set(indices)
    wanted_paintings = None if paintings is None else set(paintings)
    keep_all = wanted_indices is None and wanted_paintings is None
    index = ArtemisIndex()
    with _open_csv(path) as handle:
        reader = csv.reader(handle)
        columns = _columns(reader, path)
        shortest = max(columns.painting, columns.emotion, columns.utterance)
        position = -1
        try:
            for position, row in enumerate(reader):
                if len(row) <= shortest:
                    continue
                painting = row[columns.painting]
                if not keep_all and not (
                    (wanted_indices is not None and position in wanted_indices)
                    or (wanted_paintings is not None and painting in wanted_paintings)
                ):
                    continue
                _add_row(index, position, row, columns)
        except csv.Error as exc:
            raise DatasetError(f"{path}: malformed CSV near data row {position + 2} ({exc})") from None
        except UnicodeDecodeError as exc:
            raise DatasetError(f"{path}: not UTF-8 text (byte {exc.start}); ArtEmis's CSV is UTF-8") from None
    index.total_rows = position + 1
    return index


def _open_csv(path: Path) -> io.TextIOWrapper:
    try:
        return io.TextIOWrapper(open_regular(path), encoding="utf-8-sig", newline="")
    except FileNotFoundError:
        raise DatasetError(f"{path}: no such ArtEmis CSV file") from None
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read it ({exc.strerror or exc})") from None


def _columns(reader: Iterator[list[str]], path: Path) -> _Columns:
    """The header's columns; the file is refused without those ArtEmis's rows need."""
    try:
        header = next(reader)
    except StopIteration:
        raise DatasetError(f"{path}: the file is empty; expected ArtEmis's CSV") from None
    except csv.Error as exc:
        raise DatasetError(f"{path}: not a CSV file ({exc})") from None
    columns = {name.strip(): i for i, name in enumerate(header)}
    missing = [c for c in REQUIRED if c not in columns]
    if missing:
        raise DatasetError(
            f"{path}: missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)}; "
            f"expected ArtEmis's columns {', '.join(COLUMNS)}"
        )
    return _Columns(
        columns.get("art_style"), columns["painting"], columns["emotion"], columns["utterance"],
        columns.get("repetition"),
    )  # fmt: skip


def _add_row(index: ArtemisIndex, position: int, row: list[str], columns: _Columns) -> None:
    """Add one data row to ``index`` (skipped when its emotion is not one of ArtEmis's)."""
    try:
        emotion = normalise_emotion(row[columns.emotion])
    except UnknownEmotionError:
        return
    painting = row[columns.painting]
    c_style, c_repetition = columns.style, columns.repetition
    style = row[c_style] if c_style is not None and c_style < len(row) else ""
    repetition = row[c_repetition] if c_repetition is not None and c_repetition < len(row) else ""
    index.rows[position] = ArtemisRow(position, style, painting, emotion, row[columns.utterance], repetition)
    index.by_pair[(painting, emotion)].append(position)
    if style:
        index.styles.setdefault(painting, style)


def write_artemis_csv(dataset, out_dir: str | os.PathLike, *, emotions=None) -> tuple[Path, int]:
    """Write ``artemis.csv`` in ``out_dir``: one row per explanation of every record.

    ``art_style`` is the painting's ``style`` metadata ("" when unknown), ``painting`` its file
    stem, ``emotion`` the record's emotion (including "something else"), ``utterance`` one
    explanation, ``repetition`` the number of rows written for that painting (ArtEmis: the number
    of annotators who saw it). Returns the path and the number of rows.
    """
    from ..emotions import parse_emotions

    chosen = set(parse_emotions(emotions)) | {SOMETHING_ELSE}
    order = {e: i for i, e in enumerate((*EMOTIONS, SOMETHING_ELSE))}
    out = Path(out_dir) / "artemis.csv"
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    n = 0
    for painting in dataset.paintings:
        rows = []
        for s in sorted(dataset.stimuli(painting), key=lambda s: order[s.emotion]):
            if s.emotion not in chosen:
                continue
            for utterance in s.explanations:
                rows.append((s.emotion, _one_line(utterance)))
        style = str(painting.metadata.get("style") or "")
        for emotion, utterance in rows:
            writer.writerow((style, painting.name, emotion, utterance, len(rows)))
        n += len(rows)
    atomic_write_text(out, buffer.getvalue())
    return out, n


def _one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


_YEAR = re.compile(r"^(.*?)-((?:1[0-9]|20)[0-9]{2})$")


def parse_wikiart_name(name: str) -> dict[str, str]:
    """Artist, title and year from a WikiArt file stem ``artist-name_title-words-year``.

    ``"claude-monet_water-lilies-1919"`` -> ``{"artist": "Claude Monet", "title": "Water Lilies",
    "year": "1919"}``. Names without ``_`` give only a title. Capitalisation is a best guess
    (WikiArt stems are lower case).
    """
    stem = name.rsplit("/", 1)[-1]
    artist, sep, title = stem.partition("_")
    if not sep:
        artist, title = "", stem
    out: dict[str, str] = {}
    match = _YEAR.match(title)
    if match and match.group(1):
        title, out["year"] = match.group(1), match.group(2)
    if artist:
        out["artist"] = _words(artist)
    if title:
        out["title"] = _words(title)
    return out


def _words(slug: str) -> str:
    words = [w for w in slug.replace("_", " ").replace("-", " ").split(" ") if w]
    return " ".join(w[:1].upper() + w[1:] for w in words)

"""The parse cache (``data/parse_cache.py``): opening a large dataset again skips its JSON and
record checks, and is never served for a file that changed; a cache that is damaged, truncated
or another dataset's is ignored; what a cached open holds is exactly what a fresh open holds."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import stat
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from napari_emosem.data import PaintingUpdate, Stimulus, StimulusDataset
from napari_emosem.data.dataset import Compaction
from napari_emosem.data.parse_cache import ParseCache, _key, reader_fingerprint, write_file
from napari_emosem.errors import DatasetError

#: every save stays a journal line (the snapshot is cached, the journal is read each time)
JOURNAL_ONLY = Compaction(small=0)


def rgb(seed: int, h: int = 40, w: int = 56) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def box(seed: int, h: int = 40, w: int = 56) -> np.ndarray:
    mask = np.zeros((h, w), bool)
    mask[seed % 15 : seed % 15 + 12, seed % 25 : seed % 25 + 20] = True
    return mask


def make_dataset(root: Path, n: int = 5) -> Path:
    """Every kind of record and field the format has: drafts, several annotators, an
    adjudicated record, no stimulus, text only, something else, extra fields, metadata, a skipped
    painting, COCO's licenses; then journal lines (saves and a removal) on top of the snapshot."""
    ds = StimulusDataset.open(root, create=True, compaction=JOURNAL_ONLY, parse_cache=None)
    updates = []
    for i in range(n):
        updates.append(PaintingUpdate(rgb(i), f"p{i}.png", [
            Stimulus("awe", box(i), [f"awe {i}", "vast"], source="model:m-1", score=0.25 + i / 10, reviewed=False),
            Stimulus("fear", box(i + 3), [f"fear {i}"], annotator="ana", annotation_seconds=12.5,
                     extra={"k": [1, {"x": None}]}),
            Stimulus("fear", box(i + 5), ["bo's fear"], annotator="bo", annotation_seconds=3),
            Stimulus("sadness", no_stimulus=True, annotator="ana"),
            Stimulus("something else", explanations=["my grandmother's garden"]),
            Stimulus("anger", explanations=["text only"], annotator="bo"),
        ], metadata={"artist": f"artist {i}", "year": 1900 + i, "tags": ["a", 1, 2.5, True, None]}))  # fmt: skip
    ds.write_paintings(updates)
    ds.write_painting(None, "p1.png", [Stimulus("fear", box(9), ["decided"], annotator="rev", adjudicated=True)],
                      records="merge")  # fmt: skip
    ds.update_metadata("p2.png", {"skipped": {"reason": "a photograph", "annotator": "ana", "at": None}})
    ds.compact()
    path = root / "annotations.json"
    obj = json.loads(path.read_text())
    obj["licenses"] = [{"id": 1, "name": "public domain"}]
    path.write_text(json.dumps(obj))
    # saves since the snapshot: the journal
    ds = StimulusDataset.open(root, compaction=JOURNAL_ONLY, parse_cache=None)
    ds.write_painting(rgb(20), "late.png", [Stimulus("awe", box(20), ["late"], annotator="ana")])
    ds.write_painting(None, "p3.png", [Stimulus("fear", box(4), ["changed"], annotator="ana")], records="merge")
    ds.remove_painting("p4.png")
    ds.write_painting(rgb(21), "gone.png", [])
    ds.remove_painting("gone.png")  # the largest id: not given out again
    assert (root / "annotations.json.journal").exists()
    return root


@pytest.fixture
def dataset(tmp_path) -> Path:
    return make_dataset(tmp_path / "ds")


@pytest.fixture
def cache(tmp_path) -> ParseCache:
    return ParseCache(tmp_path / "cache", min_bytes=0)


def typed(value):
    """``value`` with every type spelled out (1 and 1.0 and True differ), objects by their state."""
    if isinstance(value, dict):
        return ("dict", tuple((typed(k), typed(v)) for k, v in value.items()))
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # RLE, StoredRecord
        return (type(value).__name__, tuple(typed(v) for v in value))
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, tuple(typed(v) for v in value))
    if hasattr(value, "__dict__"):
        return (type(value).__name__, typed(vars(value)))
    return (type(value).__name__, value)


def content(ds: StimulusDataset):
    """Everything an open dataset holds that came from the files."""
    doc = ds._doc
    return typed((doc.info, doc.extra, doc.paintings, doc.records, doc._index, ds._disk, ds._pending, len(ds)))


def open_error(root: Path, **kwargs) -> str:
    with pytest.raises(DatasetError) as info:
        StimulusDataset.open(root, **kwargs)
    return str(info.value) + "\n" + "\n".join(info.value.problems or [])


def test_a_cached_open_holds_exactly_what_a_fresh_open_holds(dataset, cache):
    fresh = StimulusDataset.open(dataset, parse_cache=None)
    first = StimulusDataset.open(dataset, parse_cache=cache)  # parses, and keeps the parse
    assert not first._from_cache and cache.file_for(dataset).is_file()
    again = StimulusDataset.open(dataset, parse_cache=cache)
    assert again._from_cache
    assert content(again) == content(first) == content(fresh)
    assert again.summary() == fresh.summary() and again.content_hash() == fresh.content_hash()
    # the cached document is a document like any other: it writes, and what it writes reads back
    again.write_painting(None, "p0.png", [Stimulus("awe", box(7), ["saved"], annotator="ana")], records="merge")
    assert content(StimulusDataset.open(dataset, parse_cache=cache)) == content(
        StimulusDataset.open(dataset, parse_cache=None)
    )
    assert StimulusDataset.open(dataset, parse_cache=cache).stimulus("p0.png", "awe").explanations == ["saved"]
    # it holds the dataset's content: its owner's only
    assert stat.S_IMODE(cache.file_for(dataset).stat().st_mode) == 0o600


def test_a_changed_annotations_json_is_never_served_from_the_cache(dataset, cache):
    StimulusDataset.open(dataset, parse_cache=cache)
    assert StimulusDataset.open(dataset, parse_cache=cache)._from_cache
    path = dataset / "annotations.json"
    st = path.stat()
    text = path.read_text()
    # same size, same modification time, same inode: only the bytes differ
    with open(path, "r+", encoding="utf-8") as handle:
        handle.write(text.replace('"artist 0"', '"artist X"'))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (path.stat().st_size, path.stat().st_mtime_ns, path.stat().st_ino) == (st.st_size, st.st_mtime_ns, st.st_ino)
    changed = StimulusDataset.open(dataset, parse_cache=cache)
    assert not changed._from_cache and changed.painting("p0.png").metadata["artist"] == "artist X"
    assert content(changed) == content(StimulusDataset.open(dataset, parse_cache=None))
    # a change that breaks a record is found: the changed file is checked in full
    with open(path, "r+", encoding="utf-8") as handle:
        handle.write(text.replace('"no_stimulus": false', '"no_stimulus": 0.000', 1))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    message = open_error(dataset, parse_cache=cache)
    assert "'no_stimulus' must be true or false" in message
    assert message == open_error(dataset, parse_cache=None)


def test_the_journal_is_read_and_checked_on_every_open(dataset, cache):
    StimulusDataset.open(dataset, parse_cache=cache)
    # another process saves: the snapshot's parse is still good, the new line is replayed
    StimulusDataset.open(dataset, compaction=JOURNAL_ONLY, parse_cache=None).write_painting(
        None, "p0.png", [Stimulus("awe", box(8), ["elsewhere"], annotator="bo")], records="merge"
    )
    ds = StimulusDataset.open(dataset, parse_cache=cache)
    assert ds._from_cache and "elsewhere" in [s.explanations[0] for s in ds.records("p0.png", "awe")]
    assert content(ds) == content(StimulusDataset.open(dataset, parse_cache=None))
    # a line changed by hand stops the open, cached or not, with the same message
    journal = dataset / "annotations.json.journal"
    lines = journal.read_text().splitlines(keepends=True)
    lines[0] = lines[0].replace('"late"', '"late", 5', 1)
    journal.write_text("".join(lines))
    message = open_error(dataset, parse_cache=cache)
    assert "annotations.json.journal line 1" in message and message == open_error(dataset, parse_cache=None)


def test_the_journal_lines_the_cache_holds_must_be_the_journal_s_first_bytes(dataset, cache):
    journal = dataset / "annotations.json.journal"
    StimulusDataset.open(dataset, parse_cache=cache)
    digest = hashlib.sha256((dataset / "annotations.json").read_bytes()).hexdigest()
    assert cache.load(dataset, digest).journal.end == journal.stat().st_size  # every line replayed
    # a line it holds changed by hand (same length, same time): read and checked again
    st = journal.stat()
    text = journal.read_text()
    journal.write_text(text.replace('"late"', '"LATE"'))
    os.utime(journal, ns=(st.st_atime_ns, st.st_mtime_ns))
    ds = StimulusDataset.open(dataset, parse_cache=cache)
    assert not ds._from_cache and ds.stimulus("late.png", "awe").explanations == ["LATE"]
    assert content(ds) == content(StimulusDataset.open(dataset, parse_cache=None))
    # lines cut off: what is left is what opens
    kept = "".join(journal.read_text().splitlines(keepends=True)[:3])
    journal.write_text(kept)
    ds = StimulusDataset.open(dataset, parse_cache=cache)
    assert not ds._from_cache and ds.painting("p4.png") is None and ds.painting("gone.png") is None
    assert content(ds) == content(StimulusDataset.open(dataset, parse_cache=None))
    assert StimulusDataset.open(dataset, parse_cache=cache)._from_cache
    # the journal gone: annotations.json alone names a painting whose image a line deleted
    journal.unlink()
    message = open_error(dataset, parse_cache=cache)
    assert "images/p4.png is missing" in message and message == open_error(dataset, parse_cache=None)
    journal.write_text(kept)
    assert StimulusDataset.open(dataset, parse_cache=cache)._from_cache
    # a torn last line (a writer killed mid-append) is not part of the dataset, cached or not
    StimulusDataset.open(dataset, compaction=JOURNAL_ONLY, parse_cache=None).write_painting(
        None, "p0.png", [Stimulus("awe", box(8), ["whole"], annotator="bo")], records="merge"
    )
    StimulusDataset.open(dataset, parse_cache=cache)
    with open(journal, "ab") as handle:
        handle.write(b'{"snapshot": "torn')
    ds = StimulusDataset.open(dataset, parse_cache=cache)
    assert ds._from_cache and content(ds) == content(StimulusDataset.open(dataset, parse_cache=None))


def test_image_files_are_checked_on_every_open(dataset, cache):
    StimulusDataset.open(dataset, parse_cache=cache)
    assert StimulusDataset.open(dataset, parse_cache=cache)._from_cache
    images = dataset / "images"
    # the same size, other pixels: a painting may be re-encoded outside napari-emosem
    Image.fromarray(rgb(99)).save(images / "p0.png")
    assert StimulusDataset.open(dataset, parse_cache=cache)._from_cache
    # another size, a missing file, a link out of images/: the messages of a fresh open
    Image.fromarray(rgb(0, 30, 30)).save(images / "p0.png")
    (images / "p1.png").unlink()
    outside = dataset.parent / "outside.png"
    Image.fromarray(rgb(3)).save(outside)
    (images / "p2.png").unlink()
    (images / "p2.png").symlink_to(outside)
    message = open_error(dataset, parse_cache=cache)
    assert "3 problems" in message and "p0.png is 30 × 30 px" in message and "p1.png is missing" in message
    assert "outside the dataset" in message
    assert message == open_error(dataset, parse_cache=None)
    # a painting the journal wrote, checked after the replay as without a cache
    shutil.copy(outside, images / "p0.png")
    shutil.copy(outside, images / "p1.png")
    (images / "p2.png").unlink()
    shutil.copy(outside, images / "p2.png")
    (images / "late.png").unlink()
    message = open_error(dataset, parse_cache=cache)
    assert "annotations.json.journal: image id" in message and "late.png is missing" in message
    assert message == open_error(dataset, parse_cache=None)


def damaged_files(path: Path, other_cache: Path):
    """(what, bytes of a damaged cache file) for the cache file at ``path``."""
    good = path.read_bytes()
    magic_end = good.index(b"\n") + 1
    header_end = good.index(b"\n", magic_end) + 1
    flipped = bytearray(good)
    flipped[header_end + len(flipped[header_end:]) // 2] ^= 0x20
    header = json.loads(good[magic_end:header_end])
    other_reader = dict(header, key=dict(header["key"], reader="0" * 64))
    yield "truncated", good[: len(good) // 2]
    yield "only the header", good[:header_end]
    yield "a byte changed in the payload", bytes(flipped)
    yield "empty", b""
    yield "not a cache file", b"\x80\x05garbage" * 100
    yield "another dataset's", other_cache.read_bytes()
    yield "another reader's", good[:magic_end] + json.dumps(other_reader).encode() + b"\n" + good[header_end:]
    yield "a header that is not JSON", good[:magic_end] + b"{nonsense\n" + good[header_end:]
    yield "a header longer than a line", good[:magic_end] + b" " * 10_000 + good[magic_end:]


class _RunsCode:
    def __init__(self, target: Path):
        self.target = target

    def __reduce__(self):
        return (os.mkdir, (str(self.target),))


def test_a_damaged_truncated_or_foreign_cache_file_is_ignored_and_rebuilt(dataset, cache, tmp_path):
    expected = content(StimulusDataset.open(dataset, parse_cache=None))
    other = make_dataset(tmp_path / "other", n=6)
    StimulusDataset.open(other, parse_cache=cache)
    StimulusDataset.open(dataset, parse_cache=cache)
    path = cache.file_for(dataset)
    for what, data in list(damaged_files(path, cache.file_for(other))):
        path.write_bytes(data)
        ds = StimulusDataset.open(dataset, parse_cache=cache)
        assert not ds._from_cache, what
        assert content(ds) == expected, what
        assert StimulusDataset.open(dataset, parse_cache=cache)._from_cache, what  # written anew
    # a file with the right key and checksum whose payload names a function: refused, never run
    digest = json.loads(path.read_bytes().split(b"\n")[1])["key"]["annotations_sha256"]
    payload = pickle.dumps(_RunsCode(tmp_path / "ran"), protocol=5)
    write_file(path, {"key": _key(dataset, digest), "payload_bytes": len(payload),
                      "payload_sha256": hashlib.sha256(payload).hexdigest()}, payload)  # fmt: skip
    ds = StimulusDataset.open(dataset, parse_cache=cache)
    assert not ds._from_cache and content(ds) == expected and not (tmp_path / "ran").exists()
    assert reader_fingerprint() == reader_fingerprint() and len(reader_fingerprint()) == 64


def test_the_cache_is_bounded_and_only_a_cache(tmp_path):
    roots = [make_dataset(tmp_path / f"ds{i}", n=5 + i) for i in range(3)]
    few = ParseCache(tmp_path / "cache", min_bytes=0, max_entries=2)
    for root in roots:
        StimulusDataset.open(root, parse_cache=few)
    kept = sorted(p.name for p in few.where().iterdir())
    assert kept == sorted(few.file_for(r).name for r in roots[1:])  # the least recently used went
    assert StimulusDataset.open(roots[2], parse_cache=few)._from_cache
    assert not StimulusDataset.open(roots[0], parse_cache=few)._from_cache
    # a parse larger than the bound is not kept
    small = ParseCache(tmp_path / "small", min_bytes=0, max_bytes=100)
    StimulusDataset.open(roots[0], parse_cache=small)
    assert not small.where().exists() or not list(small.where().glob("*.parse"))
    # a file below min_bytes parses in milliseconds: no cache file (the default: 1 MB)
    StimulusDataset.open(roots[0])
    assert not ParseCache().file_for(roots[0]).exists()
    # a cache folder that cannot be written: the dataset opens all the same
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the cache folder would be")
    ds = StimulusDataset.open(roots[1], parse_cache=ParseCache(blocked, min_bytes=0))
    assert content(ds) == content(StimulusDataset.open(roots[1], parse_cache=None))
    # deleting the cache is always safe
    shutil.rmtree(few.where())
    assert content(StimulusDataset.open(roots[2], parse_cache=few)) == content(
        StimulusDataset.open(roots[2], parse_cache=None)
    )

"""Writing never loses data: concurrent processes, crashes mid-write, a held lock."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from napari_emosem.data import Stimulus, StimulusDataset, store
from napari_emosem.errors import DatasetError

H, W = 32, 40
CTX = mp.get_context("spawn")  # no fork of a process that may hold threads


def image(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8)


def mask(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    m = np.zeros((H, W), bool)
    top, left = rng.integers(0, 16, 2)
    m[top : top + 8, left : left + 10] = True
    return m


# -- child processes (module level so that "spawn" can import them) ---------------------------
def _writer(root: str, prefix: str, count: int, rounds: int, start) -> None:
    ds = StimulusDataset.open(root, create=True)
    start.wait(120)  # both processes write at the same time
    for r in range(rounds):
        for i in range(count):
            seed = ord(prefix) * 100 + i
            ds.write_painting(
                image(seed),
                f"{prefix}{i}.png",
                [Stimulus("fear", mask(seed + r), [f"{prefix}{i} round {r}"])],
            )


def _slow_writer(root: str) -> None:
    ds = StimulusDataset.open(root)
    long_text = "a long explanation " * 400
    for i in range(10_000):
        ds.write_painting(
            image(1000 + i),
            f"extra{i}.png",
            [Stimulus(e, mask(i), [long_text] * 3) for e in ("awe", "fear", "sadness")],
        )


def _lock_holder(root: str, held, release) -> None:
    from filelock import FileLock

    with FileLock(str(store.lock_path(Path(root)))):
        held.set()
        release.wait(120)


# -- tests ------------------------------------------------------------------------------------
def test_two_processes_writing_different_paintings_lose_nothing(tmp_path):
    root = tmp_path / "ds"
    StimulusDataset.open(root, create=True)
    count, rounds = 10, 4
    start = CTX.Barrier(2)
    workers = [CTX.Process(target=_writer, args=(str(root), prefix, count, rounds, start)) for prefix in "AB"]
    for w in workers:
        w.start()
    for w in workers:
        w.join(300)
        assert w.exitcode == 0
    ds = StimulusDataset.open(root)
    names = sorted(p.file_name for p in ds.paintings)
    assert names == sorted(f"{p}{i}.png" for p in "AB" for i in range(count))
    for prefix in "AB":
        for i in range(count):
            [s] = ds.stimuli(f"{prefix}{i}.png")
            assert s.explanations == [f"{prefix}{i} round {rounds - 1}"]
            seed = ord(prefix) * 100 + i
            assert np.array_equal(s.mask, mask(seed + rounds - 1))
    # ids unique across both writers
    doc = json.loads((root / "annotations.json").read_text())
    assert len({a["id"] for a in doc["annotations"]}) == len(doc["annotations"]) == 2 * count
    assert len({i["id"] for i in doc["images"]}) == 2 * count


def test_two_open_datasets_in_one_process_merge(tmp_path):
    root = tmp_path / "ds"
    first = StimulusDataset.open(root, create=True)
    second = StimulusDataset.open(root, create=True)
    first.write_painting(image(1), "one.png", [Stimulus("awe", explanations=["1"])])
    second.write_painting(image(2), "two.png", [Stimulus("awe", explanations=["2"])])  # stale copy
    first.write_painting(image(3), "three.png", [])
    assert sorted(p.file_name for p in StimulusDataset.open(root).paintings) == ["one.png", "three.png", "two.png"]
    assert len(second.paintings) == 2 and len(first.paintings) == 3


def test_serialiser_failing_half_way_leaves_the_previous_file(tmp_path, monkeypatch):
    root = tmp_path / "ds"
    ds = StimulusDataset.open(root, create=True)
    for i in range(60):  # > 64 KiB of JSON, so part of the new file reaches the disk
        ds.write_painting(image(i), f"p{i}.png", [Stimulus("fear", mask(i), ["x" * 1500])])
    before = (root / "annotations.json").read_bytes()
    assert len(before) > 100_000 and not (root / "annotations.json.journal").exists()

    real = store.encode_chunks
    written = []

    def failing(obj):
        for chunk in real(obj):
            written.append(chunk)
            if sum(len(c) for c in written) > 0.8 * len(before):
                raise RuntimeError("disk on fire")
            yield chunk

    monkeypatch.setattr(store, "encode_chunks", failing)
    # the write lands in the journal; the compaction that follows it (a small dataset is
    # compacted after every write) fails half-way through the new annotations.json
    with pytest.raises(RuntimeError, match="disk on fire"):
        ds.write_painting(image(999), "new.png", [Stimulus("awe", explanations=["new"])])
    assert sum(len(c) for c in written) > 65_536  # a real half-written temporary file existed
    written.clear()
    with pytest.raises(RuntimeError, match="disk on fire"):
        ds.compact()
    monkeypatch.setattr(store, "encode_chunks", real)

    assert (root / "annotations.json").read_bytes() == before
    assert not list(root.glob(".annotations.json.*.tmp"))
    assert (root / "annotations.json.journal").stat().st_size > 0
    again = StimulusDataset.open(root)
    assert len(again.paintings) == 61 and again.stimulus("new.png", "awe").explanations == ["new"]
    assert len(ds.paintings) == 61
    assert ds.compact() and not (root / "annotations.json.journal").exists()
    assert json.loads((root / "annotations.json").read_text())["images"][-1]["file_name"] == "new.png"


def test_process_killed_mid_write_leaves_a_readable_dataset(tmp_path):
    root = tmp_path / "ds"
    base = StimulusDataset.open(root, create=True)
    for i in range(40):
        base.write_painting(image(i), f"base{i}.png", [Stimulus("fear", mask(i), ["y" * 3000])])
    killed_mid_write = False
    for _attempt in range(5):
        child = CTX.Process(target=_slow_writer, args=(str(root),))
        child.start()
        deadline = time.monotonic() + 120  # a safety net against a hung child, not a measurement
        while time.monotonic() < deadline and child.is_alive():
            if list(root.glob(".annotations.json.*.tmp")):
                os.kill(child.pid, signal.SIGKILL)
                break
        child.join(30)
        if child.is_alive():
            child.kill()
            child.join()
        if list(root.glob(".annotations.json.*.tmp")):
            killed_mid_write = True
            break
    assert killed_mid_write, "could not catch the writer mid-write"
    ds = StimulusDataset.open(root)  # valid JSON, every record decodes
    names = {p.file_name for p in ds.paintings}
    assert {f"base{i}.png" for i in range(40)} <= names
    extras = sorted(int(n[5:-4]) for n in names if n.startswith("extra"))
    assert extras == list(range(len(extras)))  # whole paintings only, in order
    for name in names:
        for s in ds.stimuli(name):
            assert s.mask.shape == (H, W)
    # and the dataset is still writable
    ds.write_painting(image(5000), "after.png", [])
    assert StimulusDataset.open(root).painting("after.png") is not None


def test_a_held_lock_times_out_with_a_clear_message(tmp_path):
    root = tmp_path / "ds"
    ds = StimulusDataset.open(root, create=True, lock_timeout=0.5)
    held, release = CTX.Event(), CTX.Event()
    holder = CTX.Process(target=_lock_holder, args=(str(root), held, release))
    holder.start()
    try:
        assert held.wait(120)
        with pytest.raises(DatasetError) as info:
            ds.write_painting(image(1), "a.png", [])
        assert str(store.lock_path(root)) in str(info.value)
        assert "another writer" in str(info.value)
    finally:
        release.set()
        holder.join(60)
    ds.write_painting(image(1), "a.png", [])  # released: writing works again
    assert len(StimulusDataset.open(root).paintings) == 1

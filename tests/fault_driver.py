"""Runs a real writer and kills it (SIGKILL) or fails its file operations (ENOSPC) at chosen points.

Used by ``test_fault_injection.py``, as ``python fault_driver.py MODE WORKDIR POINTS``:

- MODE is ``propose``, ``export`` (an annotator session's export), ``journal`` (saves, a
  metadata update and a removal appended to the journal of a dataset that is not compacted after
  each write), ``compact`` (folding a journal of such writes into annotations.json) or
  ``checkpoint`` (``checkpoint.save_checkpoint``), followed by ``:kill`` or ``:enospc``;
- POINTS is ``count`` (run once without a fault and report how many file operations the writer
  makes) or a comma list of operation numbers.

A *file operation* is what Python's audit hooks report on a path inside the trial's folder:
opening a file for writing, creating a folder, renaming, deleting. The hook runs just before the
operation, so fault ``k`` strikes between operation ``k - 1`` and operation ``k``: with ``:kill``
the writer (a forked copy of this process, so that nothing is imported again) sends itself
SIGKILL there; with ``:enospc`` operation ``k`` fails with "No space left on device" (deletions
excepted: they free space) and the writer carries on as the code under test decides.

Each trial starts from a copy of the same folder (``WORKDIR/template``) at ``WORKDIR/trial-k``;
what the writer reported as done before the fault goes to ``WORKDIR/trial-k.json``, for the test
to check against what is on disk. Nothing here judges the result.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import sys
from pathlib import Path

import numpy as np

H, W = 96, 128
EMOTIONS = ["fear", "awe"]


class Faults:
    """The audit hook: counts file operations under ``root`` and strikes at ``point``."""

    def __init__(self) -> None:
        self.root: str | None = None
        self.point = 0
        self.kind = "kill"
        self.count = 0
        sys.addaudithook(self._hook)

    def arm(self, root: Path, point: int, kind: str) -> None:
        self.root, self.point, self.kind, self.count = str(root), point, kind, 0

    def disarm(self) -> None:
        self.root = None

    def _hook(self, event: str, args: tuple) -> None:
        if self.root is None or not args:
            return
        if event == "open":
            path, mode, flags = args
            writes = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)
            )
            if not writes:
                return
        elif event not in ("os.rename", "os.remove", "os.mkdir", "os.rmdir", "shutil.rmtree"):
            return
        path = args[0]
        if isinstance(path, int) or not str(os.fsdecode(path)).startswith(self.root):
            return
        self.count += 1
        if self.count != self.point:
            return
        if self.kind == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        elif event not in ("os.remove", "os.rmdir", "shutil.rmtree"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), os.fsdecode(path))


def rgb(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8)


def box(seed: int) -> np.ndarray:
    mask = np.zeros((H, W), bool)
    mask[seed % 40 : seed % 40 + 30, seed % 50 : seed % 50 + 40] = True
    return mask


# ----------------------------------------------------------------------------- writers
def setup_dataset(work: Path) -> None:
    """A dataset that already holds a painting a person annotated, and three new paintings."""
    from PIL import Image

    from napari_emosem.data import Stimulus, StimulusDataset

    ds = StimulusDataset.open(work / "template", create=True)
    ds.write_painting(rgb(100), "base.png", [Stimulus("sadness", box(3), ["a person wrote this"])])
    (work / "in").mkdir()
    for i in range(3):
        Image.fromarray(rgb(i)).save(work / "in" / f"new{i}.png")


def propose_writer(work: Path):
    from napari_emosem.loading import load_predictor
    from napari_emosem.propose import propose_paintings

    setup_dataset(work)
    predictor = load_predictor("starter", device="cpu")
    inputs = sorted((work / "in").iterdir())

    def write(root: Path, done) -> None:
        def landed(path, proposals, error):
            if error is None:
                done(path.name)

        report = propose_paintings(inputs, predictor, EMOTIONS, root, overlays=True, on_painting=landed)
        for path, reason in report.failed:
            print(f"failed {path}: {reason}", file=sys.stderr)

    return write


def export_writer(work: Path):
    from napari_emosem.annotation import AnnotationSession

    setup_dataset(work)

    def write(root: Path, done) -> None:
        for i in range(3):
            session = AnnotationSession(rgb(i), file_name=f"new{i}.png", annotator="maria", autosave_dir=False)
            for k, emotion in enumerate(EMOTIONS):
                session.set_mask(emotion, box(i + 7 * k))
                session.set_explanation(emotion, f"{emotion} in painting {i}")
            try:
                session.export(root)
            except Exception as exc:  # reported; the test judges it
                print(f"failed new{i}.png: {type(exc).__name__}: {exc}", file=sys.stderr)
                continue
            done(f"new{i}.png")

    return write


def checkpoint_writer(work: Path):
    import torch

    from napari_emosem.build import build_emosem
    from napari_emosem.checkpoint import save_checkpoint
    from napari_emosem.config import get_preset

    torch.set_num_threads(1)  # the writer is forked: no thread pools across fork
    model, identity = build_emosem(get_preset("tiny"))
    (work / "template").mkdir(parents=True)
    save_checkpoint(model, identity, work / "template" / "ckpt")

    def write(root: Path, done) -> None:
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.01)
        save_checkpoint(model, identity, root / "ckpt")  # replaces the one there
        done("ckpt")
        save_checkpoint(model, identity, root / "ckpt-2")
        done("ckpt-2")

    return write


#: a dataset large enough not to be compacted after every write: saves are journal lines
JOURNAL_ONLY = {"small": 0}


def journal_writer(work: Path):
    from napari_emosem.data import Stimulus, StimulusDataset
    from napari_emosem.data.dataset import Compaction

    setup_dataset(work)

    def write(root: Path, done) -> None:
        ds = StimulusDataset.open(root, compaction=Compaction(**JOURNAL_ONLY))
        for i in range(3):
            stimuli = [
                Stimulus(e, box(i + 7 * k), [f"{e} in painting {i}"], annotator="maria") for k, e in enumerate(EMOTIONS)
            ]
            ds.write_painting(rgb(i), f"new{i}.png", stimuli)
            done(f"new{i}.png")
        ds.update_metadata("base.png", {"skipped": {"reason": "a test", "annotator": "maria", "at": None}})
        done("skipped base.png")
        ds.remove_painting("new0.png")
        done("removed new0.png")

    return write


def compact_writer(work: Path):
    from napari_emosem.data import Stimulus, StimulusDataset
    from napari_emosem.data.dataset import Compaction

    setup_dataset(work)
    ds = StimulusDataset.open(work / "template", compaction=Compaction(**JOURNAL_ONLY))
    for i in range(3):
        ds.write_painting(
            rgb(i), f"new{i}.png", [Stimulus(e, box(i + 7 * k), [f"{e} {i}"]) for k, e in enumerate(EMOTIONS)]
        )
    ds.write_painting(rgb(9), "gone.png", [])
    ds.remove_painting("gone.png")  # a removal replayed twice would not open
    assert ds.journal_bytes > 0

    def write(root: Path, done) -> None:
        StimulusDataset.open(root).compact()
        done("compacted")

    return write


WRITERS = {
    "propose": propose_writer,
    "export": export_writer,
    "journal": journal_writer,
    "compact": compact_writer,
    "checkpoint": checkpoint_writer,
}


# ----------------------------------------------------------------------------- trials
def trial(work: Path, write, faults: Faults, point: int, kind: str) -> dict:
    root = work / f"trial-{point}"
    shutil.copytree(work / "template", root, symlinks=True)
    read_end, write_end = os.pipe()
    if kind == "kill":
        pid = os.fork()
        if pid == 0:  # the writer
            os.close(read_end)
            faults.arm(root, point, kind)
            code = 0
            try:
                write(root, lambda name: os.write(write_end, f"landed {name}\n".encode()))
            except BaseException as exc:
                print(f"writer error: {type(exc).__name__}: {exc}", file=sys.stderr)
                code = 3
            os.write(write_end, f"count {faults.count}\n".encode())
            os._exit(code)
        os.close(write_end)
        messages = b""
        while chunk := os.read(read_end, 1 << 16):
            messages += chunk
        os.close(read_end)
        _, status = os.waitpid(pid, 0)
        outcome = (
            "killed"
            if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
            else f"exit {os.waitstatus_to_exitcode(status)}"
        )
        lines = messages.decode().splitlines()
    else:
        os.close(read_end)
        os.close(write_end)
        lines = []
        faults.arm(root, point, kind)
        try:
            write(root, lambda name: lines.append(f"landed {name}"))
            outcome = "done"
        except Exception as exc:  # the test judges it
            outcome = f"raised {type(exc).__name__}: {exc}"
        finally:
            lines.append(f"count {faults.count}")
            faults.disarm()
    result = {
        "point": point,
        "root": str(root),
        "outcome": outcome,
        "landed": [line.split(" ", 1)[1] for line in lines if line.startswith("landed ")],
        "count": next((int(line.split()[1]) for line in lines if line.startswith("count ")), None),
    }
    (work / f"trial-{point}.json").write_text(json.dumps(result))
    return result


def main() -> None:
    mode, work, points = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
    name, kind = mode.split(":")
    write = WRITERS[name](work)
    faults = Faults()
    if points == "count":
        result = trial(work, write, faults, 0, kind)  # point 0 never strikes
        print(json.dumps(result))
        return
    for point in map(int, points.split(",")):
        trial(work, write, faults, point, kind)


if __name__ == "__main__":
    main()

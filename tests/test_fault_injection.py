"""Faults in the middle of writes: kill -9 at random points, a disk that fills up between any two
files, a folder that turns read-only. Afterwards the dataset opens, holds every painting that had
landed (whole), and the next write leaves no temporary file behind.

The writers run in ``fault_driver.py`` (a separate process: it is what gets killed); this file
checks what they left on disk. Kill points are operation numbers drawn at random (seeded, so a
failure can be replayed) among the writer's file operations, counted by a first clean run.
A real full disk and a real read-only folder need a private tmpfs / bind mount: those tests run in
a user and mount namespace (``unshare -Urm``) and are skipped where the kernel forbids one.
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from napari_emosem.data import Stimulus, StimulusDataset

DRIVER = Path(__file__).with_name("fault_driver.py")
SEED = 10  # the kill points; change it to explore others


def drive(mode: str, work: Path, points: str) -> None:
    done = subprocess.run([sys.executable, str(DRIVER), mode, str(work), points], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]


def run_trials(work: Path, mode: str, how_many: int | None) -> list[dict]:
    """Count the writer's file operations, then fault ``how_many`` random points (None: all)."""
    drive(mode, work / "count", "count")
    total = json.loads((work / "count" / "trial-0.json").read_text())["count"]
    assert total and total > 5
    points = (
        range(1, total + 1) if how_many is None else sorted(random.Random(SEED).sample(range(1, total + 1), how_many))
    )
    drive(mode, work / "faults", ",".join(map(str, points)))
    return [json.loads((work / "faults" / f"trial-{p}.json").read_text()) for p in points]


def leftovers(root: Path, ds: StimulusDataset) -> list[str]:
    """Everything in the dataset folder that is neither the dataset nor an overlay of a painting."""
    allowed = {"annotations.json", "annotations.json.journal", "annotations.json.lock", "images", "overlays",
               ".emosem-image-sizes.json"}  # fmt: skip
    extra = [p.name for p in root.iterdir() if p.name not in allowed]
    named = {p.file_name for p in ds.paintings}
    extra += [f"images/{p.name}" for p in (root / "images").iterdir() if p.name not in named]
    if (root / "overlays").exists():
        stems = {Path(n).stem for n in named}
        extra += [f"overlays/{p.name}" for p in (root / "overlays").iterdir() if p.stem not in stems]
    return extra


def check_dataset(trial: dict, new_records: set[str]) -> StimulusDataset:
    """The dataset opens, the person's painting is intact, every painting is whole, and every
    painting the writer reported done is there."""
    root = Path(trial["root"])
    ds = StimulusDataset.open(root)
    base = ds.stimulus("base.png", "sadness")
    assert base is not None and base.explanations == ["a person wrote this"] and base.reviewed
    names = {p.file_name for p in ds.paintings}
    # (steps other than a painting's save are reported as "<what> <painting>")
    assert {name for name in trial["landed"] if " " not in name} - {"new0.png"} <= names, trial
    if "skipped base.png" not in trial["landed"]:  # the journal writer's removal had not begun
        assert {name for name in trial["landed"] if " " not in name} <= names, trial
    for painting in ds.paintings:
        if painting.file_name != "base.png":
            assert {s.emotion for s in ds.stimuli(painting)} == new_records, (trial, painting)
            assert ds.image(painting).shape == (96, 128, 3)
    return ds


def rgb(seed: int, h: int = 96, w: int = 128) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def starter():
    from napari_emosem.loading import load_predictor

    return load_predictor("starter", device="cpu")


# ----------------------------------------------------------------------------- kill -9
def test_propose_killed_at_random_points(tmp_path, starter):
    from napari_emosem.propose import propose_paintings

    trials = run_trials(tmp_path, "propose:kill", 12)
    extra_input = tmp_path / "after.png"
    Image.fromarray(rgb(50)).save(extra_input)
    for trial in trials:
        assert trial["outcome"] == "killed", trial
        check_dataset(trial, {"fear", "awe"})
        root = Path(trial["root"])
        report = propose_paintings([extra_input], starter, ["fear"], root)  # the next write
        assert report.written == ["after.png"], report.failed
        ds = StimulusDataset.open(root)
        assert leftovers(root, ds) == [], trial


def test_an_annotators_export_killed_at_every_point(tmp_path):
    trials = run_trials(tmp_path, "export:kill", None)
    for trial in trials:
        assert trial["outcome"] == "killed", trial
        ds = check_dataset(trial, {"fear", "awe"})
        ds.write_painting(rgb(60), "after.png", [Stimulus("awe", explanations=["next"])])
        assert leftovers(Path(trial["root"]), StimulusDataset.open(trial["root"])) == [], trial


def test_journal_appends_killed_at_every_point(tmp_path):
    """Saves, a metadata update and a removal, each one journal line (no compaction), killed
    between any two file operations: what landed is there, whole, once; nothing else is."""
    from napari_emosem.data.dataset import Compaction

    trials = run_trials(tmp_path, "journal:kill", None)
    for trial in trials:
        assert trial["outcome"] == "killed", trial
        landed = set(trial["landed"])
        ds = check_dataset(trial, {"fear", "awe"})
        names = {p.file_name for p in ds.paintings}
        # what the writer reported landed is there; a kill after a commit, before the report, may
        # leave one more step done
        if "removed new0.png" in landed:
            assert "new0.png" not in names, trial
        if "skipped base.png" in landed:
            assert ds.painting("base.png").skipped["reason"] == "a test", trial
        for painting in ds.paintings:  # every record once: one per (painting, emotion, annotator)
            assert len(ds.records(painting)) == len({(s.emotion, s.slot) for s in ds.records(painting)})
        root = Path(trial["root"])
        after = StimulusDataset.open(root, compaction=Compaction(small=0))
        after.write_painting(rgb(60), "after.png", [Stimulus("awe", explanations=["next"])])  # cuts a torn line
        again = StimulusDataset.open(root)
        assert again.stimulus("after.png", "awe").explanations == ["next"]
        assert {p.file_name for p in again.paintings} == names | {"after.png"}
        assert leftovers(root, again) == [], trial


def test_compaction_killed_at_every_point(tmp_path):
    """Folding a journal (saves and a removal) into annotations.json, killed anywhere: the dataset
    opens with every painting once, the removed one stays removed (the journal's lines are never
    replayed onto the snapshot that already holds them), and the next write tidies up."""
    trials = run_trials(tmp_path, "compact:kill", None)
    for trial in trials:
        assert trial["outcome"] == "killed", trial
        root = Path(trial["root"])
        ds = check_dataset(trial, {"fear", "awe"})
        assert sorted(p.file_name for p in ds.paintings) == ["base.png", "new0.png", "new1.png", "new2.png"], trial
        assert ds.stimulus("new2.png", "awe").explanations == ["awe 2"]
        ds.write_painting(rgb(60), "after.png", [Stimulus("awe", explanations=["next"])])
        again = StimulusDataset.open(root)
        assert len(again.paintings) == 5 and leftovers(root, again) == [], trial
        assert again.journal_bytes == 0  # a small dataset is compacted by the next write


def test_checkpoint_writes_killed_at_every_point(tmp_path):
    from napari_emosem.build import build_emosem
    from napari_emosem.checkpoint import read_checkpoint, save_checkpoint
    from napari_emosem.config import get_preset

    trials = run_trials(tmp_path, "checkpoint:kill", None)
    model, identity = build_emosem(get_preset("tiny"))
    problems = []
    for trial in trials:
        root = Path(trial["root"])
        assert trial["outcome"] == "killed", trial
        try:
            read_checkpoint(root / "ckpt")  # the old one or the new one
        except Exception as exc:  # collected, reported together
            problems.append(f"kill at {trial['point']}: no readable checkpoint ({exc})")
        save_checkpoint(model, identity, root / "ckpt")  # the next write
        hidden = sorted(p.name for p in root.iterdir() if p.name.startswith("."))
        if hidden:
            problems.append(f"kill at {trial['point']}: left {hidden}")
    assert problems == []


# ----------------------------------------------------------------------------- disk full
def test_a_disk_that_fills_up_between_any_two_files_of_an_export(tmp_path):
    trials = run_trials(tmp_path, "export:enospc", None)  # every file operation fails once
    failed_somewhere = 0
    for trial in trials:
        ds = check_dataset(trial, {"fear", "awe"})
        failed_somewhere += len(trial["landed"]) < 3
        ds.write_painting(rgb(60), "after.png", [Stimulus("awe", explanations=["next"])])
        assert leftovers(Path(trial["root"]), StimulusDataset.open(trial["root"])) == [], trial
    # many operations matter (a fault on creating a folder that exists, on a deletion, or in the
    # compaction that follows a save, does not: the journal holds the save)
    assert failed_somewhere >= 20


def test_a_disk_that_fills_up_during_propose(tmp_path, starter):
    from napari_emosem.propose import propose_paintings

    trials = run_trials(tmp_path, "propose:enospc", 20)
    extra_input = tmp_path / "after.png"
    Image.fromarray(rgb(50)).save(extra_input)
    for trial in trials:
        check_dataset(trial, {"fear", "awe"})
        root = Path(trial["root"])
        assert propose_paintings([extra_input], starter, ["fear"], root).written == ["after.png"]
        assert leftovers(root, StimulusDataset.open(root)) == [], trial


# ----------------------------------------------------------------------------- real mounts
def _namespaces_available() -> bool:
    if shutil.which("unshare") is None or shutil.which("mount") is None:
        return False
    return subprocess.run(["unshare", "-Urm", "true"], capture_output=True).returncode == 0


needs_namespaces = pytest.mark.skipif(
    not _namespaces_available(), reason="needs unshare -Urm (user + mount namespaces) for a private tmpfs"
)

IN_NAMESPACE = textwrap.dedent(
    """
    import json, subprocess, sys
    from pathlib import Path
    work = Path(sys.argv[1])
    mount = lambda *args: subprocess.run(["mount", *args], check=True)
    result = {}
    """
)


def in_namespace(tmp_path: Path, body: str) -> dict:
    """Run ``body`` as root of a private user + mount namespace; it fills ``result``."""
    script = IN_NAMESPACE + textwrap.dedent(body) + "\nprint(json.dumps(result))\n"
    done = subprocess.run(
        ["unshare", "-Urm", sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@needs_namespaces
def test_propose_on_a_real_full_disk_lands_what_fits_and_says_what_did_not(tmp_path):
    paintings = tmp_path / "in"
    paintings.mkdir()
    for i in range(5):
        Image.fromarray(rgb(i, 192, 256)).save(paintings / f"p{i}.png")  # ~150 KB of noise each
    result = in_namespace(
        tmp_path,
        """
        import contextlib, io
        from napari_emosem.cli import main
        from napari_emosem.data import StimulusDataset
        disk = work / "disk"
        disk.mkdir()
        mount("-t", "tmpfs", "-o", "size=640k", "tmpfs", str(disk))
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            result["code"] = main(["propose", str(work / "in"), "--out", str(disk / "ds"), "--emotions", "fear"])
        result["errors"] = [l for l in err.getvalue().splitlines() if "error:" in l]
        result["traceback"] = "Traceback" in err.getvalue()
        ds = StimulusDataset.open(disk / "ds")
        result["landed"] = sorted(p.file_name for p in ds.paintings)
        with open(disk / "filler", "wb", buffering=0) as filler, contextlib.suppress(OSError):
            while True:  # take again what the failed paintings freed
                filler.write(bytes(4096))
        err = io.StringIO()  # exporting onto the full disk: one line, not a traceback
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            result["export"] = main(["export", str(disk / "ds"), "--format", "png", "--out", str(disk / "png")])
        result["export_err"] = err.getvalue()
        (disk / "filler").unlink()
        mount("-o", "remount,size=8m", str(disk))  # space again: the next write
        ds.write_painting(work / "in" / "p4.png", "after.png", [])
        ds = StimulusDataset.open(disk / "ds")
        named = {p.file_name for p in ds.paintings}
        result["after"] = sorted(p.file_name for p in ds.paintings)
        result["leftovers"] = sorted(str(p.relative_to(disk / "ds")) for p in (disk / "ds").rglob("*")
                                     if (p.name.startswith(".") and p.name != ".emosem-image-sizes.json")
                                     or (p.parent.name == "images" and p.name not in named))
    """,
    )
    assert result["code"] == 2 and not result["traceback"]
    assert 1 <= len(result["landed"]) < 5  # some fitted, some did not
    # one line per painting that did not fit; one that fitted without its overlay says so
    named = {f"p{i}.png": [line for line in result["errors"] if f"/p{i}.png:" in line] for i in range(5)}
    assert sum(map(len, named.values())) == len(result["errors"])
    for name, lines in named.items():
        if name not in result["landed"]:
            assert len(lines) == 1 and "No space left on device" in lines[0], (name, lines)
        else:
            assert lines == [] or (len(lines) == 1 and "written to the dataset, but not its overlay" in lines[0])
    assert set(result["landed"]) < set(result["after"])
    assert result["leftovers"] == []
    export_lines = result["export_err"].strip().splitlines()
    assert result["export"] == 2 and len(export_lines) == 1
    assert "the export stopped half-way (No space left on device" in export_lines[0]


@needs_namespaces
def test_a_folder_that_turns_read_only_in_the_middle_of_a_batch(tmp_path):
    paintings = tmp_path / "in"
    paintings.mkdir()
    for i in range(4):
        Image.fromarray(rgb(i)).save(paintings / f"p{i}.png")
    (tmp_path / "ds").mkdir()
    result = in_namespace(
        tmp_path,
        """
        import contextlib, io
        from napari_emosem.cli import main
        from napari_emosem.data import StimulusDataset
        from napari_emosem.loading import load_predictor
        from napari_emosem.propose import propose_paintings
        ds_dir = work / "ds"
        mount("--bind", str(ds_dir), str(ds_dir))
        def read_only_after_the_first(path, proposals, error):
            if path.name == "p0.png":
                mount("-o", "remount,bind,ro", str(ds_dir))
        report = propose_paintings(sorted((work / "in").iterdir()), load_predictor("starter", device="cpu"),
                                   ["fear"], ds_dir, on_painting=read_only_after_the_first)
        result["written"] = report.written
        result["failed"] = report.failed
        result["landed"] = sorted(p.file_name for p in StimulusDataset.open(ds_dir).paintings)
        err = io.StringIO()  # evaluate --json into the read-only folder: refused before any work
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            result["evaluate"] = main(["evaluate", "--data", str(ds_dir), "--model", "starter",
                                       "--json", str(ds_dir / "metrics.json"), "--no-explanations"])
        result["evaluate_err"] = err.getvalue()
        mount("-o", "remount,bind,rw", str(ds_dir))
    """,
    )
    assert result["written"] == ["p0.png"] and result["landed"] == ["p0.png"]
    assert [name for name, _ in result["failed"]] == [str(paintings / f"p{i}.png") for i in (1, 2, 3)]
    for _, reason in result["failed"]:
        assert "\n" not in reason and "Read-only file system" in reason
    assert result["evaluate"] == 2
    assert (
        "cannot write there (Read-only file system)" in result["evaluate_err"] and "[1/" not in result["evaluate_err"]
    )
    ds = StimulusDataset.open(tmp_path / "ds")  # writable again: the next write leaves nothing behind
    ds.write_painting(paintings / "p3.png", "after.png", [])
    assert leftovers(tmp_path / "ds", StimulusDataset.open(tmp_path / "ds")) == []

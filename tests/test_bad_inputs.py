"""A corpus of bad inputs: each gives exit 2 and one line that names the input and the problem
(the reader: one clear DatasetError), never a traceback, a crash or a hang, and the other inputs
of the same command still land.

Inputs that crashed the process (pycocotools rasterising a polygon at 1e9) run in a subprocess,
so that a regression fails the test instead of killing pytest. Inputs that hung (a FIFO) run with
a feeder thread that writes an image into the FIFO whenever something opens it for reading: code
that reads a FIFO gets those bytes instead of blocking, and the test fails on what it did.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from napari_emosem._reader import get_reader
from napari_emosem.cli import main
from napari_emosem.data import Stimulus, StimulusDataset
from napari_emosem.data.rle import _runs_to_string
from napari_emosem.errors import DatasetError
from napari_emosem.paintings import painting_paths

H, W = 48, 64
PAINTINGS = painting_paths()


# ----------------------------------------------------------------------------- helpers
def rgb(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8)


def box(top: int, left: int) -> np.ndarray:
    mask = np.zeros((H, W), bool)
    mask[top : top + 12, left : left + 20] = True
    return mask


def make_dataset(root: Path) -> Path:
    ds = StimulusDataset.open(root, create=True)
    ds.write_painting(rgb(0), "good.png", [Stimulus("fear", box(2, 3), ["the dark corner"])])
    ds.write_painting(rgb(1), "bad.png", [Stimulus("awe", box(20, 30), ["the wide sky"])])
    return root


def edit_json(root: Path, change) -> None:
    """Apply ``change(obj)`` to annotations.json; it may return replacement text."""
    path = root / "annotations.json"
    obj = json.loads(path.read_text())
    text = change(obj)
    path.write_text(text if isinstance(text, str) else json.dumps(obj))


def bad_annotation(obj: dict) -> dict:
    image_id = next(i["id"] for i in obj["images"] if i["file_name"] == "bad.png")
    return next(a for a in obj["annotations"] if a["image_id"] == image_id)


def errors_of(err: str, command: str) -> list[str]:
    """The error lines; asserts that the output holds no traceback and no continuation lines."""
    assert "Traceback" not in err, err
    assert not any(line.startswith("  - ") for line in err.splitlines()), err  # one line each
    return [line for line in err.splitlines() if line.startswith(f"emosem {command}: error:")]


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def run_subprocess(*argv, script: str | None = None) -> tuple[int, str, str]:
    """The CLI (or a script) in a fresh interpreter: a segmentation fault fails the test, not pytest."""
    cmd = (
        [sys.executable, "-c", script, *map(str, argv)]
        if script
        else [sys.executable, "-m", "napari_emosem", *map(str, argv)]
    )
    done = subprocess.run(cmd, capture_output=True, text=True)
    return done.returncode, done.stdout, done.stderr


class FifoFeeder:
    """Writes ``payload`` into a FIFO each time a reader opens it, until stopped."""

    def __init__(self, path: Path, payload: bytes):
        os.mkfifo(path)
        self.path, self.payload, self.fed = path, payload, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._feed, daemon=True)

    def _feed(self) -> None:
        while not self._stop.is_set():
            try:  # succeeds only while something holds the FIFO open for reading
                fd = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:
                self._stop.wait(0.005)
                continue
            try:
                os.set_blocking(fd, True)
                os.write(fd, self.payload)
                self.fed += 1
            except OSError:  # the reader closed it first (what the fixed code does)
                pass
            finally:
                os.close(fd)

    def __enter__(self) -> FifoFeeder:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def png_bytes(seed: int = 5) -> bytes:
    import io

    buffer = io.BytesIO()
    Image.fromarray(rgb(seed)).save(buffer, format="PNG")
    return buffer.getvalue()


# ----------------------------------------------------------------------------- bad dataset files
def _poly(value):
    def change(obj):
        bad_annotation(obj)["segmentation"] = [[0, 0, value, 0, value, value]]
    return change


def _counts(counts):
    def change(obj):
        bad_annotation(obj)["segmentation"] = {"size": [H, W], "counts": counts}
    return change


def _score(literal: str):
    def change(obj):
        bad_annotation(obj)["score"] = "SCORE"
        return json.dumps(obj).replace('"SCORE"', literal)
    return change


def _deep(obj):
    bad_annotation(obj)["nested"] = "DEEP"
    return json.dumps(obj).replace('"DEEP"', "[" * 100_000 + "]" * 100_000)


def _deep_but_parseable(obj):
    # parses, but writing it back from a call stack 120 frames deep (a napari callback) raised
    # RecursionError: refused when opened, where it is one clear line
    image = next(i for i in obj["images"] if i["file_name"] == "bad.png")
    image["provenance"] = "DEEP"
    return json.dumps(obj).replace('"DEEP"', "[" * 900 + "]" * 900)


def _symlink_out(root: Path) -> None:
    secret = root.parent / "outside.png"
    Image.fromarray(rgb(1)).save(secret)
    (root / "images" / "bad.png").unlink()
    (root / "images" / "bad.png").symlink_to(secret)


def _fifo_image(root: Path) -> None:
    (root / "images" / "bad.png").unlink()  # the test feeds a FIFO in its place (see _bad_dataset)


def _huge_size(obj):
    image = next(i for i in obj["images"] if i["file_name"] == "bad.png")
    image["width"] = image["height"] = 10**6


def _long_name(obj):
    image = next(i for i in obj["images"] if i["file_name"] == "bad.png")
    image["file_name"] = "b" * 300 + ".png"


def _not_utf8(root: Path) -> None:
    path = root / "annotations.json"
    path.write_bytes(path.read_bytes().replace(b"the wide sky", b"the wide \xff\xfe sky"))


# name -> (what to do to the dataset, text the error line must hold, crashed the process on main)
DATASET_CASES = {
    "polygon at 1e9": (_poly(1e9), "lies far outside the 64 × 48 image", True),
    "polygon at -1e12": (_poly(-1e12), "lies far outside the 64 × 48 image", True),
    "polygon with NaN": (_poly(float("nan")), "NaN is not a JSON number", True),
    "RLE run of 2**64": (_counts([2**64, 5]), "a run longer than the mask's 3072 pixels", False),
    "RLE runs summing past 64 bits": (_counts([2**62, 2**62, 2**62, 2**62 + H * W]), "a run longer than", False),
    "compressed RLE with runs of 2**40": (
        _counts(_runs_to_string(np.array([2**40, 2**40, -(2**41) + H * W]))), "a run too long to be real", False),
    "score NaN": (_score("NaN"), "NaN is not a JSON number", False),
    "score Infinity": (_score("-Infinity"), "-Infinity is not a JSON number", False),
    "score 1e999": (_score("1e999"), "1e999 is not a JSON number", False),
    "JSON nested 100,000 deep": (_deep, "nested thousands of levels deep", False),
    "metadata nested 900 deep": (_deep_but_parseable, "field 'provenance' is nested more than 32 levels deep", False),
    "image symlinked out of the dataset": (_symlink_out, "outside the dataset's images/ folder", False),
    "image that is a FIFO": (_fifo_image, "not a regular file", False),
    "absurd image size": (_huge_size, "1000000 × 1000000 px is not the size of a real image", False),
    "file name longer than 255 bytes": (_long_name, "is too long", False),
    "not UTF-8": (_not_utf8, "not UTF-8 text", False),
}


def _bad_dataset(tmp_path: Path, case: str, stack: contextlib.ExitStack | None = None) -> Path:
    """The good dataset spoilt by ``case``; a FIFO case is fed (on ``stack``) while the test runs."""
    root = make_dataset(tmp_path / "ds")
    change = DATASET_CASES[case][0]
    if change in (_symlink_out, _fifo_image, _not_utf8):
        change(root)
    else:
        edit_json(root, change)
    if change is _fifo_image:
        assert stack is not None
        stack.enter_context(FifoFeeder(root / "images" / "bad.png", png_bytes(1)))
    return root


@pytest.fixture
def stack():
    with contextlib.ExitStack() as stack:
        yield stack


@pytest.mark.parametrize("case", list(DATASET_CASES))
def test_export_refuses_a_bad_dataset_in_one_line(tmp_path, capsys, stack, case):
    root = _bad_dataset(tmp_path, case, stack)
    _, needle, crashed = DATASET_CASES[case]
    out = tmp_path / "out"
    if crashed:
        code, _, err = run_subprocess("export", root, "--format", "png", "--out", out)
    else:
        code, _, err = run(capsys, "export", root, "--format", "png", "--out", out)
    assert code == 2, err
    (line,) = errors_of(err, "export")
    assert str(root / "annotations.json") in line and needle in line
    assert not out.exists() or not any(out.iterdir())  # nothing half-exported


@pytest.mark.parametrize(
    "case",
    [
        "polygon at 1e9",
        "RLE runs summing past 64 bits",
        "score NaN",
        "JSON nested 100,000 deep",
        "image symlinked out of the dataset",
        "image that is a FIFO",
    ],
)
def test_the_napari_reader_refuses_a_bad_dataset_clearly(tmp_path, stack, case):
    root = _bad_dataset(tmp_path, case, stack)
    _, needle, crashed = DATASET_CASES[case]
    if crashed:  # as napari would call it, in a process of its own
        script = (
            "import sys\nfrom napari_emosem._reader import get_reader\nfrom napari_emosem.errors import DatasetError\n"
            "path = sys.argv[1]\nreader = get_reader(path)\n"
            "try:\n    reader(path)\nexcept DatasetError as exc:\n    print(exc)\n    sys.exit(2)\n"
        )
        code, out, err = run_subprocess(root, script=script)
        assert code == 2, err
        assert "Traceback" not in err and out.count("\n") == 1 and needle in out
        return
    reader = get_reader(str(root))
    assert reader is not None  # napari asks the plugin, which claims the folder
    with pytest.raises(DatasetError) as info:
        reader(str(root))
    message = str(info.value)
    assert "\n" not in message and needle in message


@pytest.mark.parametrize("case", ["polygon at 1e9", "RLE run of 2**64", "score 1e999"])
def test_evaluate_refuses_bad_ground_truth_or_predictions(tmp_path, capsys, case):
    root = _bad_dataset(tmp_path, case)
    good = make_dataset(tmp_path / "good")
    _, needle, crashed = DATASET_CASES[case]
    runner = (lambda *a: run_subprocess(*a)) if crashed else (lambda *a: run(capsys, *a))
    for data, predictions in ((root, good), (good, root)):
        code, _, err = runner("evaluate", "--data", data, "--predictions", predictions, "--no-explanations")
        assert code == 2, err
        (line,) = errors_of(err, "evaluate")
        assert needle in line and str(root) in line


# ----------------------------------------------------------------------------- propose
@pytest.fixture
def good_painting(tmp_path) -> Path:
    path = tmp_path / "in" / "good.png"
    path.parent.mkdir()
    Image.fromarray(rgb(7)).save(path)
    return path


def _landed(out: Path) -> list[str]:
    return [p.file_name for p in StimulusDataset.open(out).paintings]


def test_propose_a_fifo_among_paintings_does_not_hang(tmp_path, capsys, good_painting):
    fifo = tmp_path / "in" / "pipe.png"
    out = tmp_path / "out"
    with FifoFeeder(fifo, png_bytes()):
        code, _, err = run(capsys, "propose", fifo, good_painting, "--out", out, "--emotions", "fear", "--no-overlay")
    assert code == 2
    (line,) = errors_of(err, "propose")
    assert str(fifo) in line and "not a regular file" in line
    assert _landed(out) == ["good.png"]


def test_propose_a_file_name_too_long_for_the_file_system(tmp_path, capsys, good_painting):
    long = tmp_path / ("x" * 300 + ".png")
    out = tmp_path / "out"
    code, _, err = run(capsys, "propose", long, good_painting, "--out", out, "--emotions", "fear", "--no-overlay")
    assert code == 2
    (line,) = errors_of(err, "propose")
    assert "x" * 50 in line and "too long" in line
    assert _landed(out) == ["good.png"]


def test_propose_an_image_whose_header_claims_a_gigapixel(tmp_path, capsys, good_painting):
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    bomb = tmp_path / "in" / "bomb.png"  # 40,000 × 40,000 px declared, a few bytes of data
    bomb.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 40_000, 40_000, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\0" * 100)) + chunk(b"IEND", b""))  # fmt: skip
    out = tmp_path / "out"
    code, _, err = run(capsys, "propose", bomb, good_painting, "--out", out, "--emotions", "fear", "--no-overlay")
    assert code == 2
    (line,) = errors_of(err, "propose")
    assert str(bomb) in line and "40000 × 40000 px" in line and "200 MP limit" in line
    assert _landed(out) == ["good.png"]


def test_propose_a_symlink_loop_among_paintings(tmp_path, capsys, good_painting):
    loop = tmp_path / "in" / "loop.png"
    loop.symlink_to(loop)
    out = tmp_path / "out"
    code, _, err = run(capsys, "propose", loop, good_painting, "--out", out, "--emotions", "fear", "--no-overlay")
    assert code == 2
    (line,) = errors_of(err, "propose")
    assert str(loop) in line and "cannot read it" in line
    assert _landed(out) == ["good.png"]


@pytest.mark.parametrize(
    "argv, env, needle",
    [
        (["--max-tokens", "-5"], {}, "--max-tokens -5: give at least 1"),
        (["--max-tokens", "0"], {}, "--max-tokens 0: give at least 1"),
        (["--emotions", "faer"], {}, "unknown emotion 'faer' (did you mean fear?)"),
        (
            ["--model", "tiny", "--device", "cpu"],
            {"EMOSEM_EMBEDDING_CACHE_MB": "abc"},
            "EMOSEM_EMBEDDING_CACHE_MB='abc' is not a size in megabytes",
        ),
        (
            ["--model", "tiny", "--device", "cpu"],
            {"EMOSEM_EMBEDDING_CACHE_MB": "-5"},
            "EMOSEM_EMBEDDING_CACHE_MB='-5' is not a size in megabytes",
        ),
    ],
)
def test_propose_bad_options_fail_before_any_work(tmp_path, capsys, monkeypatch, good_painting, argv, env, needle):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    out = tmp_path / "out"
    code, _, err = run(capsys, "propose", good_painting, "--out", out, "--no-overlay", *argv)
    assert code == 2
    (line,) = errors_of(err, "propose")
    assert needle in line
    assert not (out / "annotations.json").exists()


def test_propose_into_a_corrupt_dataset_changes_nothing(tmp_path, capsys, good_painting):
    root = _bad_dataset(tmp_path, "RLE run of 2**64")
    before = (root / "annotations.json").read_bytes()
    code, _, err = run(capsys, "propose", good_painting, "--out", root, "--emotions", "fear", "--no-overlay")
    assert code == 2
    (line,) = errors_of(err, "propose")
    assert "a run longer than" in line
    assert (root / "annotations.json").read_bytes() == before


def test_propose_out_is_a_file(tmp_path, capsys, good_painting):
    taken = tmp_path / "taken"
    taken.write_text("x")
    code, _, err = run(capsys, "propose", good_painting, "--out", taken)
    assert code == 2
    (line,) = errors_of(err, "propose")
    assert str(taken) in line and "cannot write there" in line


# ----------------------------------------------------------------------------- evaluate, export
def test_evaluate_json_into_an_unwritable_place_fails_before_the_work(tmp_path, capsys):
    good = make_dataset(tmp_path / "good")
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a folder should be")
    for target, needle in ((blocker / "results.json", "cannot write there"), (tmp_path, "is a folder")):
        code, out, err = run(capsys, "evaluate", "--data", good, "--model", "starter", "--device", "cpu",
                             "--json", target, "--no-explanations")  # fmt: skip
        assert code == 2
        (line,) = errors_of(err, "evaluate")
        assert needle in line
        assert "[1/" not in err and out == ""  # no painting was proposed for: nothing was lost


def test_evaluate_unknown_emotion_suggests_the_closest(tmp_path, capsys):
    good = make_dataset(tmp_path / "good")
    code, _, err = run(
        capsys, "evaluate", "--data", good, "--predictions", good, "--emotions", "sadnes", "--no-explanations"
    )
    assert code == 2
    (line,) = errors_of(err, "evaluate")
    assert "did you mean sadness?" in line


def test_export_into_a_file_and_with_a_typo(tmp_path, capsys):
    good = make_dataset(tmp_path / "good")
    taken = tmp_path / "taken"
    taken.write_text("x")
    for argv, needle in (
        (["--format", "apolo", "--out", taken], "cannot write there"),
        (["--format", "png", "--out", tmp_path / "out", "--emotions", "aw"], "did you mean awe?"),
    ):
        code, _, err = run(capsys, "export", good, *argv)
        assert code == 2
        (line,) = errors_of(err, "export")
        assert needle in line


def test_a_command_on_an_empty_folder_says_what_a_dataset_is(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = run(capsys, "export", empty, "--format", "png", "--out", tmp_path / "out")
    assert code == 2
    (line,) = errors_of(err, "export")
    assert "has no annotations.json, so it is not a stimulus dataset" in line
    assert "StimulusDataset.open" not in line  # a CLI user is not told to call Python


# ----------------------------------------------------------------------------- import-apolo
@pytest.fixture
def release(tmp_path) -> dict:
    """Two paintings with one map each; tests spoil one input and expect the other to land."""
    images, maps = tmp_path / "wikiart", tmp_path / "maps"
    images.mkdir()
    maps.mkdir()
    for name, seed in (("artist_good-1900", 3), ("artist_bad-1900", 4)):
        Image.fromarray(rgb(seed)).save(images / f"{name}.png")
        np.save(maps / f"{name}_fear.npy", box(5, 5).astype(np.uint8))
    rows = [{"painting": "artist_good-1900", "emotion": "fear", "utterances": ["dark"], "split": "test"},
            {"painting": "artist_bad-1900", "emotion": "fear", "utterances": ["grim"], "split": "test"}]  # fmt: skip
    apolo = tmp_path / "apolo.json"
    apolo.write_text(json.dumps(rows))
    return {"images": images, "maps": maps, "apolo": apolo, "out": tmp_path / "out", "rows": rows}


def _import(capsys, release, **override):
    args = {
        "--apolo": release["apolo"],
        "--maps": release["maps"],
        "--images": release["images"],
        "--out": release["out"],
    }
    args.update(override)
    return run(capsys, "import-apolo", *[x for kv in args.items() for x in kv])


def _bad_map(kind: str):
    def spoil(path: Path) -> None:
        if kind == "pickle":
            np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
        elif kind == "truncated":
            path.write_bytes(path.read_bytes()[:90])
        elif kind == "huge header":  # claims 100,000 × 100,000 values (10 GB), holds none
            with open(path, "wb") as handle:
                np.lib.format.write_array_header_1_0(
                    handle, {"descr": "|u1", "fortran_order": False, "shape": (100_000, 100_000)}
                )
        elif kind == "3-D":
            np.save(path, np.zeros((2, H, W, 3), np.uint8))
        elif kind == "text":
            path.write_text("not a numpy file")
    return spoil


@pytest.mark.parametrize(
    "kind, needle",
    [
        ("pickle", "a pickled object array"),
        ("truncated", "not a .npy array"),
        ("huge header", "not a .npy array"),
        ("3-D", "expected a 2-D numeric map"),
        ("text", "not a .npy file"),
    ],
)
def test_import_apolo_a_bad_map_among_good_ones(release, capsys, kind, needle):
    bad = release["maps"] / "artist_bad-1900_fear.npy"
    _bad_map(kind)(bad)
    code, out, err = _import(capsys, release)
    assert code == 2
    (line,) = errors_of(err, "import-apolo")
    assert str(bad) in line and needle in line
    assert _landed(release["out"]) == ["artist_good-1900.png"]
    assert "imported 1 pairs" in out


def test_import_apolo_a_row_with_nan_ids_among_good_ones(release, capsys):
    rows = release["rows"] + [{"painting": "artist_good-1900", "artemis_id": "NAN_HERE"}]
    release["apolo"].write_text(json.dumps(rows).replace('"NAN_HERE"', "NaN"))
    code, _, err = _import(capsys, release)
    assert code == 2
    (line,) = errors_of(err, "import-apolo")
    assert "row 2" in line and "artemis_id nan is not an integer" in line
    assert sorted(_landed(release["out"])) == ["artist_bad-1900.png", "artist_good-1900.png"]


@pytest.mark.parametrize("which", ["--apolo", "--artemis"])
def test_import_apolo_a_fifo_for_a_file_does_not_hang(release, capsys, tmp_path, which):
    fifo = tmp_path / "pipe"
    payload = json.dumps(release["rows"]).encode() if which == "--apolo" else b"painting,emotion,utterance\n"
    with FifoFeeder(fifo, payload):
        code, _, err = _import(capsys, release, **{which: fifo})
    assert code == 2
    (line,) = errors_of(err, "import-apolo")
    assert str(fifo) in line and "not a regular file" in line
    assert not (release["out"] / "annotations.json").exists()


@pytest.mark.parametrize(
    "text, needle",
    [
        ("[" * 100_000 + "]" * 100_000, "nested thousands of levels deep"),
        (b"\xff\xfe[]", "not UTF-8 text"),
    ],
)
def test_import_apolo_an_unreadable_apolo_json(release, capsys, text, needle):
    if isinstance(text, bytes):
        release["apolo"].write_bytes(text)
    else:
        release["apolo"].write_text(text)
    code, _, err = _import(capsys, release)
    assert code == 2
    (line,) = errors_of(err, "import-apolo")
    assert str(release["apolo"]) in line and needle in line

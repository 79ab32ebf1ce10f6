"""Folders replaced whole (checkpoints, training state): a writer SIGKILLed at every file operation
leaves the old folder or the new one under the name, on Linux's atomic exchange and on the
two-rename fallback other systems use; the next save or read removes (or finishes) what killed
writers left, and never touches a live writer's scratch folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from napari_emosem import atomic_folder
from napari_emosem.atomic_folder import clean_interrupted, replacing_folder

# Runs in a separate process (what gets killed). Counts the file operations under the trial
# folder (audit hooks, and the exchange), then for each point forks a writer that SIGKILLs itself
# just before that operation while replacing "target" and then writing "other".
DRIVER = textwrap.dedent(
    """
    import json, os, shutil, signal, sys
    from pathlib import Path
    from napari_emosem import atomic_folder
    from napari_emosem.atomic_folder import replacing_folder

    work, fallback = Path(sys.argv[1]), sys.argv[2] == "fallback"
    exchange = atomic_folder._exchange

    def counted_exchange(a, b):
        sys.audit("test.exchange", str(a))  # one more point: just before the exchange
        return False if fallback else exchange(a, b)  # fallback: as on a system without one

    atomic_folder._exchange = counted_exchange
    armed = {"root": None, "point": 0, "count": 0}
    OPS = ("os.rename", "os.remove", "os.mkdir", "os.rmdir", "shutil.rmtree")

    def hook(event, args):
        if armed["root"] is None:
            return
        if event == "open":
            if not (isinstance(args[2], int) and args[2] & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)):
                return
        elif event not in OPS and event != "test.exchange":
            return
        if not os.fsdecode(args[0]).startswith(armed["root"]):
            return
        armed["count"] += 1
        if armed["count"] == armed["point"]:
            os.kill(os.getpid(), signal.SIGKILL)

    sys.addaudithook(hook)

    def save(folder, text):
        with replacing_folder(folder) as tmp:
            for name in ("a.txt", "b.txt"):
                (tmp / name).write_text(text)

    save(work / "template" / "target", "old")
    points = None
    for point in range(0, 1000):
        if points is not None and point > points:
            break
        root = work / f"trial-{point}"
        shutil.copytree(work / "template", root)
        pid = os.fork()
        if pid == 0:
            armed.update(root=str(root), point=point, count=0)
            save(root / "target", "new")
            save(root / "other", "new")
            armed["root"] = None
            if point == 0:  # point 0 never strikes: the clean run that counts
                (work / "count.json").write_text(json.dumps(armed["count"]))
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        killed = os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
        assert killed or point == 0, (point, status)
        if point == 0:
            points = json.loads((work / "count.json").read_text())
    print(points)
    """
)


def exchange_works(where: Path) -> bool:
    a, b = where / "a", where / "b"
    a.mkdir()
    b.mkdir()
    (a / "x").touch()
    swapped = atomic_folder._exchange(a, b) and (b / "x").exists()
    for p in (a, b):
        (p / "x").unlink(missing_ok=True)
        p.rmdir()
    return swapped


def contents(folder: Path) -> str | None:
    """"old" or "new" when the folder holds a whole version, None when it is missing."""
    if not folder.exists():
        return None
    texts = {p.name: p.read_text() for p in folder.iterdir()}
    assert set(texts) == {"a.txt", "b.txt"} and len(set(texts.values())) == 1, texts
    return texts["a.txt"]


@pytest.mark.parametrize("swap", ["exchange", "fallback"])
def test_a_writer_killed_at_every_file_operation_leaves_the_old_or_the_new_folder(tmp_path, swap):
    if swap == "exchange" and not exchange_works(tmp_path):
        pytest.skip("this kernel or file system has no renameat2(RENAME_EXCHANGE)")
    done = subprocess.run([sys.executable, "-c", DRIVER, str(tmp_path), swap], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    points = int(done.stdout.split()[-1])
    assert points >= 8  # scratch folder, two files, the swap, removing the old: for two folders
    seen = []
    for point in range(1, points + 1):
        root = tmp_path / f"trial-{point}"
        state = contents(root / "target")
        if state is None:
            # only the fallback has a moment with nothing under the name: between its two renames;
            # the next save or read (see the checkpoint test below) finishes the save
            assert swap == "fallback", point
            clean_interrupted(root)
            state = "finished " + contents(root / "target")
        seen.append(state)
        assert contents(root / "other") in (None, "new")
        with replacing_folder(root / "target") as tmp:  # the next save
            (tmp / "a.txt").write_text("next")
            (tmp / "b.txt").write_text("next")
        assert sorted(p.name for p in root.iterdir() if p.name.startswith(".")) == [], point
    # the kills landed before, during and after the swap
    assert seen[0] == "old" and seen[-1] == "new"
    assert ("finished new" in seen) is (swap == "fallback"), seen


def dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def scratch_name(name: str, pid: int, role: str, host: str = atomic_folder._HOST) -> str:
    return f".{name}.{host}-{pid}-0123abcd.{role}"


def test_only_dead_writers_scratch_folders_on_this_machine_are_removed(tmp_path):
    live = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        (tmp_path / "ckpt").mkdir()
        kept = [
            scratch_name("ckpt", live.pid, "saving"),  # a writer still at work
            scratch_name("ckpt", os.getpid(), "saving"),  # this process (another thread may be saving)
            scratch_name("ckpt", dead_pid(), "saving", host="0badc0de"),  # another machine's writer
            ".ckpt.tmp-not-ours",
        ]
        gone = [scratch_name("ckpt", dead_pid(), "saving"), scratch_name("ckpt", dead_pid(), "old")]
        for name in kept + gone:
            (tmp_path / name).mkdir()
            (tmp_path / name / "model.safetensors").write_bytes(b"x")
        clean_interrupted(tmp_path)
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["ckpt", *kept])
    finally:
        live.stdin.close()
        live.wait()


def test_a_checkpoint_save_interrupted_between_its_renames_is_finished_when_read(tmp_path):
    from napari_emosem.build import build_emosem
    from napari_emosem.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
    from napari_emosem.config import get_preset

    model, identity = build_emosem(get_preset("tiny"))
    old = save_checkpoint(model, identity, tmp_path / "old")
    new = save_checkpoint(model, identity, tmp_path / "new", parent=old)
    # what a fallback writer killed between its renames leaves in a run folder: best/ is gone
    run, writer = tmp_path / "run", dead_pid()
    run.mkdir()
    os.rename(old.path, run / scratch_name("best", writer, "old"))
    os.rename(new.path, run / scratch_name("best", writer, "saving"))
    info = read_checkpoint(run)  # the run folder means its best
    assert info.path == run / "best" and info.id == new.id and info.version == 2
    assert sorted(p.name for p in run.iterdir()) == ["best"]
    load_checkpoint(run)  # whole: the weights' hash matches
    # and the next save beside it keeps the checkpoint and leaves nothing else
    save_checkpoint(model, identity, run / "best", parent=info)
    assert sorted(p.name for p in run.iterdir()) == ["best"]
    assert json.loads((run / "best" / "metadata.json").read_text())["version"] == 3


def test_saved_folders_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        with replacing_folder(tmp_path / "team-folder") as tmp:
            (tmp / "a.txt").write_text("x")
    finally:
        os.umask(old)
    assert (tmp_path / "team-folder").stat().st_mode & 0o777 == 0o755  # readable to the team

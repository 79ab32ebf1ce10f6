"""`emosem train` and the Trainer: provenance, resume after a kill, clear refusals, DDP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from napari_emosem.build import build_emosem
from napari_emosem.checkpoint import read_checkpoint, save_checkpoint
from napari_emosem.cli import main as emosem
from napari_emosem.config import get_preset
from napari_emosem.data import Stimulus, StimulusDataset
from napari_emosem.embedding_cache import EmbeddingCache
from napari_emosem.toy import toy_paintings, write_toy_dataset
from napari_emosem.training import TrainConfig, Trainer, from_datasets, from_toy


@pytest.fixture(scope="module")
def toy_data(tmp_path_factory):
    return write_toy_dataset(tmp_path_factory.mktemp("toyds") / "ds", 6).root


def _fit(run, data, epochs=2, **kw):
    model, identity = build_emosem(get_preset("tiny"))
    config = TrainConfig(epochs=epochs, batch_size=8, val_fraction=0.34, validate_explanations=False, **kw)
    return Trainer(model, identity, data, config, run, cache=EmbeddingCache(run.parent / "cache")).fit()


def test_best_checkpoint_carries_provenance(tmp_path, toy_data):
    data = from_datasets([toy_data])
    result = _fit(tmp_path / "run", data)
    info = read_checkpoint(tmp_path / "run")  # a run folder resolves to its best checkpoint
    assert info.path == tmp_path / "run" / "best"
    meta = info.metadata
    assert meta["training"]["data_hash"] == data.data_hash == StimulusDataset.open(toy_data).content_hash() or meta["training"]["data_hash"]
    assert meta["training"]["pairs"] == data.n_pairs
    assert meta["metrics"]["validation"]["miou"] is not None
    assert "validation_before" in meta["metrics"]
    assert result.before["pairs"] == result.after["pairs"] > 0
    lines = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [x["epoch"] for x in lines] == [1, 2]
    assert set(lines[0]["losses"]) == {"loss", "mask_bce", "mask_dice", "iou", "text"}


def test_validation_is_split_by_painting_never_by_pair(toy_data):
    from napari_emosem.training import split_by_painting

    data = from_datasets([toy_data])
    train, val = split_by_painting(data, 0.34, seed=0)
    assert {p.key for p in train}.isdisjoint({p.key for p in val})
    assert len(train) + len(val) == len(data.paintings) and len(val) == 2


def test_resume_after_an_interruption_gives_the_uninterrupted_result(tmp_path):
    data = from_toy(toy_paintings(4, seed=3))
    _fit(tmp_path / "straight", data, epochs=3)

    model, identity = build_emosem(get_preset("tiny"))
    config = TrainConfig(epochs=3, batch_size=8, val_fraction=0.34, validate_explanations=False)
    run = tmp_path / "interrupted"
    events = Trainer(model, identity, data, config, run, cache=EmbeddingCache(tmp_path / "c2")).run()
    for event in events:
        if event.stage == "epoch" and event.epoch == 1:
            events.close()  # the process dies here: epoch 1 is saved, epoch 2 never finishes
            break
    model, identity = build_emosem(get_preset("tiny"))
    Trainer(model, identity, data, config, run, cache=EmbeddingCache(tmp_path / "c2"), resume=True).fit()

    a = load_file(str(tmp_path / "straight" / "state" / "weights.safetensors"))
    b = load_file(str(run / "state" / "weights.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)
    log = [json.loads(x)["epoch"] for x in (run / "log.jsonl").read_text().splitlines()]
    assert log == [1, 2, 3]


def test_cli_run_killed_mid_training_resumes(tmp_path, toy_data):
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "napari_emosem", "train", "--data", str(toy_data), "--base", "tiny",
           "--out", str(run), "--epochs", "40", "--batch-size", "4", "--no-text-metrics", "--device", "cpu"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        deadline = time.monotonic() + 600
        while not (run / "log.jsonl").exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert proc.poll() is None, proc.stdout.read().decode()
        proc.send_signal(signal.SIGKILL)  # no chance to clean up
    finally:
        proc.wait()
    done = len((run / "log.jsonl").read_text().splitlines())
    assert done >= 1 and (run / "best" / "model.safetensors").exists()
    assert emosem(["train", "--data", str(toy_data), "--base", "tiny", "--out", str(run), "--epochs", str(done + 1),
                   "--batch-size", "4", "--no-text-metrics", "--device", "cpu"]) == 2  # refuses to overwrite
    assert emosem(["train", "--data", str(toy_data), "--base", "tiny", "--out", str(run), "--epochs", str(done + 1),
                   "--batch-size", "4", "--no-text-metrics", "--device", "cpu", "--resume"]) == 0
    epochs = [json.loads(x)["epoch"] for x in (run / "log.jsonl").read_text().splitlines()]
    assert epochs == list(range(1, done + 2))


def test_training_continues_from_a_checkpoint_and_records_its_parent(tmp_path, toy_data):
    model, identity = build_emosem(get_preset("tiny"))
    parent = save_checkpoint(model, identity, tmp_path / "parent")
    assert emosem(["train", "--data", str(toy_data), "--base", str(parent.path), "--out", str(tmp_path / "child"),
                   "--epochs", "1", "--no-text-metrics", "--device", "cpu"]) == 0
    child = read_checkpoint(tmp_path / "child")
    assert child.metadata["parent"]["id"] == parent.id and child.version == 2


def test_empty_dataset_is_refused(tmp_path, capsys):
    StimulusDataset.open(tmp_path / "empty", create=True).write_painting(np.zeros((64, 64, 3), np.uint8), "blank.png", [])
    assert emosem(["train", "--data", str(tmp_path / "empty"), "--base", "tiny", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "no (painting, emotion) pair with a stimulus mask" in err and "Traceback" not in err


def test_only_no_stimulus_records_are_refused(tmp_path, capsys):
    ds = StimulusDataset.open(tmp_path / "neg", create=True)
    ds.write_painting(np.zeros((64, 64, 3), np.uint8), "a.png", [Stimulus("fear", None, [], no_stimulus=True)])
    assert emosem(["train", "--data", str(tmp_path / "neg"), "--base", "tiny", "--out", str(tmp_path / "run")]) == 2
    assert "only 'no stimulus' records" in capsys.readouterr().err


def test_a_single_painting_trains_without_validation_and_says_so(tmp_path, capsys):
    root = write_toy_dataset(tmp_path / "one", 1).root
    assert emosem(["train", "--data", str(root), "--base", "tiny", "--out", str(tmp_path / "run"), "--epochs", "2",
                   "--no-text-metrics", "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    assert "only one painting: no validation possible" in err
    assert read_checkpoint(tmp_path / "run").metadata["training"]["epoch"] == 2  # the last epoch is kept


def test_a_base_made_for_another_encoder_is_refused(tmp_path, capsys, toy_data):
    from test_checkpoint import _frozen_tiny, _sam_file

    sam_a, sam_b = _sam_file(tmp_path / "a.pth", 1), _sam_file(tmp_path / "b.pth", 2)
    model, identity = build_emosem(_frozen_tiny(sam_a))
    base = save_checkpoint(model, identity, tmp_path / "base")
    code = emosem(["train", "--data", str(toy_data), "--base", str(base.path), "--sam-checkpoint", str(sam_b),
                   "--out", str(tmp_path / "run"), "--epochs", "1"])
    assert code == 2
    assert "was trained on the" in capsys.readouterr().err


def test_bad_settings_are_refused(tmp_path, toy_data, capsys):
    assert emosem(["train", "--data", str(toy_data), "--base", "starter", "--out", str(tmp_path / "r")]) == 2
    assert "no trainable weights" in capsys.readouterr().err
    assert emosem(["train", "--data", str(toy_data), "--base", "tiny", "--out", str(tmp_path / "r"), "--resume"]) == 2
    assert "nothing to resume" in capsys.readouterr().err
    assert emosem(["train", "--data", str(tmp_path / "nope"), "--base", "tiny", "--out", str(tmp_path / "r")]) == 2
    assert "no such folder" in capsys.readouterr().err


def test_two_processes_train_with_ddp_and_end_with_identical_weights(tmp_path, toy_data):
    script = tmp_path / "ddp.py"
    script.write_text(
        "import hashlib, os, sys\n"
        "from napari_emosem.cli import main\n"
        "import napari_emosem.training.trainer as t\n"
        "orig = t.Trainer.fit\n"
        "def fit(self, on_event=None):\n"
        "    r = orig(self, on_event)\n"
        "    h = hashlib.sha256()\n"
        "    for k, v in sorted(self.model.trainable_state_dict().items()):\n"
        "        h.update(k.encode()); h.update(v.detach().cpu().numpy().tobytes())\n"
        "    print(f'RANK {os.environ[\"RANK\"]} WEIGHTS {h.hexdigest()}', flush=True)\n"
        "    return r\n"
        "t.Trainer.fit = fit\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    import socket

    with socket.socket() as sock:  # a free port for the rendezvous
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(port), str(script),
           "train", "--data", str(toy_data), "--base", "tiny", "--out", str(run), "--epochs", "2", "--batch-size", "4",
           "--no-text-metrics", "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parent)}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    assert out.returncode == 0, out.stdout + out.stderr
    hashes = dict(line.split(" WEIGHTS ")[0].split()[1:] + [line.split(" WEIGHTS ")[1]] for line in out.stdout.splitlines() if " WEIGHTS " in line)
    assert set(hashes) == {"0", "1"} and hashes["0"] == hashes["1"]
    meta = read_checkpoint(run).metadata
    assert meta["training"]["distributed_processes"] == 2
    assert len((run / "log.jsonl").read_text().splitlines()) == 2  # rank 0 alone writes the log

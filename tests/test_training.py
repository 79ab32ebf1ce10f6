"""`emosem train` and the Trainer: provenance, resume after a kill, clear refusals, DDP."""

from __future__ import annotations

import argparse
import json
import os
import shutil
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
from napari_emosem.emotions import EMOTIONS
from napari_emosem.reporting import progress_line, training_data_line
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
    # the hash names the data: the same datasets read again give it, a changed mask does not
    recorded = meta["training"]["data_hash"]
    assert len(recorded) == 64 and recorded == from_datasets([toy_data]).data_hash
    # a copy elsewhere (same name, same content) is the same data; one mask changed is not
    copy = tmp_path / "copy" / toy_data.name
    shutil.copytree(toy_data, copy)
    assert from_datasets([copy]).data_hash == recorded
    changed = tmp_path / "changed" / toy_data.name
    shutil.copytree(toy_data, changed)
    ds = StimulusDataset.open(changed)
    painting, stimulus = next(iter(ds.pairs()))
    edited = stimulus.mask.copy()
    edited[:3] = ~edited[:3]
    stimuli = [s for p, s in ds.pairs() if p.id == painting.id]
    stimuli = [
        Stimulus(s.emotion, edited if s.emotion == stimulus.emotion else s.mask, s.explanations) for s in stimuli
    ]
    ds.write_painting(ds.image(painting.file_name), painting.file_name, stimuli, replace=True)
    assert from_datasets([changed]).data_hash != recorded
    assert from_datasets([toy_data, changed]).data_hash not in (recorded, from_datasets([changed]).data_hash)
    assert meta["training"]["pairs"] == data.n_pairs == meta["training"]["reviewed_pairs"]
    assert meta["training"]["skipped"]["unreviewed"] == 0
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


def test_a_run_killed_between_its_state_and_its_log_gets_the_log_line_back(tmp_path):
    """The state (the resume point) is saved before the log: a kill between the two left the log
    an epoch short, and a resume that had nothing left to train never wrote the line."""
    data = from_toy(toy_paintings(4, seed=3))
    run = tmp_path / "run"
    _fit(run, data, epochs=2)
    log = run / "log.jsonl"
    log.write_text(log.read_text().splitlines()[0] + "\n")  # the kill: epoch 2's line never written

    model, identity = build_emosem(get_preset("tiny"))
    config = TrainConfig(epochs=2, batch_size=8, val_fraction=0.34, validate_explanations=False)
    Trainer(model, identity, data, config, run, cache=EmbeddingCache(tmp_path / "c2"), resume=True).fit()
    assert [json.loads(x)["epoch"] for x in log.read_text().splitlines()] == [1, 2]


def test_cli_run_killed_mid_training_resumes(tmp_path, toy_data):
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "napari_emosem", "train", "--data", str(toy_data), "--base", "tiny",
           "--out", str(run), "--epochs", "40", "--batch-size", "4", "--no-text-metrics", "--device", "cpu"]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"}
    )
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
    StimulusDataset.open(tmp_path / "empty", create=True).write_painting(
        np.zeros((64, 64, 3), np.uint8), "blank.png", []
    )
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


def _drafted_dataset(root, reviewed: int, drafts: int, seed: int = 11):
    """``reviewed`` toy paintings annotated by a person, then ``drafts`` toy paintings holding a
    model's proposals nobody looked at (one of them with a person's *no stimulus* beside it)."""
    ds = StimulusDataset.open(root, create=True)
    for i, toy in enumerate(toy_paintings(reviewed + drafts, seed=seed)):
        draft = i >= reviewed
        stimuli = [
            Stimulus(e, toy.masks[e], [toy.explanations[e]], source="model:tiny" if draft else "human")
            for e in toy.emotions
        ]
        if draft and i == reviewed:
            absent = next(e for e in EMOTIONS if e not in toy.emotions)
            stimuli.append(Stimulus(absent, None, no_stimulus=True, source="model:tiny"))
        ds.write_painting(toy.image, f"{'draft' if draft else 'human'}-{i}.png", stimuli)
    return ds


def test_training_learns_from_reviewed_pairs_and_says_what_it_left_out(tmp_path, capsys):
    ds = _drafted_dataset(tmp_path / "ds", reviewed=3, drafts=2)
    records = [s for _, s in ds.pairs()]
    drafts = sum(not s.reviewed for s in records)
    reviewed = [s for s in records if s.reviewed and not s.no_stimulus]
    assert drafts >= 4 and len(reviewed) >= 6

    data = from_datasets([ds.root])
    assert {p.key.split("/")[1].split("-")[0] for p in data.paintings} == {"human"}
    assert data.n_pairs == len(reviewed)
    assert training_data_line(data.summary) == (
        f"training on {len(reviewed)} reviewed pairs from 3 paintings; {drafts} unreviewed drafts left out"
    )
    everything = from_datasets([ds.root], include_unreviewed=True)
    assert everything.n_pairs == len(reviewed) + drafts and len(everything.paintings) == 5
    assert everything.data_hash != data.data_hash  # a run on drafts is another run
    assert training_data_line(everything.summary) == (
        f"training on {everything.n_pairs} pairs from 5 paintings; {drafts} unreviewed drafts included (asked for)"
    )

    args = ["train", "--data", str(ds.root), "--base", "tiny", "--epochs", "1", "--no-text-metrics", "--device", "cpu"]
    assert emosem([*args, "--out", str(tmp_path / "run")]) == 0
    err = capsys.readouterr().err
    assert f"training on {len(reviewed)} reviewed pairs from 3 paintings; {drafts} unreviewed drafts left out\n" in err
    meta = read_checkpoint(tmp_path / "run").metadata["training"]
    assert meta["pairs"] == len(reviewed) and meta["skipped"]["unreviewed"] == drafts and not meta["include_unreviewed"]
    assert emosem([*args, "--out", str(tmp_path / "run2"), "--include-unreviewed"]) == 0
    assert read_checkpoint(tmp_path / "run2").metadata["training"]["unreviewed_pairs"] == drafts


def test_fine_tune_reports_the_data_line_first_and_in_its_result(tmp_path):
    from napari_emosem.finetune import fine_tune

    ds = _drafted_dataset(tmp_path / "ds", reviewed=2, drafts=1)
    config = TrainConfig(epochs=1, validate_explanations=False)
    events = list(fine_tune([ds.root], "tiny", run_dir=tmp_path / "run", config=config, device="cpu",
                            cache=EmbeddingCache(tmp_path / "cache")))
    first, result = events[0], events[-1].metrics["result"]
    assert first.stage == "data" and first.run_dir == str(tmp_path / "run")
    assert first.message.startswith("training on ") and first.message.endswith(" unreviewed drafts left out")
    assert first.message == training_data_line(result.data) and result.data["skipped"]["unreviewed"] >= 2


def test_only_unreviewed_drafts_are_refused_with_how_to_review(tmp_path, capsys):
    ds = _drafted_dataset(tmp_path / "ds", reviewed=0, drafts=2)
    assert emosem(["train", "--data", str(ds.root), "--base", "tiny", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err
    assert "no reviewed pair to learn from" in err and "accept or edit" in err and "--include-unreviewed" in err
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_the_trainer_never_mixes_training_and_validation_paintings(tmp_path, toy_data):
    from napari_emosem.training import split_by_painting

    data = from_datasets([toy_data])
    model, identity = build_emosem(get_preset("tiny"))
    config = TrainConfig(epochs=2, batch_size=3, val_fraction=0.34, validate_explanations=False)
    events = list(Trainer(model, identity, data, config, tmp_path / "run", cache=EmbeddingCache(tmp_path / "c")).run())
    train, val = split_by_painting(data, config.val_fraction, config.seed)
    train_keys, val_keys = {p.key for p in train}, {p.key for p in val}
    assert train_keys and val_keys and train_keys.isdisjoint(val_keys)
    for epoch in (1, 2):
        steps = [e.paintings for e in events if e.stage == "train" and e.epoch == epoch]
        trained = [key for step in steps for key in step]
        # every training painting once per epoch (one process: no wrap-around), whole paintings per step
        assert sorted(trained) == sorted(train_keys), epoch
        validated = [key for e in events if e.stage == "validate" and e.epoch == epoch for key in e.paintings]
        assert sorted(validated) == sorted(val_keys), epoch
    assert [k for e in events if e.stage == "validate" and e.epoch == 0 for k in e.paintings] == sorted(val_keys)


def test_progress_covers_the_whole_run_validation_and_caption_metrics_included(tmp_path):
    data = from_toy(toy_paintings(3, seed=8))
    model, identity = build_emosem(get_preset("tiny"))
    config = TrainConfig(epochs=2, batch_size=8, val_fraction=0.34, patience=0, validate_explanations=True)
    events = list(Trainer(model, identity, data, config, tmp_path / "run", cache=EmbeddingCache(tmp_path / "c")).run())
    total = events[0].total
    assert total > 0 and all(e.total == total for e in events)
    done = [e.done for e in events]
    assert done == sorted(done) and done[-1] == total
    # validation drafts and the caption metrics are inside the bar, not after it
    for stage in ("validate", "metrics"):
        inside = [e for e in events if e.stage == stage]
        assert inside and all(e.done < total for e in inside), stage
    train_done = max(e.done for e in events if e.stage == "train")
    assert train_done < total - 1  # the last epoch's validation comes after its last step
    assert any(e.stage == "metrics" and e.epoch == 2 for e in events)
    first_metrics = next(e for e in events if e.stage == "metrics")
    assert progress_line(first_metrics) == "validating (before training): scoring the drafts (BLEU-4)"
    assert progress_line(next(e for e in events if e.stage == "train")).startswith("epoch 1/2, step 1/")


def test_each_process_gets_its_own_batches_of_whole_paintings():
    from napari_emosem.training.batches import epoch_batches

    groups = [g for g in range(7) for _ in range(1 + g % 3)]  # 7 paintings of 1-3 pairs
    one = epoch_batches(groups, 4, np.random.default_rng(5), 0, 1)
    for batch in one:  # whole paintings: every pair of a painting in the same batch
        paintings = {groups[i] for i in batch}
        assert sorted(batch) == [i for i, g in enumerate(groups) if g in paintings]
    assert sorted(i for batch in one for i in batch) == list(range(len(groups)))
    for world in (2, 3):
        ranks = [epoch_batches(groups, 4, np.random.default_rng(5), rank, world) for rank in range(world)]
        steps = len(ranks[0])
        assert all(len(r) == steps for r in ranks)  # the same number of steps everywhere
        # taken in turns, the processes' batches are the one-process order, padded by wrapping
        # around (as DistributedSampler pads) only so that every process takes as many steps
        turns = [ranks[i % world][i // world] for i in range(steps * world)]
        pad = steps * world - len(one)
        assert 0 <= pad < world and turns == one + one[:pad], world
        if pad == 0:  # then no painting is trained twice in an epoch
            keys = [groups[i] for r in ranks for batch in r for i in batch]
            assert sorted(set(keys)) == list(range(7)) and len(keys) == len(groups)


def test_every_subcommand_help_shows_its_defaults(capsys):
    from napari_emosem.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    checked = 0
    for name, command in sub.choices.items():
        parsers = [command]
        nested = [a for a in command._actions if isinstance(a, argparse._SubParsersAction)]
        parsers += [p for a in nested for p in a.choices.values()]
        for p in parsers:
            formatter = p._get_formatter()  # the help line argparse prints for each option
            for action in p._actions:
                if action.default is None or action.default is False or action.default == argparse.SUPPRESS:
                    continue
                if not action.option_strings:
                    continue
                line = formatter._get_help_string(action) or ""
                assert action.help and "default" in line, (name, action.option_strings, action.default, line)
                checked += 1
    assert checked >= 15
    help_text = " ".join(sub.choices["train"].format_help().split())
    assert "(default: vit_b)" in help_text
    assert "tiny: a tiny EmoSEM with random weights, for tests and toy data only" in help_text


def test_two_processes_train_with_ddp_on_disjoint_batches_and_end_with_identical_weights(tmp_path):
    # 7 paintings: 1 held out, 6 to train; --batch-size 1 takes one painting per step, so each of
    # the 2 processes trains 3 paintings per epoch and no batch is repeated to pad
    data = write_toy_dataset(tmp_path / "ds", 7, seed=4).root
    report = tmp_path / "report"
    report.mkdir()
    script = tmp_path / "ddp.py"
    script.write_text(
        "import hashlib, json, os, sys\n"
        "from pathlib import Path\n"
        "from napari_emosem.cli import main\n"
        "import napari_emosem.training.trainer as t\n"
        "orig = t.Trainer.run\n"
        "def run(self):\n"
        "    seen = {'train': {}, 'validate': []}\n"
        "    for event in orig(self):\n"
        "        if event.stage == 'train':\n"
        "            seen['train'].setdefault(str(event.epoch), []).extend(event.paintings)\n"
        "        if event.stage == 'validate':\n"
        "            seen['validate'].extend(event.paintings)\n"
        "        yield event\n"
        "    h = hashlib.sha256()\n"
        "    for k, v in sorted(self.model.trainable_state_dict().items()):\n"
        "        h.update(k.encode()); h.update(v.detach().cpu().numpy().tobytes())\n"
        "    seen['weights'] = h.hexdigest()\n"
        "    # a file per process, written whole: nothing depends on how two processes share a pipe\n"
        "    out = Path(sys.argv[1]) / f\"rank{os.environ['RANK']}.json\"\n"
        "    tmp = out.with_suffix('.tmp'); tmp.write_text(json.dumps(seen)); os.replace(tmp, out)\n"
        "t.Trainer.run = run\n"
        "sys.exit(main(sys.argv[2:]))\n"
    )
    import socket

    with socket.socket() as sock:  # a free port for the rendezvous
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(port), str(script), str(report),
           "train", "--data", str(data), "--base", "tiny", "--out", str(run), "--epochs", "2", "--batch-size", "1",
           "--no-text-metrics", "--device", "cpu", "--patience", "0"]
    import napari_emosem

    package_root = str(Path(napari_emosem.__file__).parents[1])  # this checkout's sources, not an installed copy
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": package_root}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    assert out.returncode == 0, out.stdout + out.stderr
    ranks = [json.loads((report / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["weights"] == ranks[1]["weights"]

    from napari_emosem.training import split_by_painting

    train, val = split_by_painting(from_datasets([data]), 0.15, seed=0)
    train_keys = sorted(p.key for p in train)
    assert len(train_keys) == 6 and len(val) == 1
    for epoch in ("1", "2"):
        mine, theirs = ranks[0]["train"][epoch], ranks[1]["train"][epoch]
        assert len(mine) == len(theirs) == 3, epoch  # each process its own half ...
        assert sorted(mine + theirs) == train_keys, epoch  # ... together every training painting once
    assert ranks[0]["train"]["1"] != ranks[0]["train"]["2"] or ranks[1]["train"]["1"] != ranks[1]["train"]["2"]
    assert sorted(ranks[0]["validate"]) == sorted([val[0].key] * 3) and ranks[1]["validate"] == []  # rank 0 validates
    meta = read_checkpoint(run).metadata
    assert meta["training"]["distributed_processes"] == 2
    assert len((run / "log.jsonl").read_text().splitlines()) == 2  # rank 0 alone writes the log

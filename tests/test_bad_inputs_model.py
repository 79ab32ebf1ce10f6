"""Bad inputs to training and to checkpoint loading: each is refused with one line that names the
input and the problem, exit code 2, no traceback, before any work (issue 10, section 4).

Checkpoints are damaged the ways files get damaged or forged: a config.json asking for a 51 GB
model, fields of the wrong type, emotions that are not the eight, metadata of the wrong type,
weights changed after training or missing a tensor. Each is tried through ``load_checkpoint``,
``emosem propose --model`` and ``emosem evaluate --model``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

import pytest

from napari_emosem.build import build_emosem
from napari_emosem.checkpoint import CONFIG_FILE, METADATA_FILE, WEIGHTS_FILE, load_checkpoint, save_checkpoint
from napari_emosem.cli import main as emosem
from napari_emosem.config import get_preset
from napari_emosem.errors import CheckpointError
from napari_emosem.toy import write_toy_dataset


@pytest.fixture(scope="module")
def good_checkpoint(tmp_path_factory):
    model, identity = build_emosem(get_preset("tiny"))
    return save_checkpoint(model, identity, tmp_path_factory.mktemp("good") / "ckpt").path


@pytest.fixture(scope="module")
def toy_data(tmp_path_factory):
    return write_toy_dataset(tmp_path_factory.mktemp("toyds") / "ds", 4).root


def one_error_line(capsys, command: str) -> str:
    """stderr holds exactly one line, the CLI's error, and no traceback; returns it."""
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"emosem {command}: error: "), lines[0]
    return lines[0]


# Damaged checkpoints ------------------------------------------------------------------------------


def _edit_json(name: str, change):
    def edit(folder: Path) -> None:
        path = folder / name
        data = json.loads(path.read_text())
        result = change(data)
        path.write_text(json.dumps(data if result is None else result))

    return edit


def _write(name: str, text: str):
    return lambda folder: (folder / name).write_text(text)


def _weights(change):
    """Change the weights file, then make the metadata's sha256 agree, so that the weights
    themselves are what is checked."""

    def edit(folder: Path) -> None:
        from safetensors.torch import load_file, save_file

        state = load_file(str(folder / WEIGHTS_FILE))
        change(state)
        save_file(state, str(folder / WEIGHTS_FILE))
        meta = json.loads((folder / METADATA_FILE).read_text())
        meta["weights_sha256"] = hashlib.sha256((folder / WEIGHTS_FILE).read_bytes()).hexdigest()
        (folder / METADATA_FILE).write_text(json.dumps(meta))

    return edit


def _set(*path, value):
    def change(data):
        for key in path[:-1]:
            data = data[key]
        data[path[-1]] = value

    return change


def _config(*path, value):
    return _edit_json(CONFIG_FILE, _set(*path, value=value))


def _metadata(*path, value):
    return _edit_json(METADATA_FILE, _set(*path, value=value))


def _shrink_mask_token(state) -> None:
    state["emotional_prompt.mask_token"] = state["emotional_prompt.mask_token"][..., :3]


_NAN_LOSS = json.dumps(get_preset("tiny").to_dict()).replace('"iou": 1.0', '"iou": NaN')


def _deep(depth: int) -> str:
    return "[" * depth + "]" * depth


def _flip_a_byte(folder: Path) -> None:
    data = bytearray((folder / WEIGHTS_FILE).read_bytes())
    data[-5] ^= 0xFF
    (folder / WEIGHTS_FILE).write_bytes(bytes(data))


#: (id, damage, words the message must hold)
CHECKPOINT_CASES = [
    ("embed-dim-65536", _config("encoder", "embed_dim", value=65536), "billion parameters"),
    ("huge-image", _config("encoder", "img_size", value=2**20), "billion parameters"),
    ("embed-dim-string", _config("encoder", "embed_dim", value="768"), "encoder.embed_dim is '768'"),
    ("frozen-string", _config("encoder", "frozen", value="yes"), "encoder.frozen is 'yes'"),
    ("negative-depth", _config("decoder", "transformer_depth", value=-2), "decoder.transformer_depth is -2"),
    ("prefix-length-float", _config("prefix_length", value=4.5), "prefix_length is 4.5"),
    ("attention-index", _config("encoder", "global_attn_indexes", value=[99]), "global_attn_indexes"),
    ("prompt-field", _config("prompt_template", value="{feeling}"), "prompt_template"),
    ("emotions-unknown", _config("emotions", value=["joy", "awe", "fear"]), "joy unknown"),
    ("emotions-repeated", _config("emotions", value=["fear"] * 8), "exactly the eight"),
    ("loss-nan", _write(CONFIG_FILE, _NAN_LOSS), "loss.iou is nan"),
    ("config-not-json", _write(CONFIG_FILE, "{ not json"), "not valid JSON"),
    ("config-a-list", _write(CONFIG_FILE, "[1, 2]"), "does not describe an EmoSEM model"),
    ("config-deep", _write(CONFIG_FILE, _deep(100_000)), "not valid JSON"),
    ("metadata-version", _metadata("version", value="two"), "'version' is 'two'"),
    ("metadata-id", _metadata("id", value=5), "'id' is 5"),
    ("metadata-created", _metadata("created", value="yesterday"), "'created' is 'yesterday'"),
    ("metadata-metrics", _metadata("metrics", value={"validation": {"miou": "high"}}), "metrics.validation.miou"),
    ("metadata-emotions", _metadata("emotions", value=["joy"]), "'emotions' is ['joy']"),
    ("metadata-a-list", _write(METADATA_FILE, "[]"), "not EmoSEM checkpoint metadata"),
    ("metadata-deep", _write(METADATA_FILE, _deep(100_000)), "not valid JSON"),
    ("metadata-newer", _metadata("format_version", value=99), "newer napari-emosem"),
    ("weights-changed", _flip_a_byte, "sha256 is not the one recorded"),
    (
        "weights-sha-missing",
        _edit_json(METADATA_FILE, lambda m: m.pop("weights_sha256") and None),
        "weights_sha256' is missing",
    ),
    ("tensor-deleted", _weights(lambda s: s.pop("prefix_adapter.net.2.weight")), "1 missing"),
    ("tensor-reshaped", _weights(_shrink_mask_token), "1 weights of another shape"),
]


@pytest.fixture(params=CHECKPOINT_CASES, ids=[c[0] for c in CHECKPOINT_CASES])
def bad_checkpoint(request, good_checkpoint, tmp_path):
    name, damage, words = request.param
    folder = tmp_path / name
    shutil.copytree(good_checkpoint, folder)
    damage(folder)
    return folder, words


def test_load_checkpoint_refuses_a_damaged_checkpoint(bad_checkpoint):
    folder, words = bad_checkpoint
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(folder)
    message = str(info.value)
    assert words in message and "\n" not in message, message


def test_propose_refuses_a_damaged_checkpoint_in_one_line(bad_checkpoint, tmp_path, paintings, capsys):
    folder, words = bad_checkpoint
    assert emosem(
        ["propose", str(paintings[0]), "--model", str(folder), "--out", str(tmp_path / "out"), "--device", "cpu"]
    ) == 2
    assert words in one_error_line(capsys, "propose")


def test_evaluate_refuses_a_damaged_checkpoint_in_one_line(bad_checkpoint, toy_data, capsys):
    folder, words = bad_checkpoint
    assert emosem(
        ["evaluate", "--data", str(toy_data), "--model", str(folder), "--no-explanations", "--device", "cpu"]
    ) == 2
    assert words in one_error_line(capsys, "evaluate")


def test_the_size_check_comes_before_any_allocation(good_checkpoint, tmp_path):
    """A config.json asking for 51 GB is refused by arithmetic, not by trying: the check names
    the size without building anything (the process would be killed otherwise)."""
    from napari_emosem.config import EmoSEMConfig, parameter_estimate

    data = json.loads((good_checkpoint / CONFIG_FILE).read_text())
    data["encoder"]["embed_dim"] = 65536
    with pytest.raises(CheckpointError, match="about [0-9]+ billion parameters"):
        EmoSEMConfig.from_dict(data)
    for name in ("tiny", "vit_b", "vit_l", "vit_h"):  # every preset passes, vit_h is 0.64 billion
        config = get_preset(name)
        assert EmoSEMConfig.from_dict(config.to_dict()) == config
        assert parameter_estimate(config) < 0.7e9


# Bad training settings and folders -----------------------------------------------------------------


def _train(toy_data, out, *extra) -> list[str]:
    return [
        "train", "--data", str(toy_data), "--base", "tiny", "--out", str(out), "--device", "cpu", "--no-text-metrics",
        *extra,
    ]


@pytest.mark.parametrize(
    "option, words",
    [
        (["--lr", "-1"], "--lr -1.0: the learning rate must be a positive number"),
        (["--lr", "nan"], "--lr nan"),
        (["--lr", "0"], "--lr 0.0"),
        (["--patience", "-1"], "--patience -1: give a number of epochs ≥ 0"),
        (["--epochs", "0"], "--epochs 0"),
        (["--batch-size", "0"], "--batch-size 0"),
        (["--val-fraction", "1.5"], "--val-fraction 1.5"),
        (["--val-fraction", "-0.1"], "--val-fraction -0.1"),
        (["--seed", "-3"], "--seed -3"),
    ],
    ids=lambda x: " ".join(x) if isinstance(x, list) else None,
)
def test_invalid_training_settings_are_refused_before_any_work(option, words, toy_data, tmp_path, capsys):
    assert emosem(_train(toy_data, tmp_path / "run", *option)) == 2
    assert words in one_error_line(capsys, "train")
    assert not (tmp_path / "run").exists()  # nothing read, nothing built, nothing written


def test_the_library_refuses_the_same_settings():
    from napari_emosem.errors import TrainingError
    from napari_emosem.training import TrainConfig

    for bad in (
        dict(lr=-1.0), dict(patience=-1), dict(epochs=0), dict(grad_clip=float("inf")), dict(click_fraction=2.0)
    ):
        with pytest.raises(TrainingError):
            TrainConfig(**bad)


def test_a_run_folder_that_cannot_be_written_is_refused_before_the_work(toy_data, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    for out in (blocker, blocker / "run"):
        assert emosem(_train(toy_data, out)) == 2
        line = one_error_line(capsys, "train")  # one line: not even "training on N reviewed pairs…"
        assert str(out) in line
    if sys.platform.startswith("linux"):  # /proc: a folder nobody, not even root, can create files in
        assert emosem(_train(toy_data, "/proc/emosem-run")) == 2
        assert "cannot write there" in one_error_line(capsys, "train")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_folder_is_refused_before_the_work(toy_data, tmp_path, capsys):
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        assert emosem(_train(toy_data, folder / "run")) == 2
        assert "cannot write there" in one_error_line(capsys, "train")
    finally:
        folder.chmod(0o755)


@pytest.fixture(scope="module")
def finished_run(toy_data, tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "run"
    assert emosem(_train(toy_data, run, "--epochs", "1")) == 0
    return run


@pytest.mark.parametrize(
    "damage, words",
    [
        (lambda s: (s / "state.json").write_text("{ half a file"), "state.json unreadable"),
        (lambda s: (s / "state.json").write_text(_deep(100_000)), "state.json unreadable"),
        (lambda s: (s / "state.json").write_text("[]"), "state.json is not an object"),
        (_edit_json("state.json", _set("epoch", value="one")), "field 'epoch' is 'one'"),
        (_edit_json("state.json", _set("history", value=None)), "field 'history' is None"),
        (lambda s: (s / "weights.safetensors").write_bytes(b"\0" * 64), "tensors unreadable"),
        (lambda s: (s / "optimizer.safetensors").unlink(), "tensors unreadable"),
        (None, "do not fit this model"),
    ],
    ids=["truncated", "deep", "a-list", "epoch-type", "history-type", "weights", "optimizer-gone", "other-model"],
)
def test_resume_with_a_damaged_state_is_refused_in_one_line(damage, words, finished_run, toy_data, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    if damage is None:  # the state of another model: one tensor fewer
        from safetensors.torch import load_file, save_file

        state = load_file(str(run / "state" / "weights.safetensors"))
        state.pop(sorted(state)[0])
        save_file(state, str(run / "state" / "weights.safetensors"))
    else:
        damage(run / "state")
    capsys.readouterr()
    assert emosem(_train(toy_data, run, "--epochs", "2", "--resume")) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err and lines[-1].startswith("emosem train: error: ")
    assert words in lines[-1] and "cannot be resumed" in lines[-1], lines[-1]
    # found before a model was built (or, for tensors, before an epoch ran): nothing trained
    assert len((run / "log.jsonl").read_text().splitlines()) == 1


@pytest.mark.parametrize(
    "base, words",
    [
        ("starter", "'starter' has no trainable weights"),
        ("vit_q", "neither a preset"),
    ],
)
def test_a_base_that_cannot_be_trained_is_refused(base, words, toy_data, tmp_path, capsys):
    args = _train(toy_data, tmp_path / "run")
    args[args.index("--base") + 1] = base
    assert emosem(args) == 2
    assert words in one_error_line(capsys, "train")


def test_a_damaged_base_checkpoint_is_refused_before_the_data_is_read(good_checkpoint, toy_data, tmp_path, capsys):
    base = tmp_path / "base"
    shutil.copytree(good_checkpoint, base)
    _config("encoder", "embed_dim", value=65536)(base)
    args = _train(toy_data, tmp_path / "run")
    args[args.index("--base") + 1] = str(base)
    assert emosem(args) == 2
    assert "billion parameters" in one_error_line(capsys, "train")


def test_vit_b_without_its_weights_says_what_it_needs_and_how_to_get_it(toy_data, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("EMOSEM_OFFLINE", "1")
    monkeypatch.setenv("EMOSEM_CACHE_DIR", str(tmp_path / "cache"))
    args = _train(toy_data, tmp_path / "run")
    del args[args.index("--base") : args.index("--base") + 2]  # the default base: vit_b
    assert emosem(args) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err and len(lines) == 2  # what it would train on, then why it cannot
    assert lines[0].startswith("training on ")
    error = lines[1]
    assert error.startswith("emosem train: error: SAM checkpoint sam_vit_b_01ec64.pth (375 MB) is not cached")
    assert "emosem weights download vit_b" in error and "--sam-checkpoint PATH" in error
    assert not (tmp_path / "run").exists()  # the empty run folder is not left behind

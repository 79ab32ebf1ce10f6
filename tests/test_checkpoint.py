"""EmoSEM checkpoints: safetensors + JSON, exact round trips, refusals for the wrong encoder or LM;
SAM-format weight files and Hugging Face LM folders loaded the way real ones are."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from napari_emosem.build import build_emosem
from napari_emosem.checkpoint import (
    CONFIG_FILE,
    METADATA_FILE,
    WEIGHTS_FILE,
    list_checkpoints,
    load_checkpoint,
    read_checkpoint,
    save_checkpoint,
)
from napari_emosem.config import LanguageConfig, get_preset
from napari_emosem.embedding_cache import EmbeddingCache
from napari_emosem.errors import CheckpointError, WeightsError
from napari_emosem.loading import load_predictor
from napari_emosem.modeling.language_model import byte_level_tokenizer, load_language_model


def _perturb(model, seed=3):
    # move every trainable weight away from its initialisation, as training would
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=g) * 0.01)


def _sam_file(path, seed):
    """A SAM-format .pth (image_encoder./prompt_encoder./mask_decoder. keys) for the tiny sizes."""
    config = get_preset("tiny").replace(seed=seed)
    model, _ = build_emosem(config)
    state = {}
    for prefix, module in (
        ("image_encoder.", model.image_encoder.vit),
        ("prompt_encoder.", model.mask_decoder.prompt_encoder),
        ("mask_decoder.", model.mask_decoder.mask_decoder),
    ):
        state.update({prefix + k: v for k, v in module.state_dict().items()})
    torch.save(state, path)
    return path


def _frozen_tiny(sam_path):
    base = get_preset("tiny")
    return base.replace(encoder=dataclasses.replace(base.encoder, weights=str(sam_path), frozen=True))


def test_save_then_load_gives_identical_outputs(tmp_path, paintings):
    from napari_emosem.image_io import load_image

    model, identity = build_emosem(get_preset("tiny"))
    _perturb(model)
    info = save_checkpoint(model, identity, tmp_path / "ckpt", training={"pairs": 12})
    assert sorted(p.name for p in info.path.iterdir()) == sorted([CONFIG_FILE, WEIGHTS_FILE, METADATA_FILE])
    image = load_image(paintings[0])
    a = load_predictor(info.path, device="cpu", cache=EmbeddingCache(tmp_path / "c1"))
    from napari_emosem.emosem_predictor import EmoSEMPredictor

    b = EmoSEMPredictor(model, identity, device="cpu", cache=EmbeddingCache(tmp_path / "c2"))
    for p in (a, b):
        p.set_image(image)
    pa = a.propose(["fear", "awe"], with_probability=True)
    pb = b.propose(["fear", "awe"], with_probability=True)
    for x, y in zip(pa, pb, strict=True):
        np.testing.assert_array_equal(x.probability, y.probability)
        assert x.explanation == y.explanation and x.score == y.score
    assert a.name == info.id and not a.cold_start and "v1" in a.description


def test_metadata_records_provenance(tmp_path):
    model, identity = build_emosem(get_preset("tiny"))
    parent = save_checkpoint(model, identity, tmp_path / "v1")
    child = save_checkpoint(
        model, identity, tmp_path / "v2", parent=parent, training={"pairs": 7, "data_hash": "ab"},
        metrics={"validation": {"miou": 0.5}},
    )
    meta = json.loads((child.path / METADATA_FILE).read_text())
    assert meta["version"] == 2 and meta["parent"]["id"] == parent.id
    assert meta["base"] == {"encoder": "tiny (random init, seed 0)", "encoder_sha256": None, "language_model": "tiny"}
    assert meta["emotions"] == list(model.config.emotions)
    assert meta["training"]["pairs"] == 7 and meta["metrics"]["validation"]["miou"] == 0.5
    assert meta["created"] and meta["weights_sha256"]
    # newest first; saved within the same second, the higher version wins the tie
    assert [c.id for c in list_checkpoints(tmp_path)] == [child.id, parent.id]
    for folder in ("v1", "v2"):
        path = tmp_path / folder / METADATA_FILE
        path.write_text(json.dumps({**json.loads(path.read_text()), "created": "2026-01-01T00:00:00"}))
    assert [c.version for c in list_checkpoints(tmp_path)] == [2, 1]


def test_fine_tune_runs_started_in_the_same_second_get_their_own_folders(tmp_path):
    from napari_emosem.finetune import default_run_dir
    from napari_emosem.paths import checkpoints_dir

    first = default_run_dir("tiny")
    first.mkdir(parents=True)
    second = default_run_dir("tiny")
    assert second != first and not second.exists() and second.parent == first.parent == checkpoints_dir()
    assert first.name.endswith("-tiny") and second.name.endswith(("-tiny", "-tiny-2"))
    model, identity = build_emosem(get_preset("tiny"))
    parent = save_checkpoint(model, identity, tmp_path / "parent")
    # a checkpoint base names its run by the checkpoint's id, whether given as its folder or its run folder
    assert default_run_dir(parent.path).name.endswith(parent.id)


def test_checkpoint_holds_only_trainable_parts_when_the_encoder_is_frozen(tmp_path):
    sam = _sam_file(tmp_path / "sam_tiny.pth", seed=1)
    model, identity = build_emosem(_frozen_tiny(sam))
    info = save_checkpoint(model, identity, tmp_path / "ckpt")
    from safetensors.torch import load_file

    keys = load_file(str(info.path / WEIGHTS_FILE)).keys()
    assert not any(k.startswith("image_encoder.") for k in keys)
    assert any(k.startswith("mask_decoder.") for k in keys)
    assert identity.encoder_sha256 and info.metadata["base"]["encoder_sha256"] == identity.encoder_sha256


def test_sam_weights_are_loaded_into_encoder_and_decoder(tmp_path):
    sam = _sam_file(tmp_path / "sam_tiny.pth", seed=5)
    source = torch.load(sam, weights_only=True)
    model, _ = build_emosem(_frozen_tiny(sam))
    torch.testing.assert_close(
        model.image_encoder.vit.patch_embed.proj.weight, source["image_encoder.patch_embed.proj.weight"]
    )
    torch.testing.assert_close(
        model.mask_decoder.mask_decoder.iou_token.weight, source["mask_decoder.iou_token.weight"]
    )


def test_a_checkpoint_refuses_another_encoder(tmp_path):
    sam1 = _sam_file(tmp_path / "sam_a.pth", seed=1)
    sam2 = _sam_file(tmp_path / "sam_b.pth", seed=2)
    model, identity = build_emosem(_frozen_tiny(sam1))
    info = save_checkpoint(model, identity, tmp_path / "ckpt")
    load_checkpoint(info.path, sam_checkpoint=sam1)  # the right one loads
    with pytest.raises(CheckpointError, match="was trained on the .* image encoder"):
        load_checkpoint(info.path, sam_checkpoint=sam2)


def test_sam_weights_of_another_size_are_refused_clearly(tmp_path):
    sam = _sam_file(tmp_path / "sam_tiny.pth", seed=1)
    lm = _save_lm(tmp_path / "lm", 32)
    config = get_preset("vit_b")
    config = config.replace(language=dataclasses.replace(config.language, model=str(lm)))
    with pytest.raises(WeightsError, match="does not fit the 'vit_b' model"):
        build_emosem(config, sam_checkpoint=sam)


def _save_lm(folder, width):
    config = LanguageConfig(model="tiny", n_embd=width, n_layer=1, n_head=2)
    lm, tok = load_language_model(config)
    lm.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def test_language_model_from_a_local_folder(tmp_path):
    folder = _save_lm(tmp_path / "lm", 32)
    base = get_preset("tiny")
    config = base.replace(language=dataclasses.replace(base.language, model=str(folder), train=False))
    model, identity = build_emosem(config)
    assert identity.language_model == str(folder)
    assert model.word_embeddings.embedding_dim == 32
    assert "language_model" not in model.trainable_modules()
    emb = torch.randn(1, 64, 16, 16)
    lm_tokenizer = model.tokenizer
    texts = model.explain(emb, model.emotion_index(["awe"]), torch.rand(1, 64, 64), torch.ones(1, 2), max_new_tokens=4)
    # the local folder's tokenizer decodes the drafts, within the token limit, greedily (the same twice)
    assert isinstance(texts, list) and len(texts) == 1 and isinstance(texts[0], str)
    assert lm_tokenizer.name_or_path == str(folder)
    assert len(lm_tokenizer(texts[0], add_special_tokens=False).input_ids) <= 4
    assert (
        model.explain(emb, model.emotion_index(["awe"]), torch.rand(1, 64, 64), torch.ones(1, 2), max_new_tokens=4)
        == texts
    )


def test_a_checkpoint_refuses_another_language_model(tmp_path):
    model, identity = build_emosem(get_preset("tiny"))
    info = save_checkpoint(model, identity, tmp_path / "ckpt")
    other = _save_lm(tmp_path / "lm32", 32)
    with pytest.raises(CheckpointError, match="was made for the language model tiny"):
        load_checkpoint(info.path, language_model=str(other))


def test_missing_hub_model_offline_says_how_to_get_it():
    with pytest.raises(WeightsError) as info:
        load_language_model(LanguageConfig(model="distilgpt2"))
    message = str(info.value)
    assert "distilgpt2" in message and "save_pretrained" in message


def test_malformed_checkpoint_folders_are_explained(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint folder"):
        read_checkpoint(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="not an EmoSEM checkpoint"):
        read_checkpoint(tmp_path / "empty")
    model, identity = build_emosem(get_preset("tiny"))
    info = save_checkpoint(model, identity, tmp_path / "broken")
    (info.path / WEIGHTS_FILE).write_bytes(b"not safetensors")
    with pytest.raises(CheckpointError, match="sha256 is not the one recorded"):
        load_checkpoint(info.path)
    rehash(info.path)  # damaged, and its metadata made to agree: the file itself is refused
    with pytest.raises(CheckpointError, match="unreadable weights"):
        load_checkpoint(info.path)
    (info.path / CONFIG_FILE).write_text('{"name": "x"}')
    with pytest.raises(CheckpointError, match="does not describe an EmoSEM model"):
        load_checkpoint(info.path)


def rehash(folder):
    """Make metadata.json record the sha256 of the weights file as it is now (as a tool that
    rewrote the weights would), so that what is checked next is the weights themselves."""
    import hashlib

    meta = json.loads((folder / METADATA_FILE).read_text())
    meta["weights_sha256"] = hashlib.sha256((folder / WEIGHTS_FILE).read_bytes()).hexdigest()
    (folder / METADATA_FILE).write_text(json.dumps(meta))


def test_weights_changed_after_saving_are_refused(tmp_path):
    from safetensors.torch import load_file, save_file

    model, identity = build_emosem(get_preset("tiny"))
    info = save_checkpoint(model, identity, tmp_path / "ckpt")
    state = load_file(str(info.path / WEIGHTS_FILE))
    key = "prefix_adapter.net.0.bias"
    state[key] = state[key] + 1.0  # a plausible file, every tensor present: only the hash tells
    save_file(state, str(info.path / WEIGHTS_FILE))
    with pytest.raises(CheckpointError, match="sha256 is not the one recorded in metadata.json"):
        load_checkpoint(info.path)
    rehash(info.path)
    loaded, _, _ = load_checkpoint(info.path)
    torch.testing.assert_close(loaded.state_dict()[key], state[key])


@pytest.mark.parametrize(
    "deleted",
    ["prefix_adapter.net.2.weight", "emotional_prompt.mask_token", "mask_decoder.mask_decoder.iou_token.weight"],
)
def test_a_checkpoint_missing_a_tensor_is_refused(tmp_path, deleted):
    from safetensors.torch import load_file, save_file

    model, identity = build_emosem(get_preset("tiny"))
    info = save_checkpoint(model, identity, tmp_path / "ckpt")
    state = load_file(str(info.path / WEIGHTS_FILE))
    del state[deleted]
    save_file(state, str(info.path / WEIGHTS_FILE))
    rehash(info.path)  # the metadata agrees: the missing weight itself must be noticed
    with pytest.raises(
        CheckpointError, match=r"does not fit the model it describes \(0 weights of another shape, 1 missing"
    ):
        load_checkpoint(info.path)


def test_unknown_model_spec_is_explained():
    with pytest.raises(CheckpointError, match="neither a preset"):
        load_predictor("vit_z", device="cpu")


def test_byte_level_tokenizer_needs_no_files_and_round_trips_any_text():
    tok = byte_level_tokenizer()
    text = "Le ciel bleu — calme, très doux 🙂"
    ids = tok(text, add_special_tokens=False).input_ids
    assert max(ids) < 256 and tok.decode(ids) == text
    assert tok.eos_token_id == 256 and len(tok) == 257

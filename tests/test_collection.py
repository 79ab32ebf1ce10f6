"""Collections in batches (worker processes read paintings, batched encode, drafts batched across
paintings) write the same records as the one-painting-at-a-time loop. Runs on the CPU; on a GPU
the same path is what makes `emosem propose FOLDER --device cuda` fast (benchmarks/bench_collection.py)."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from napari_emosem.cli import main as emosem
from napari_emosem.embedding_cache import EmbeddingCache
from napari_emosem.loading import load_predictor
from napari_emosem.propose import expand_inputs, propose_paintings
from napari_emosem.toy import toy_paintings

EMOTIONS = ("fear", "awe", "sadness")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("collection")
    for i, toy in enumerate(toy_paintings(4, seed=7)):
        Image.fromarray(toy.image).save(root / f"p{i}.{'png' if i % 2 else 'jpg'}")
    (root / "p9-broken.jpg").write_bytes(b"not a jpeg")
    return root


def _writes_letters(model) -> None:
    """An untrained byte-level LM often ends at once or writes control bytes (cleaned away). With
    zero rows (tied to the output layer) for every token but lowercase letters and space, those
    rarely win, so every record carries a draft to compare."""
    import torch

    keep = [32, *range(97, 123)]  # byte tokens: id = byte value
    with torch.no_grad():
        rows = model.language_model.get_input_embeddings().weight
        saved = rows[keep].clone()
        rows.zero_()
        rows[keep] = saved


def _records(out):
    coco = json.loads((out / "annotations.json").read_text())
    names = {im["id"]: im["file_name"] for im in coco["images"]}
    volatile = {"id", "image_id", "created", "modified"}
    return {
        (names[a["image_id"]], a["category_id"]): {k: v for k, v in a.items() if k not in volatile}
        for a in coco["annotations"]
    }


def test_batches_write_what_one_at_a_time_writes(folder, tmp_path):
    paths = expand_inputs([folder])
    reports, seen = {}, {}
    for name, batch in (("loop", 1), ("batched", 3)):
        predictor = load_predictor("tiny", device="cpu", precision="fp32", max_new_tokens=12,
                                   cache=EmbeddingCache(tmp_path / f"cache-{name}"))
        _writes_letters(predictor.model)
        order = seen.setdefault(name, [])
        reports[name] = propose_paintings(
            paths, predictor, EMOTIONS, tmp_path / name, batch_size=batch, num_workers=1 if batch > 1 else None,
            on_painting=lambda path, proposals, error, order=order: order.append((path.name, error is None)),
        )
    assert reports["loop"].written == reports["batched"].written and len(reports["loop"].written) == 4
    assert (
        [f for f, _ in reports["loop"].failed]
        == [f for f, _ in reports["batched"].failed]
        == [str(folder / "p9-broken.jpg")]
    )
    assert seen["loop"] == seen["batched"]  # same order, same outcomes
    loop, batched = _records(tmp_path / "loop"), _records(tmp_path / "batched")
    assert loop.keys() == batched.keys() and len(loop) == 12
    for key in loop:
        a, b = dict(loop[key]), dict(batched[key])
        assert a.pop("segmentation") == b.pop("segmentation"), key
        assert a.pop("score") == pytest.approx(b.pop("score"), abs=2e-4), key
        assert a == b, key  # explanations, source, flags
    assert all(r["explanation"] for r in loop.values())
    assert sorted(p.name for p in (tmp_path / "batched" / "overlays").iterdir()) == sorted(
        p.name for p in (tmp_path / "loop" / "overlays").iterdir()
    )


def test_cli_batch_size(folder, tmp_path, capsys):
    out = tmp_path / "out"
    code = emosem(["propose", str(folder), "--model", "tiny", "--emotions", "fear,awe", "--out", str(out),
                   "--device", "cpu", "--precision", "fp32", "--batch-size", "2", "--no-overlay",
                   "--max-tokens", "8"])
    assert code == 2  # the broken file
    err = capsys.readouterr().err
    assert "p9-broken.jpg" in err and "wrote 4 painting(s) × 2 emotion(s)" in err
    assert emosem(["propose", str(folder), "--model", "tiny", "--out", str(out), "--batch-size", "0"]) == 2
    assert "--batch-size must be 'auto' or a positive number" in capsys.readouterr().err


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_batches_on_the_gpu_write_what_the_cpu_loop_writes(folder, tmp_path):
    from napari_emosem.data import StimulusDataset
    from napari_emosem.metrics import foreground_iou

    paths = expand_inputs([folder])
    for name, device, batch in (("cpu", "cpu", 1), ("cuda", "cuda", 4)):
        predictor = load_predictor(
            "tiny", device=device, max_new_tokens=12, cache=EmbeddingCache(tmp_path / f"c-{name}")
        )
        propose_paintings(
            paths, predictor, EMOTIONS, tmp_path / name, batch_size=batch, num_workers=2 if batch > 1 else None
        )
    cpu, gpu = StimulusDataset.open(tmp_path / "cpu"), StimulusDataset.open(tmp_path / "cuda")
    assert [p.file_name for p in cpu.paintings] == [p.file_name for p in gpu.paintings]
    for a, b in zip(cpu.paintings, gpu.paintings, strict=True):
        for sa, sb in zip(cpu.stimuli(a), gpu.stimuli(b), strict=True):
            assert sa.emotion == sb.emotion
            assert foreground_iou(sa.mask, sb.mask) > 0.98  # TF32 and other kernels differ in the last bits

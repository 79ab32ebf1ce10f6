"""The CUDA paths: the same model, training and commands on a GPU as on the CPU.

Skipped where torch sees no CUDA GPU (CI and laptops). `scripts/gpu-checks` runs this file and
the benchmarks on a GPU machine; the README reports what it measured and on which card.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

from napari_emosem import EMOTIONS  # noqa: E402
from napari_emosem.build import build_emosem  # noqa: E402
from napari_emosem.checkpoint import read_checkpoint  # noqa: E402
from napari_emosem.cli import main as emosem  # noqa: E402
from napari_emosem.config import get_preset  # noqa: E402
from napari_emosem.data import StimulusDataset  # noqa: E402
from napari_emosem.embedding_cache import EmbeddingCache  # noqa: E402
from napari_emosem.emosem_predictor import EmoSEMPredictor  # noqa: E402
from napari_emosem.loading import load_predictor  # noqa: E402
from napari_emosem.metrics import foreground_iou  # noqa: E402
from napari_emosem.toy import toy_paintings, write_toy_dataset  # noqa: E402
from napari_emosem.training import TrainConfig, Trainer, from_toy  # noqa: E402


def test_the_gpu_proposes_what_the_cpu_proposes(tmp_path):
    torch.manual_seed(0)
    model, identity = build_emosem(get_preset("tiny"))
    image = toy_paintings(1, seed=3)[0].image
    out = {}
    for device in ("cpu", "cuda"):
        predictor = EmoSEMPredictor(model, identity, device=device, cache=EmbeddingCache(tmp_path / device))
        predictor.set_image(image)
        out[device] = predictor.propose(list(EMOTIONS), explain=False, with_probability=True)
    for cpu, gpu in zip(out["cpu"], out["cuda"], strict=True):
        assert cpu.emotion == gpu.emotion
        assert cpu.mask.shape == gpu.mask.shape == image.shape[:2]
        # TF32 and other kernels differ in the last bits; the masks must not
        assert foreground_iou(cpu.mask, gpu.mask) > 0.99
        assert abs(cpu.score - gpu.score) < 1e-2


def test_training_on_the_gpu_learns_and_loads_back_on_the_cpu(tmp_path):
    data = from_toy(toy_paintings(24, seed=1))
    model, identity = build_emosem(get_preset("tiny"))
    config = TrainConfig(epochs=12, batch_size=15, val_fraction=0.25, seed=0, patience=0, validate_explanations=False)
    losses = []
    trainer = Trainer(
        model, identity, data, config, tmp_path / "run", device="cuda", cache=EmbeddingCache(tmp_path / "cache")
    )
    result = trainer.fit(lambda e: losses.append(e.losses["loss"]) if e.stage == "epoch" else None)
    assert result.checkpoint is not None
    assert len(losses) == 12 and losses[-1] < 0.7 * losses[0], losses
    # the checkpoint is device-free: trained on the GPU, it proposes the same on either device
    toy = toy_paintings(1, seed=9)[0]
    props = {}
    for device in ("cuda", "cpu"):
        predictor = load_predictor(tmp_path / "run", device=device, cache=EmbeddingCache(tmp_path / f"c-{device}"))
        predictor.set_image(toy.image)
        props[device] = predictor.propose(toy.emotions, explain=False)
    for gpu, cpu in zip(props["cuda"], props["cpu"], strict=True):
        assert foreground_iou(gpu.mask, cpu.mask) > 0.98


def test_emosem_propose_on_cuda_writes_a_dataset(tmp_path):
    from PIL import Image

    paths = []
    for i, toy in enumerate(toy_paintings(2, seed=5)):
        paths.append(tmp_path / f"p{i}.png")
        Image.fromarray(toy.image).save(paths[-1])
    out = tmp_path / "out"
    assert emosem(["propose", *map(str, paths), "--model", "tiny", "--emotions", "fear,awe", "--out", str(out),
                   "--device", "cuda"]) == 0
    ds = StimulusDataset.open(out)
    assert len(ds.paintings) == 2
    coco = json.loads((out / "annotations.json").read_text())
    assert len(coco["annotations"]) == 4 and all(a["explanation"] for a in coco["annotations"])


def test_torchrun_trains_with_nccl(tmp_path):
    data = write_toy_dataset(tmp_path / "ds", 6).root
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "1", "--master_addr", "127.0.0.1",
           "--master_port", str(port), "-m", "napari_emosem",
           "train", "--data", str(data), "--base", "tiny", "--out", str(run), "--epochs", "2",
           "--no-text-metrics", "--device", "cuda"]
    done = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ), timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    meta = read_checkpoint(run).metadata
    assert meta["training"]["distributed_processes"] == 1


def test_the_starter_uses_sams_automatic_masks_on_the_gpu(tmp_path):
    """A randomly initialised ViT-B SAM (the real architecture, saved as SAM's .pth files are):
    its masks mean nothing, but encode + automatic mask generator + scoring run on the GPU."""
    from segment_anything import sam_model_registry

    from napari_emosem.starter import SOURCE_SAM, StarterConfig, StarterPredictor

    torch.manual_seed(0)
    ckpt = tmp_path / "sam_vit_b_random.pth"
    torch.save(sam_model_registry["vit_b"]().state_dict(), ckpt)
    assert load_predictor("starter", device="cuda", sam_checkpoint=ckpt).uses_sam
    # a random SAM's masks fail the default quality filters; at 0 they come through
    config = StarterConfig(sam_pred_iou_thresh=0.0, sam_stability_score_thresh=0.0)
    predictor = StarterPredictor(config, sam_checkpoint=ckpt, device="cuda")
    predictor.set_image(toy_paintings(1, seed=4)[0].image)
    proposals = predictor.propose(list(EMOTIONS))
    assert predictor.region_source == SOURCE_SAM
    assert all(p.mask.any() and p.explanation for p in proposals)

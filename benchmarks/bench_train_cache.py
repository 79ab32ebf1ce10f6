"""Training throughput with cached embeddings against re-encoding every step, in the same run.

ViT-B encoder (frozen, as with SAM's pretrained weights) at 1024 px, SAM's decoder, GPT-2 124M
(frozen; the prefix adapter learns to talk to it; see bench_model.py for its tokenizer), random
weights. Each step trains on a batch of
8 (painting, emotion) pairs from 4 paintings with the project's own collate and loss. "Cached"
reads the embeddings computed once (what `emosem train` does); "re-encode" runs the encoder on
the batch's paintings at every step (what training without the cache would cost).

    python benchmarks/bench_train_cache.py [--device cpu|cuda] [--cached-steps 10] [--encode-steps 2]

Target: cached >= 50x the pairs per second of re-encoding. Prints a table, writes JSON.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from napari_emosem.build import build_emosem
from napari_emosem.embedding_cache import EmbeddingCache
from napari_emosem.emosem_predictor import encoder_key
from napari_emosem.training.batches import collate
from napari_emosem.training.examples import TrainingPainting, TrainingPair
from napari_emosem.training.features import prepare

sys.path.insert(0, str(Path(__file__).parent))
from bench_model import gpt2_sized_lm, real_size_config  # noqa: E402


def paintings(n=4, shape=(1024, 768)):
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        image = rng.integers(0, 255, size=(*shape, 3), dtype=np.uint8)
        mask_a = np.zeros(shape, bool)
        mask_a[100 + 50 * i : 400 + 50 * i, 200:500] = True
        mask_b = ~mask_a
        pairs = [
            TrainingPair("fear", (lambda m=mask_a: m), ["the dark shape at the centre looks threatening"]),
            TrainingPair("awe", (lambda m=mask_b: m), ["the wide light around it feels grand"]),
        ]
        out.append(TrainingPainting(f"bench/{i}", (lambda im=image: im), pairs))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--cached-steps", type=int, default=10)
    parser.add_argument("--encode-steps", type=int, default=2)
    parser.add_argument("--json", default=str(Path(__file__).parent / "results" / "bench_train_cache.json"))
    args = parser.parse_args()
    device = args.device
    cuda = device.startswith("cuda")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    card = (
        torch.cuda.get_device_name(0)
        if cuda
        else f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    )

    model, identity = build_emosem(real_size_config(), language_model=gpt2_sized_lm())
    model = model.to(device)
    assert model.config.encoder.frozen and "image_encoder" not in model.trainable_modules()
    key = encoder_key(model, identity)
    cache = EmbeddingCache(tempfile.mkdtemp(prefix="emosem-bench-cache-"))
    data = paintings()
    t = time.perf_counter()
    features = [f for _, _, f in prepare(model, data, encoder_key=key, cache=cache, device=device, encode=True)]
    first_encode_s = time.perf_counter() - t
    items = [(pf, pair) for pf in features for pair in pf.pairs]
    images = {pf.key: model.image_encoder.preprocess(p.load())[0] for pf, p in zip(features, data, strict=True)}
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    rng = np.random.default_rng(0)

    def step(reencode: bool):
        def embeddings_for(pf):
            if reencode:
                with torch.no_grad():
                    return model.encode(images[pf.key][None].to(device))[0]
            return pf.get_embedding(cache, key).to(device)

        batch = collate(model, items, rng, embeddings_for=embeddings_for).to(device)
        loss = model.loss(batch)["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    model.train()
    step(False)  # warm-up
    rows = {}
    for name, reencode, n in (
        ("cached embeddings", False, args.cached_steps),
        ("re-encode every step", True, args.encode_steps),
    ):
        sync()
        t = time.perf_counter()
        for _ in range(n):
            step(reencode)
        sync()
        seconds = time.perf_counter() - t
        rows[name] = {"steps": n, "seconds": seconds, "pairs_per_second": n * len(items) / seconds}
    speedup = rows["cached embeddings"]["pairs_per_second"] / rows["re-encode every step"]["pairs_per_second"]

    print(f"\nTraining throughput, ViT-B + GPT-2 124M, random weights — {card}, torch {torch.__version__}")
    print(f"batch: {len(items)} pairs from {len(features)} paintings (1024 × 768); "
          f"encoding them once took {first_encode_s:.1f} s")
    print(f"{'mode':<24}{'steps':>6}{'s/step':>9}{'pairs/s':>10}  device")
    for name, r in rows.items():
        print(f"{name:<24}{r['steps']:>6}{r['seconds'] / r['steps']:>9.2f}{r['pairs_per_second']:>10.2f}  {card}")
    print(f"speed-up from the cache: {speedup:.0f}× (target >= 50×) {'ok' if speedup >= 50 else 'UNDER TARGET'}")
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    summary = {
        "device": card,
        "torch": torch.__version__,
        "pairs_per_batch": len(items),
        "modes": rows,
        "speedup": speedup,
        "first_encode_s": first_encode_s,
    }
    out.write_text(json.dumps(summary, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

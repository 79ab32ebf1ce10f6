"""Paintings per second for a folder: batches (workers, batched encode and drafts) vs one at a time.

A folder of 1024 px JPEGs (the shipped Cézannes, each cropped, flipped and tinted differently so
that no two share an embedding), EmoSEM at real size with random weights (ViT-B at 1024 px, SAM's
decoder, GPT-2-sized LM; every draft exactly ``--max-tokens`` tokens), all 8 emotions with drafts,
written into a dataset as `emosem propose` writes them. Both runs in the same process, on the same
predictor, with nothing cached: first ``propose_paintings(batch_size=1)`` (the loop), then
``propose_paintings(batch_size=B, num_workers=W)``.

    python benchmarks/bench_collection.py [--device cuda] [--paintings 256] [--batch-size auto] [--workers N]

Target (issue 14): on a GPU, >= 5x the paintings per second of the loop for 256 paintings.
Writes JSON (default benchmarks/results/bench_collection.json).
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_model import gpt2_sized_lm, real_size_config  # noqa: E402
from bench_vs_sam import cpu_name  # noqa: E402

from napari_emosem import EMOTIONS  # noqa: E402
from napari_emosem.build import BaseIdentity, build_emosem  # noqa: E402
from napari_emosem.collection import auto_batch_size, default_workers  # noqa: E402
from napari_emosem.embedding_cache import EmbeddingCache  # noqa: E402
from napari_emosem.emosem_predictor import EmoSEMPredictor  # noqa: E402
from napari_emosem.image_io import load_image  # noqa: E402
from napari_emosem.paintings import painting_paths  # noqa: E402
from napari_emosem.propose import propose_paintings  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "bench_collection.json"


def write_folder(folder: Path, n: int) -> list[Path]:
    from PIL import Image

    rng = np.random.default_rng(0)
    sources = [load_image(p) for p in painting_paths()]
    out = []
    for i in range(n):
        rgb = sources[i % len(sources)]
        h, w = rgb.shape[:2]
        top, left = rng.integers(0, h // 8), rng.integers(0, w // 8)
        crop = rgb[top : top + h - h // 8, left : left + w - w // 8]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        tint = np.clip(crop * rng.uniform(0.85, 1.15, 3), 0, 255).astype(np.uint8)
        scale = 1024 / max(tint.shape[:2])
        img = Image.fromarray(tint).resize((round(tint.shape[1] * scale), round(tint.shape[0] * scale)), Image.LANCZOS)
        out.append(folder / f"painting-{i:04d}.jpg")
        img.save(out[-1], quality=92)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--paintings", type=int, default=None, help="default: 256 on a GPU, 4 on a CPU")
    parser.add_argument("--batch-size", default="auto")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--max-tokens", type=int, default=30)
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--overlays", action="store_true", help="also render contact sheets (CPU work per painting)")
    parser.add_argument("--json", default=str(RESULTS))
    args = parser.parse_args()
    device = args.device
    cuda = device.startswith("cuda")
    machine = torch.cuda.get_device_name(0) if cuda else cpu_name()
    n = args.paintings or (256 if cuda else 4)
    batch = auto_batch_size(device) if args.batch_size == "auto" else int(args.batch_size)
    workers = default_workers(device) if args.workers is None else args.workers

    torch.manual_seed(0)
    model, _ = build_emosem(real_size_config(), language_model=gpt2_sized_lm())
    model.explain = functools.partial(type(model).explain, model, min_new_tokens=args.max_tokens)
    identity = BaseIdentity("vit_b (random)", None, "gpt2-sized random")
    predictor = EmoSEMPredictor(model, identity, device=device, precision=args.precision,
                                max_new_tokens=args.max_tokens, cache=EmbeddingCache(max_bytes=0, memory_items=0))
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    print(f"{n} paintings of 1024 px, 8 emotions with {args.max_tokens}-token drafts — {machine}, "
          f"torch {torch.__version__}; precision {predictor.plan.label}; batch {batch}, {workers} workers")
    results = {}
    with tempfile.TemporaryDirectory(prefix="emosem-bench-collection-") as tmp:
        tmp = Path(tmp)
        (tmp / "in").mkdir()
        paths = write_folder(tmp / "in", n)
        propose_paintings(paths[:1], predictor, EMOTIONS, tmp / "warm-out", overlays=False)  # weights, kernels
        for name, kwargs in (("one_at_a_time", {"batch_size": 1}),
                             ("batched", {"batch_size": batch, "num_workers": workers})):
            if name == "batched" and batch > 1:
                propose_paintings(paths[:batch], predictor, EMOTIONS, tmp / "warm-batched", overlays=False, **kwargs)
            sync()
            t = time.perf_counter()
            report = propose_paintings(paths, predictor, EMOTIONS, tmp / name, overlays=args.overlays, **kwargs)
            sync()
            seconds = time.perf_counter() - t
            assert len(report.written) == n, report.failed
            results[name] = {"seconds": seconds, "paintings_per_s": n / seconds, **kwargs}
            print(f"{name:<16} {seconds:8.1f} s  {n / seconds:7.2f} paintings/s")
    speedup = results["batched"]["paintings_per_s"] / results["one_at_a_time"]["paintings_per_s"]
    print(f"speed-up {speedup:.2f}x (target on a GPU: >= 5x)")
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": machine, "device": device, "torch": torch.__version__, "paintings": n,
                               "precision": predictor.plan.label, "max_tokens": args.max_tokens,
                               "results": results, "speedup": speedup}, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

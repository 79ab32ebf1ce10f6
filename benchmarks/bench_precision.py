"""Do bf16 (encoder, decoder) and int8 (language model) keep a trained model's proposals and drafts?

Trains the tiny EmoSEM on 32 toy paintings (120 steps, as tests/test_precision.py does), then
proposes with drafts for 16 held-out toy paintings at precision fp32 and bf16, and records the
mask IoU between the two, each one's IoU with the true shapes, and BLEU-4 of the drafts against
the toy explanations (pycocoevalcap's BLEU on the lower-case toy sentences). The gate (issue 14):
mask IoU >= 0.98 against fp32, BLEU-4 within 0.02 of fp32.

    python benchmarks/bench_precision.py [--json PATH]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from napari_emosem.build import build_emosem
from napari_emosem.config import get_preset
from napari_emosem.embedding_cache import EmbeddingCache
from napari_emosem.loading import load_predictor
from napari_emosem.metrics import foreground_iou
from napari_emosem.toy import toy_paintings
from napari_emosem.training import TrainConfig, Trainer, from_toy

RESULTS = Path(__file__).resolve().parent / "results" / "bench_precision.json"


def bleu4(references: list[str], candidates: list[str]) -> float:
    from pycocoevalcap.bleu.bleu import Bleu

    with contextlib.redirect_stdout(io.StringIO()):
        scores, _ = Bleu(4).compute_score({i: [r] for i, r in enumerate(references)},
                                          {i: [c or "-"] for i, c in enumerate(candidates)}, verbose=0)
    return float(scores[3])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", default=str(RESULTS))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="emosem-bench-precision-") as tmp:
        run = Path(tmp) / "run"
        t = time.perf_counter()
        model, identity = build_emosem(get_preset("tiny"))
        config = TrainConfig(epochs=20, batch_size=15, val_fraction=0.0, seed=0, validate_explanations=False)
        Trainer(model, identity, from_toy(toy_paintings(32, seed=1)), config, run,
                cache=EmbeddingCache(Path(tmp) / "cache")).fit()
        print(f"trained the toy checkpoint in {time.perf_counter() - t:.0f} s")
        held_out = toy_paintings(16, seed=2)
        out, plans = {}, {}
        for precision in ("fp32", "bf16"):
            predictor = load_predictor(run, device="cpu", precision=precision, cache=EmbeddingCache(max_bytes=0))
            plans[precision] = predictor.plan.label
            out[precision] = []
            for toy in held_out:
                predictor.set_image(toy.image)
                out[precision].extend((toy, p) for p in predictor.propose(toy.emotions))
    agreement = [foreground_iou(a.mask, b.mask) if (a.mask.any() or b.mask.any()) else 1.0
                 for (_, a), (_, b) in zip(out["fp32"], out["bf16"], strict=True)]
    result = {"pairs": len(agreement), "plans": plans,
              "mask_iou_bf16_vs_fp32": {"mean": float(np.mean(agreement)), "min": float(np.min(agreement))}}
    for precision, pairs in out.items():
        result[precision] = {
            "iou_with_truth": float(np.mean([foreground_iou(p.mask, toy.masks[p.emotion]) for toy, p in pairs])),
            "bleu_4": bleu4([toy.explanations[p.emotion] for toy, p in pairs], [p.explanation for _, p in pairs]),
        }
    result["bleu_4_difference"] = result["bf16"]["bleu_4"] - result["fp32"]["bleu_4"]
    print(json.dumps(result, indent=1))
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

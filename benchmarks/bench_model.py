"""EmoSEM at real sizes with random weights: encode, propose all 8 emotions, explain, memory.

ViT-B image encoder at 1024 px, SAM's mask decoder (256 wide), GPT-2 124M (12 layers, 768 wide,
50,257-token vocabulary). GPT-2's tokenizer files cannot be downloaded here, so a word-level
tokenizer is built on the spot: it splits the paper's prompt into as many tokens as GPT-2's BPE
does (8), which is what the decoder's cost depends on. Weights are random: the timings are the
architecture's, which is what the annotator waits for.

    python benchmarks/bench_model.py [--device cpu|cuda] [--precision auto|fp32|bf16] [--repeats N] [--json PATH]

Prints a table and writes JSON (default benchmarks/results/bench_model.json). Targets on a
2-core CPU: propose-all-8 from a cached embedding <= 150 ms, explain one emotion (<= 30 tokens,
with the KV cache) <= 1 s.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from napari_emosem import EMOTIONS
from napari_emosem.build import build_emosem
from napari_emosem.config import LanguageConfig, get_preset
from napari_emosem.modeling.transforms import lowres_to_painting

TARGETS_MS = {"propose_all_8": 150.0, "explain_30_tokens": 1000.0}


def real_size_config():
    base = get_preset("vit_b")
    gpt2 = LanguageConfig(model="gpt2-random", train=False, max_new_tokens=30)
    return base.replace(name="vit_b-random", encoder=dataclasses.replace(base.encoder, weights=None), language=gpt2)


def gpt2_sized_lm():
    """GPT-2 124M with random weights and a word-level tokenizer trained on the spot."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    words = [
        "generate", "the", "mask", "for", "emotion", "a", "an", "of", "in", "on",
        "at", "is", "it", "this", "that", "and", "with", "feels", "looks",
    ] + list(EMOTIONS)
    vocab = {"<|endoftext|>": 0, "[UNK]": 1, **{w: i + 2 for i, w in enumerate(dict.fromkeys(words))}}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>", unk_token="[UNK]"
    )
    lm = GPT2LMHeadModel(GPT2Config(vocab_size=50257, bos_token_id=0, eos_token_id=0, pad_token_id=0))
    lm.loss_type = "ForCausalLM"
    return lm, tokenizer


def timed(fn, repeats, sync):
    times = []
    for _ in range(repeats):
        sync()
        t = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - t) * 1000)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--precision", default="fp32", help="auto, fp32 or bf16 (CPU only; see napari_emosem.precision)"
    )
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--encode-repeats", type=int, default=3)
    parser.add_argument("--json", default=str(Path(__file__).parent / "results" / "bench_model.json"))
    args = parser.parse_args()
    device = args.device
    cuda = device.startswith("cuda")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    card = (
        torch.cuda.get_device_name(0)
        if cuda
        else f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    )

    t = time.perf_counter()
    model, _ = build_emosem(real_size_config(), language_model=gpt2_sized_lm())
    model = model.to(device).eval()
    build_s = time.perf_counter() - t
    from napari_emosem.modeling.language_model import int8_language_model
    from napari_emosem.precision import resolve_precision

    plan = resolve_precision(args.precision, device)
    drafting = int8_language_model(model.language_model) if plan.int8_language_model else None
    card += f", precision {plan.label}"
    n_params = {name: sum(p.numel() for p in m.parameters()) for name, m in model.named_children()}

    rng = np.random.default_rng(0)
    painting = rng.integers(0, 255, size=(1024, 768, 3), dtype=np.uint8)
    results = {}
    with torch.no_grad():
        x, geometry = model.image_encoder.preprocess(painting)
        x = x[None].to(device)
        def encode():
            with plan.autocast():
                return model.encode(x).float()

        encode()  # warm-up
        results["encode"] = timed(encode, args.encode_repeats, sync)
        embedding = encode()
        ids = model.emotion_index(EMOTIONS)

        def propose(emotion_ids):
            with plan.autocast():
                return model.propose(embedding, emotion_ids)

        def propose_all():
            pred = propose(ids)
            for i in range(len(ids)):  # masks at the painting's resolution, as the annotator gets them
                (lowres_to_painting(pred.logits[i : i + 1].float(), geometry)[0, 0] > 0).cpu()

        propose_all()
        results["propose_all_8"] = timed(propose_all, args.repeats, sync)
        one = ids[:1]
        results["propose_1"] = timed(lambda: propose(one), args.repeats, sync)
        pred = propose(one)
        extent = torch.tensor([geometry.extent], device=device)
        soft = pred.logits[:, 0].float().sigmoid()

        def explain():
            # 30 tokens exactly: random weights must not stop early at end-of-text
            model.explain(embedding, one, soft, extent, max_new_tokens=30, min_new_tokens=30, language_model=drafting)

        explain()
        results["explain_30_tokens"] = timed(explain, max(3, args.repeats // 4), sync)

        def explain_beam():
            model.explain(embedding, one, soft, extent, max_new_tokens=30, min_new_tokens=30, num_beams=3,
                          language_model=drafting)

        results["explain_30_tokens_beam3"] = timed(explain_beam, 3, sync)

    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    peak_gpu_mb = torch.cuda.max_memory_allocated() / 2**20 if cuda else None
    rows = []
    print(f"\nEmoSEM at real size, random weights — {card}, torch {torch.__version__}")
    print(f"prompt: {model.emotional_prompt.length} tokens per emotion (words + mask token), "
          "one prompt set per emotion, all 8 in one decoder call")
    print(f"parameters: encoder {n_params['image_encoder']/1e6:.1f} M, decoder {n_params['mask_decoder']/1e6:.2f} M, "
          f"LM {n_params['language_model']/1e6:.1f} M, adapter {n_params['prefix_adapter']/1e6:.1f} M; "
          f"built in {build_s:.1f} s")
    print(f"{'step':<26}{'median ms':>12}{'min ms':>10}{'target ms':>11}  device")
    for name, times in results.items():
        med = statistics.median(times)
        target = TARGETS_MS.get(name)
        flag = "" if target is None else ("  ok" if med <= target else "  OVER")
        print(f"{name:<26}{med:>12.1f}{min(times):>10.1f}{(f'{target:.0f}' if target else '-'):>11}  {card}{flag}")
        rows.append({"step": name, "median_ms": med, "min_ms": min(times), "runs": len(times), "target_ms": target})
    print(f"peak memory: {peak_rss_mb:.0f} MB RSS" + (f", {peak_gpu_mb:.0f} MB GPU" if cuda else ""))
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "device": card, "torch": torch.__version__, "python": sys.version.split()[0],
        "painting": list(painting.shape[:2]), "parameters": n_params, "results": rows,
        "peak_rss_mb": peak_rss_mb, "peak_gpu_mb": peak_gpu_mb,
    }, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""How the stimulus dataset scales: open (full validation), one upsert, pairs(), content hash.

Builds an APOLO-sized dataset (4,718 paintings, 6,781 (painting, emotion) pairs with masks and
five explanations each) of small generated JPEGs, then times the operations a user waits for.
Prints a table and writes ``benchmarks/results/bench_dataset.json``.

    python benchmarks/bench_dataset.py [--paintings 4718] [--pairs 6781] [--size 480x360]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from napari_emosem.data import PaintingUpdate, Stimulus, StimulusDataset
from napari_emosem.emotions import EMOTIONS


def blob(h: int, w: int, rng) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    cy, cx = rng.uniform(0.2, 0.8) * h, rng.uniform(0.2, 0.8) * w
    ry, rx = rng.uniform(0.08, 0.3) * h, rng.uniform(0.08, 0.3) * w
    wobble = 1 + 0.15 * np.sin(5 * np.arctan2(yy - cy, xx - cx))
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < wobble


def timed(fn, repeat: int = 1):
    best = float("inf")
    result = None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paintings", type=int, default=4718)
    parser.add_argument("--pairs", type=int, default=6781)
    parser.add_argument("--size", default="480x360", help="WxH of the generated paintings")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "bench_dataset.json"))
    args = parser.parse_args()
    w, h = (int(v) for v in args.size.split("x"))
    rng = np.random.default_rng(0)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        sources = tmp / "src"
        sources.mkdir()
        # a handful of distinct JPEGs, copied under many names (file copies, not re-encoding)
        templates = []
        for i in range(8):
            path = sources / f"t{i}.jpg"
            Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path, quality=85)
            templates.append(path)
        ds = StimulusDataset.open(tmp / "ds", create=True)
        masks = [blob(h, w, rng) for _ in range(64)]  # generated before the clock starts
        per_painting = np.full(args.paintings, args.pairs // args.paintings)
        per_painting[: args.pairs - per_painting.sum()] += 1
        start = time.perf_counter()
        batch = []
        for i, n in enumerate(per_painting):
            emotions = rng.choice(EMOTIONS, size=int(n), replace=False)
            stimuli = [
                Stimulus(
                    str(e), masks[int(rng.integers(64))], [f"explanation {k} of pair {i}/{e} " * 3 for k in range(5)]
                )
                for e in emotions
            ]
            batch.append(PaintingUpdate(templates[i % len(templates)], f"painting-{i:05d}.jpg", stimuli))
            if len(batch) == 500:
                ds.write_paintings(batch)
                batch = []
        if batch:
            ds.write_paintings(batch)
        build_s = time.perf_counter() - start
        size_mb = (tmp / "ds" / "annotations.json").stat().st_size / 1e6

        open_s, opened = timed(lambda: StimulusDataset.open(tmp / "ds"), repeat=3)
        name = "painting-00042.jpg"
        stimuli = opened.stimuli(name)
        stimuli[0].mask = blob(h, w, rng)
        upsert_s, _ = timed(lambda: opened.write_painting(templates[42 % 8], name, stimuli), repeat=3)
        other = StimulusDataset.open(tmp / "ds")
        opened.write_painting(templates[1], "painting-00001.jpg", opened.stimuli("painting-00001.jpg"))
        # a write after another process saved: catch up (replay its journal line), then write
        merge_s, _ = timed(lambda: other.write_painting(templates[42 % 8], name, stimuli))
        pairs_s, pairs = timed(lambda: opened.pairs(), repeat=3)
        decode_s, _ = timed(lambda: [s.mask for _, s in pairs[:500]])
        hash_s, _ = timed(lambda: opened.content_hash())

    rows = [
        ("build: write_paintings, 500 per batch (fsync per file)", build_s),
        ("open: parse + validate everything", open_s),
        ("write_painting: upsert (one journal line)", upsert_s),
        ("write_painting: upsert after another writer's save", merge_s),
        ("pairs(): list every pair (masks stay encoded)", pairs_s),
        ("decode 500 masks", decode_s),
        ("content_hash (first time: hashes image files)", hash_s),
    ]
    print(f"{args.paintings} paintings, {args.pairs} pairs, {w}×{h} px, annotations.json {size_mb:.1f} MB")
    print(f"{'operation':<56} {'seconds':>8}")
    for label, seconds in rows:
        print(f"{label:<56} {seconds:8.3f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "paintings": args.paintings, "pairs": args.pairs, "size": [w, h],
        "annotations_mb": round(size_mb, 2), "machine": platform.platform(),
        "seconds": {label: round(s, 4) for label, s in rows},
    }, indent=1))  # fmt: skip
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

"""How a campaign of APOLO's size behaves: open, status, saving one painting.

Generates (once, kept in --root) a campaign of 5,000 paintings (APOLO has 4,718) × 8 emotions as
`emosem propose` leaves it: every pair an unreviewed draft with one explanation, and a fifth of
the paintings reviewed by one of three annotators, with their active time. Then times what a
person waits for: opening the dataset, deriving every painting's status, `emosem status` end to
end (a fresh process), and saving one painting. Prints a table and writes
``benchmarks/results/bench_campaign.json``.

    python benchmarks/bench_campaign.py [--paintings 5000] [--root /tmp/emosem-campaign-5000]
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from napari_emosem.campaign import campaign_progress
from napari_emosem.data import PaintingUpdate, Stimulus, StimulusDataset
from napari_emosem.emotions import EMOTIONS

RESULTS = Path(__file__).parent / "results" / "bench_campaign.json"
ANNOTATORS = ("ana", "bo", "chen")


def blob(h: int, w: int, rng) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    cy, cx = rng.uniform(0.2, 0.8) * h, rng.uniform(0.2, 0.8) * w
    ry, rx = rng.uniform(0.08, 0.3) * h, rng.uniform(0.08, 0.3) * w
    wobble = 1 + 0.15 * np.sin(5 * np.arctan2(yy - cy, xx - cx))
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < wobble


def build(root: Path, n: int, size: tuple[int, int]) -> None:
    """The campaign, written in batches as `emosem propose` + annotators would leave it."""
    w, h = size
    rng = np.random.default_rng(0)
    sources = root.parent / f"{root.name}-sources"
    sources.mkdir(parents=True, exist_ok=True)
    templates = []
    for i in range(8):  # distinct JPEGs, copied under many names
        path = sources / f"t{i}.jpg"
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path, quality=85)
        templates.append(path)
    masks = [blob(h, w, rng) for _ in range(64)]
    ds = StimulusDataset.open(root, create=True)
    batch = []
    for i in range(n):
        annotator = ANNOTATORS[i % 3] if i % 5 == 0 else None
        stimuli = []
        for emotion in EMOTIONS:
            mask = masks[int(rng.integers(64))]
            extra = {"annotation_seconds": round(float(rng.uniform(5, 60)), 1)} if annotator else {}
            stimuli.append(Stimulus(
                emotion, mask, [f"the {emotion} of painting {i} comes from its shapes and colours"],
                source="model:emosem-vit_b-1", score=round(float(rng.uniform(0.3, 0.9)), 4),
                reviewed=annotator is not None, annotator=annotator, extra=extra,
            ))  # fmt: skip
        batch.append(PaintingUpdate(templates[i % 8], f"painting-{i:05d}.jpg", stimuli))
        if len(batch) == 500:
            ds.write_paintings(batch)
            batch = []
    if batch:
        ds.write_paintings(batch)


def timed(fn, repeat: int = 3):
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paintings", type=int, default=5000)
    parser.add_argument("--size", default="640x480", help="WxH of the generated paintings")
    parser.add_argument("--root", default=None, help="where the campaign is generated (kept for the next run)")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))
    root = Path(args.root or f"/tmp/emosem-campaign-{args.paintings}")
    if not (root / "annotations.json").exists():
        start = time.perf_counter()
        build(root, args.paintings, size)
        print(f"generated {root} in {time.perf_counter() - start:.1f} s")
    size_mb = (root / "annotations.json").stat().st_size / 1e6

    open_s, ds = timed(lambda: StimulusDataset.open(root))
    status_s, progress = timed(lambda: campaign_progress(ds))
    cli_s, _ = timed(lambda: subprocess.run(
        [sys.executable, "-m", "napari_emosem", "status", str(root)], check=True, capture_output=True))  # fmt: skip
    name = "painting-00042.jpg"
    stimuli = ds.stimuli(name)
    stimuli[0].reviewed, stimuli[0].annotator = True, "ana"
    save_s, _ = timed(lambda: ds.write_painting(ds.image_path(name), name, stimuli))

    rows = [
        ("open: parse + validate everything", open_s),
        ("derive every painting's status", status_s),
        ("`emosem status` end to end (new process)", cli_s),
        ("save one painting (8 records)", save_s),
    ]
    print(f"{args.paintings} paintings × 8 emotions, annotations.json {size_mb:.1f} MB; {progress.summary_line()}")
    print(f"{'operation':<48} {'seconds':>8}")
    for label, seconds in rows:
        print(f"{label:<48} {seconds:8.3f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "paintings": args.paintings, "annotations_mb": round(size_mb, 2), "cpu": platform.processor() or platform.machine(),
        "machine": platform.platform(), "seconds": {label: round(s, 4) for label, s in rows},
    }, indent=1))  # fmt: skip
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

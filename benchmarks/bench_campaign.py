"""How a campaign of APOLO's size behaves: open, status, saving one painting.

Generates (once, kept in --root) a campaign of 5,000 paintings (APOLO has 4,718) × 8 emotions as
`emosem propose` leaves it: every pair an unreviewed draft with one explanation, and a fifth of
the paintings reviewed by one of three annotators, with their active time. Then times what a
person waits for: opening the dataset (the first time; again without the parse cache, with the
image-size cache only; again unchanged, with both; and with a journal), deriving every
painting's status, `emosem status` end to end (a fresh process), saving one painting (a journal
line), saving after another process saved (catching up replays its line only), skipping a
painting (metadata only), and folding the journal into annotations.json (compaction). Prints a
table with wall-clock and CPU seconds (on a shared machine CPU time is the steadier figure) and
writes ``benchmarks/results/bench_campaign.json``.

    python benchmarks/bench_campaign.py [--paintings 5000] [--root /tmp/emosem-campaign-5000]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from napari_emosem.campaign import campaign_progress, skip_painting, unskip_painting
from napari_emosem.data import PaintingUpdate, Stimulus, StimulusDataset
from napari_emosem.data.dataset import Compaction
from napari_emosem.data.parse_cache import ParseCache
from napari_emosem.data.validate import HeaderCache
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
    ds = StimulusDataset.open(root, create=True, compaction=Compaction(small=0, min_journal=1 << 40))
    batch = []
    for i in range(n):
        annotator = ANNOTATORS[i % 3] if i % 5 == 0 else None
        stimuli = []
        for emotion in EMOTIONS:
            mask = masks[int(rng.integers(64))]
            seconds = round(float(rng.uniform(5, 60)), 1) if annotator else 0.0
            stimuli.append(Stimulus(
                emotion, mask, [f"the {emotion} of painting {i} comes from its shapes and colours"],
                source="model:emosem-vit_b-1", score=round(float(rng.uniform(0.3, 0.9)), 4),
                reviewed=annotator is not None, annotator=annotator, annotation_seconds=seconds,
            ))  # fmt: skip
        batch.append(PaintingUpdate(templates[i % 8], f"painting-{i:05d}.jpg", stimuli))
        if len(batch) == 500:
            ds.write_paintings(batch)
            batch = []
    if batch:
        ds.write_paintings(batch)
    ds.compact()


def timed(fn, repeat: int = 3):
    """Best of ``repeat`` runs: (wall seconds, CPU seconds of this process and its children, result)."""
    best, best_cpu, result = float("inf"), float("inf"), None
    for _ in range(repeat):
        start, cpu = time.perf_counter(), _cpu()
        result = fn()
        best = min(best, time.perf_counter() - start)
        best_cpu = min(best_cpu, _cpu() - cpu)
    return best, best_cpu, result


def _cpu() -> float:
    import resource

    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


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
    StimulusDataset.open(root).compact()  # start from a complete annotations.json
    size_mb = (root / "annotations.json").stat().st_size / 1e6

    (root / HeaderCache.CACHE_FILE).unlink(missing_ok=True)
    ParseCache().file_for(root).unlink(missing_ok=True)

    def open_only(**options) -> None:  # nothing kept alive: its objects would slow the collector
        StimulusDataset.open(root, **options)

    first = timed(open_only, repeat=1)
    unparsed = timed(lambda: open_only(parse_cache=None))
    again = timed(lambda: StimulusDataset.open(root))
    ds = again[2]
    assert ds._from_cache
    status = timed(lambda: campaign_progress(ds))
    progress = status[2]
    cli = timed(lambda: subprocess.run(
        [sys.executable, "-m", "napari_emosem", "status", str(root)], check=True, capture_output=True))  # fmt: skip
    name, other = "painting-00042.jpg", "painting-00043.jpg"
    stimuli = ds.stimuli(name)
    stimuli[0].reviewed, stimuli[0].annotator = True, "ana"
    save = timed(lambda: ds.write_painting(ds.image_path(name), name, stimuli))
    elsewhere = StimulusDataset.open(root)

    def save_after_another() -> None:
        elsewhere.write_painting(None, other, ds.stimuli(other))  # another process saves first
        ds.write_painting(ds.image_path(name), name, stimuli)

    catch_up = timed(save_after_another)
    skip = timed(lambda: (skip_painting(ds, name, "a benchmark"), unskip_painting(ds, name)))
    journal_kb = ds.journal_bytes / 1e3
    with_journal = timed(lambda: StimulusDataset.open(root))
    compact = timed(lambda: (ds.write_painting(None, name, stimuli), ds.compact()), repeat=1)

    rows = [
        ("open: first time (every image header, parse, caches)", first),
        ("open again without the parse cache (image sizes)", unparsed),
        ("open again, unchanged (parse + image-size caches)", again),
        (f"open with {journal_kb:.0f} kB of journal (parse cache)", with_journal),
        ("derive every painting's status", status),
        ("`emosem status` end to end (new process)", cli),
        ("save one painting (8 records): a journal line", save),
        ("save after another process saved (replay 1 line)", (catch_up[0] / 2, catch_up[1] / 2, None)),
        ("skip + unskip a painting (metadata only, 2 lines)", skip),
        ("compaction: rewrite annotations.json", compact),
    ]
    print(
        f"{args.paintings} paintings × 8 emotions, annotations.json {size_mb:.1f} MB, journal {journal_kb:.0f} kB "
        f"before compaction; {progress.summary_line()}"
    )
    print(f"{'operation':<52} {'wall s':>8} {'CPU s':>8}")
    for label, (wall, cpu, _) in rows:
        print(f"{label:<52} {wall:8.3f} {cpu:8.3f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "paintings": args.paintings, "annotations_mb": round(size_mb, 2),
        "cpu": platform.processor() or platform.machine(),
        "machine": platform.platform(), "load_average": os.getloadavg(),
        "seconds": {label: {"wall": round(wall, 4), "cpu": round(cpu, 4)} for label, (wall, cpu, _) in rows},
    }, indent=1))  # fmt: skip
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

"""Does annotating in the queue's order teach the model faster than a random order?

A simulated campaign on generated paintings with known truth (``toy.py``): a pool to annotate and
a held-out set. Each run starts from the untrained ``tiny`` model and the same few randomly chosen
paintings; then, round by round, the queue (``campaign.annotate_next.queue_paintings``, as
``emosem queue`` runs it, with the model of the previous round) picks the next paintings, a
perfect annotator writes their truth into the campaign (a mask and an explanation for each emotion
present, "no stimulus" for the others: the paintings are then done), and the model is fine-tuned
on every reviewed pair from the previous round's checkpoint, as ``test_human_in_the_loop.py`` does.
After each round: held-out mIoU (mean IoU over the held-out paintings' (painting, emotion) pairs,
masks at the model's 0.5 threshold) and the per-emotion macro mean. ``random`` is a seeded shuffle
(it needs no model); every order sees the same pool, held-out set and first paintings for a given
seed, so the curves of one seed differ only by the order.

The pool is uneven, as real collections are: toy paintings put 2-4 emotions' shapes on a canvas
uniformly at random; here a painting is kept with probability min over its emotions of
``RARITY[e]``, so some emotions are rare (anger, disgust, fear, as in ArtEmis) and a random
order rarely meets them.

    python benchmarks/bench_queue.py [--orders uncertainty,random] [--seeds 0,1,2] [--rounds 4] ...

Writes ``benchmarks/results/bench_queue.json`` and the plot ``docs/images/queue.png``; see
``docs/queue.md`` for the results.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from napari_emosem.campaign.annotate_next import queue_paintings
from napari_emosem.campaign.queue import Candidate, rank
from napari_emosem.data import Stimulus, StimulusDataset
from napari_emosem.embedding_cache import EmbeddingCache
from napari_emosem.emotions import EMOTIONS
from napari_emosem.finetune import fine_tune
from napari_emosem.loading import load_predictor
from napari_emosem.toy import ToyPainting, toy_painting
from napari_emosem.training import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "bench_queue.json"
PLOT = ROOT / "docs" / "images" / "queue.png"
#: the chance that a painting holding this emotion's shape is kept in the pool (ArtEmis-like
#: imbalance: contentment and awe common, anger and disgust rare)
RARITY = {
    "amusement": 1.0, "awe": 1.0, "contentment": 1.0, "excitement": 0.7,
    "sadness": 0.7, "fear": 0.4, "disgust": 0.2, "anger": 0.12,
}  # fmt: skip
ANNOTATOR = "bench"


def uneven_toys(n: int, seed: int) -> list[ToyPainting]:
    """``n`` toy paintings where rare emotions are rare (see RARITY)."""
    rng = np.random.default_rng([seed, 7])
    out, k = [], 0
    while len(out) < n:
        toy = toy_painting(seed * 1_000_003 + k)
        k += 1
        if toy.masks and rng.random() < min(RARITY[e] for e in toy.masks):
            out.append(toy)
    return out


def annotate(dataset: StimulusDataset, name: str, toy: ToyPainting) -> None:
    """What a careful annotator leaves: the truth for every emotion of the campaign."""
    records = [
        Stimulus(e, toy.masks[e], [toy.explanations[e]], reviewed=True, annotator=ANNOTATOR)
        if e in toy.masks
        else Stimulus(e, no_stimulus=True, reviewed=True, annotator=ANNOTATOR)
        for e in EMOTIONS
    ]
    dataset.write_painting(toy.image, name, records)


def held_out_scores(predictor, held_out: list[ToyPainting]) -> dict:
    ious, by_emotion = [], defaultdict(list)
    for toy in held_out:
        predictor.set_image(toy.image)
        for p in predictor.propose(toy.emotions, explain=False):
            truth = toy.masks[p.emotion]
            iou = float((p.mask & truth).sum() / (p.mask | truth).sum())
            ious.append(iou)
            by_emotion[p.emotion].append(iou)
    return {
        "miou": float(np.mean(ious)),
        "macro_miou": float(np.mean([np.mean(v) for v in by_emotion.values()])),
        "per_emotion": {e: round(float(np.mean(by_emotion[e])), 4) for e in EMOTIONS if e in by_emotion},
    }


def run(order: str, seed: int, args, work: Path) -> dict:
    """One campaign: the learning curve of ``order`` on the pool and held-out set of ``seed``."""
    started = time.perf_counter()
    pool, held_out = uneven_toys(args.pool, seed), uneven_toys(args.held_out, 10_000 + seed)
    names = [f"pool-{i:03d}.png" for i in range(len(pool))]
    by_name = dict(zip(names, pool, strict=True))
    folder = work / f"seed{seed}-{order}"
    dataset = StimulusDataset.open(folder / "campaign", create=True)
    for name, toy in by_name.items():
        dataset.write_painting(toy.image, name, [])  # added, not started
    cache = EmbeddingCache(folder / "cache")
    first = [names[i] for i in np.random.default_rng([seed, 1]).permutation(len(names))[: args.start]]
    model, predictor, picked = "tiny", None, list(first)
    curve, seconds = [], {"queue": 0.0, "train": 0.0, "evaluate": 0.0}
    for round_ in range(args.rounds + 1):
        if round_ > 0:
            t = time.perf_counter()
            picked = next_paintings(order, dataset, predictor, args.batch, seed * 100 + round_)
            seconds["queue"] += time.perf_counter() - t
        for name in picked:
            annotate(dataset, name, by_name[name])
        dataset = StimulusDataset.open(dataset.root)
        t = time.perf_counter()
        config = TrainConfig(
            epochs=args.epochs, batch_size=8, val_fraction=0.0, patience=0,
            seed=seed * 100 + round_, validate_explanations=False,
        )  # fmt: skip
        events = list(fine_tune([dataset.root], model, run_dir=folder / f"round{round_}", config=config,
                                device="cpu", cache=cache))  # fmt: skip
        model = str(events[-1].metrics["result"].checkpoint.path)
        seconds["train"] += time.perf_counter() - t
        t = time.perf_counter()
        predictor = load_predictor(model, device="cpu", cache=cache)
        scores = held_out_scores(predictor, held_out)
        seconds["evaluate"] += time.perf_counter() - t
        annotated = sum(1 for p in dataset.paintings if dataset.stimuli(p))
        drawn = [s.emotion for p in dataset.paintings for s in dataset.stimuli(p) if not s.no_stimulus]
        rare = sum(e in ("anger", "disgust", "fear") for e in drawn)
        curve.append({"annotated": annotated, "pairs": len(drawn), "rare_pairs": rare, **scores})
        line = (f"  {order:<11} seed {seed} · {annotated:3d} annotated · mIoU {scores['miou']:.3f} "
                f"(macro {scores['macro_miou']:.3f}) · {len(drawn)} pairs, {rare} rare")  # fmt: skip
        print(line, file=sys.stderr, flush=True)
    if not args.keep:
        shutil.rmtree(folder, ignore_errors=True)
    return {"order": order, "seed": seed, "curve": curve, "seconds": {k: round(v, 1) for k, v in seconds.items()},
            "wall_seconds": round(time.perf_counter() - started, 1)}  # fmt: skip


def next_paintings(order: str, dataset: StimulusDataset, predictor, k: int, seed: int) -> list[str]:
    if order == "random":  # a seeded shuffle needs no model: skip scoring the pool
        open_ = [p for p in dataset.paintings if not dataset.stimuli(p)]
        entries = rank([Candidate(p, 0.0, np.zeros(1)) for p in open_], "random", top=k, seed=seed)
    else:
        entries = queue_paintings(dataset, predictor, order=order, top=k, seed=seed).entries
    return [e.painting.file_name for e in entries]


def summarise(runs: list[dict]) -> dict:
    """Per order: mean and standard deviation over seeds of the held-out mIoU at each number of
    annotated paintings, and of the area under the curve (the mean mIoU over the rounds after the
    shared first one); for each order but random, the paired difference to random (same seed,
    same pool and first paintings) at each point and in area: mean, min and max over seeds."""

    def spread(v: list[float]) -> dict:
        return {"mean": round(float(np.mean(v)), 4), "std": round(float(np.std(v, ddof=1)) if len(v) > 1 else 0.0, 4)}

    def span(v: list[float]) -> dict:
        return {"mean": round(float(np.mean(v)), 4), "min": round(min(v), 4), "max": round(max(v), 4)}

    def area(curve: list[dict]) -> float:
        return float(np.mean([p["miou"] for p in curve[1:]]))

    orders = sorted({r["order"] for r in runs})
    summary: dict = {}
    for order in orders:
        mine = [r for r in runs if r["order"] == order]
        points: dict[int, list[float]] = defaultdict(list)
        for r in mine:
            for point in r["curve"]:
                points[point["annotated"]].append(point["miou"])
        summary[order] = {
            "miou": {n: spread(v) for n, v in sorted(points.items())},
            "area": spread([area(r["curve"]) for r in mine]),
        }
    random_by_seed = {r["seed"]: r["curve"] for r in runs if r["order"] == "random"}
    for order in orders:
        if order == "random":
            continue
        deltas: dict[int, list[float]] = defaultdict(list)
        areas = []
        for r in runs:
            if r["order"] == order and r["seed"] in random_by_seed:
                base = random_by_seed[r["seed"]]
                for mine, theirs in zip(r["curve"], base, strict=True):
                    deltas[mine["annotated"]].append(mine["miou"] - theirs["miou"])
                areas.append(area(r["curve"]) - area(base))
        summary[f"{order} - random"] = {
            "miou": {n: span(v) for n, v in sorted(deltas.items())},
            "area": span(areas),
        }
    return summary


def plot(runs: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"uncertainty": "#c0392b", "random": "#7f8c8d", "diversity": "#2471a3"}
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), dpi=110)
    panels = (("miou", "held-out mIoU (pairs)"), ("macro_miou", "held-out mIoU (mean over emotions)"))
    for ax, (key, label) in zip(axes, panels, strict=True):
        for order in sorted({r["order"] for r in runs}):
            mine = [r for r in runs if r["order"] == order]
            x = [p["annotated"] for p in mine[0]["curve"]]
            y = np.array([[p[key] for p in r["curve"]] for r in mine])
            for row in y:  # every seed, faint
                ax.plot(x, row, color=colours.get(order, "k"), alpha=0.25, lw=1)
            label_ = f"{order} (mean of {len(mine)} seeds)"
            ax.plot(x, y.mean(0), color=colours.get(order, "k"), lw=2.2, marker="o", label=label_)
        ax.set_xlabel("annotated paintings")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend(loc="upper left", fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)


def title(settings: dict, seeds: int) -> str:
    return (f"tiny EmoSEM on uneven toy paintings: pool {settings['pool']}, held-out {settings['held_out']}, "
            f"{settings['epochs']} epochs per round, {seeds} seeds")  # fmt: skip


def replot(sources: list[Path], out: Path, path: Path) -> None:
    docs = [json.loads(p.read_text()) for p in sources]
    doc = docs[0]
    def same(settings: dict) -> dict:
        return {k: v for k, v in settings.items() if k not in ("seeds", "from_json")}

    if any(same(d["settings"]) != same(doc["settings"]) for d in docs):
        sys.exit("the result files were made with different settings (other than --seeds)")
    doc["runs"] = [r for d in docs for r in d["runs"]]
    doc["settings"]["seeds"] = ",".join(str(s) for s in sorted({r["seed"] for r in doc["runs"]}))
    doc["total_seconds"] = round(sum(d["total_seconds"] for d in docs), 1)
    doc["summary"] = summarise(doc["runs"])
    out.write_text(json.dumps(doc, indent=1) + "\n")
    plot(doc["runs"], path, title(doc["settings"], len({r["seed"] for r in doc["runs"]})))
    print(json.dumps(doc["summary"], indent=1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--orders", default="uncertainty,random", help="comma list of uncertainty, diversity, random")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--pool", type=int, default=40, help="paintings to choose from")
    ap.add_argument("--held-out", type=int, default=20, help="paintings the mIoU is measured on")
    ap.add_argument("--start", type=int, default=4, help="paintings annotated first, at random (all orders)")
    ap.add_argument("--batch", type=int, default=4, help="paintings annotated per round")
    ap.add_argument("--rounds", type=int, default=6, help="rounds after the first")
    ap.add_argument("--epochs", type=int, default=8, help="fine-tuning epochs per round")
    ap.add_argument("--work", default=None, help="folder for the campaigns and checkpoints (default: temporary)")
    ap.add_argument("--keep", action="store_true", help="keep each run's campaign and checkpoints")
    ap.add_argument(
        "--from-json", default=None, metavar="A.json[,B.json…]",
        help="only summarise and plot the runs of earlier result files (same settings, other seeds)",
    )
    ap.add_argument("--out", default=str(RESULTS))
    ap.add_argument("--plot", default=str(PLOT))
    args = ap.parse_args()
    if args.from_json:
        replot([Path(p) for p in args.from_json.split(",")], Path(args.out), Path(args.plot))
        return
    import torch

    torch.manual_seed(0)
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="bench-queue-"))
    orders, seeds = args.orders.split(","), [int(s) for s in args.seeds.split(",")]
    started = time.perf_counter()
    runs = []
    for seed in seeds:
        for order in orders:
            runs.append(run(order, seed, args, work))
    total = time.perf_counter() - started
    summary = summarise(runs)
    doc = {
        "settings": {k: v for k, v in vars(args).items() if k not in ("work", "out", "plot", "keep", "from_json")},
        "rarity": RARITY,
        "summary": summary,
        "runs": runs,
        "total_seconds": round(total, 1),
        "machine": {"cpu_count": __import__("os").cpu_count(), "platform": platform.platform(),
                    "torch_threads": torch.get_num_threads()},  # fmt: skip
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(doc, indent=1) + "\n")
    plot(runs, Path(args.plot), title(doc["settings"], len(seeds)))
    for name, points in summary.items():
        print(name, {n: v for n, v in points.items()})
    print(f"total {total / 60:.1f} min; wrote {args.out} and {args.plot}")
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

"""``emosem queue``: which paintings of a campaign to annotate next."""

from __future__ import annotations

import sys
from pathlib import Path

from ..devices import DEVICES


def register(subparsers) -> None:
    from ..campaign.queue import QueueOrder

    p = subparsers.add_parser(
        "queue",
        help="rank the paintings not done yet by how much annotating them would teach the model",
        description=(
            "Run the model on every painting of the campaign that is neither done nor skipped and "
            "rank them: 'uncertainty' puts first the paintings the model doubts most (its IoU head "
            "and the entropy of its masks, on the emotions still to review), 'diversity' picks "
            "paintings far from each other and from the done ones (core-set selection over the "
            "model's image features), 'random' is a seeded shuffle. Nothing is written to the "
            "dataset; see docs/queue.md for how the orders compare."
        ),
    )
    p.add_argument("dataset", metavar="DATASET", help="campaign (dataset) folder")
    p.add_argument(
        "--model",
        required=True,
        help="the model to ask: a checkpoint folder (the one you annotate with), starter, tiny, vit_b, …",
    )
    p.add_argument("--order", default=QueueOrder.UNCERTAINTY.value, choices=[o.value for o in QueueOrder])
    p.add_argument("--top", type=int, default=None, help="list only the first K paintings (default: all)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random order")
    p.add_argument("--json", metavar="PATH", default=None, help="also write the ranking as JSON to PATH")
    p.add_argument("--device", default="auto", choices=DEVICES)
    p.set_defaults(func=run)


def run(args) -> int:
    from .._io import atomic_write_json, check_writable_dir
    from ..campaign.annotate_next import check_top, queue_paintings
    from ..data import StimulusDataset
    from ..loading import load_predictor

    check_top(args.top)  # before any work: a typo costs nothing
    if args.json:  # a bad output path costs nothing
        check_writable_dir(Path(args.json).expanduser().resolve().parent)
    dataset = StimulusDataset.open(args.dataset)
    predictor = load_predictor(args.model, device=args.device)
    print(f"model: {predictor.description}", file=sys.stderr)

    def show(done: int, total: int, painting, error: str | None) -> None:
        if error is None:
            print(f"[{done}/{total}] {painting.file_name}", file=sys.stderr, flush=True)
        else:  # the error names the image file when it comes from reading it
            where = "" if painting.file_name in error else f"{painting.file_name}: "
            print(f"emosem queue: error: {where}{error}", file=sys.stderr, flush=True)

    report = queue_paintings(dataset, predictor, order=args.order, top=args.top, seed=args.seed, on_painting=show)
    shown = f"the first {len(report.entries)} of " if args.top is not None and args.top < report.candidates else ""
    print(
        f"{shown}{report.candidates} paintings to annotate, by {report.order.value} "
        f"({report.done} done, {report.skipped} skipped)"
    )
    width = max((len(e.painting.file_name) for e in report.entries), default=0)
    for entry in report.entries:
        line = f"{entry.rank:>4}  {entry.painting.file_name:<{width}}  uncertainty {entry.uncertainty:.3f}"
        if entry.novelty is not None:
            line += f"  novelty {entry.novelty:.3f}"
        print(line)
    if args.json:
        atomic_write_json(args.json, report.to_json(predictor.name))
    return 2 if report.failed else 0

"""``emosem agreement``: how much a dataset's annotators agree, pair by pair (docs/annotators.md)."""

from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "agreement",
        help="how much the annotators agree: mask IoU and presence (percent, Krippendorff's alpha)",
        description=(
            "Measure agreement over the (painting, emotion) pairs that at least two annotators "
            "reviewed with a mask or 'no stimulus' (the votes; adjudicated records and drafts are "
            "not votes): mask IoU (mean over pairs of the mean over annotator pairs that both drew "
            "a mask; per emotion; per annotator pair) and presence (the share of annotator pairs "
            "that agree whether the pair has a stimulus, and Krippendorff's alpha for it). "
            "Definitions: docs/annotators.md."
        ),
    )
    p.add_argument("dataset", metavar="DATASET", help="dataset folder")
    p.add_argument("--emotions", default="all", help="'all' (default) or a comma list, e.g. fear,awe")
    p.add_argument("--json", metavar="PATH", default=None, help="also write the figures as JSON to PATH")
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from .._io import atomic_write_json, check_writable_dir
    from ..annotators import agreement
    from ..data import StimulusDataset
    from ..emotions import parse_emotions

    emotions = parse_emotions(args.emotions)
    if args.json:  # a bad output path costs nothing
        check_writable_dir(Path(args.json).expanduser().resolve().parent)
    dataset = StimulusDataset.open(args.dataset)
    pairs = (pair.pair_votes() for pair in dataset.every_pair(emotions) if len(pair.votes) >= 2)
    report = agreement(pairs)
    doc = report.to_json()
    print(f"annotators: {', '.join(report.annotators) or '(none)'}")
    print(f"pairs with two or more annotators: {report.pairs_compared}")
    if not report.pairs_compared:
        print("nothing to compare: no (painting, emotion) pair has votes from two annotators")
    else:
        iou, presence = doc["mask_iou"], doc["presence"]
        print(f"mask IoU: {_figure(iou['mean'])} (mean over pairs where at least two annotators drew a mask)")
        for emotion, value in iou["per_emotion"].items():
            print(f"  {emotion:<12} {_figure(value)}")
        for names, value in iou["per_annotator_pair"].items():
            print(f"  {names:<24} {_figure(value)}")
        print(
            f"presence: {_figure(presence['percent'])} % of annotator pairs agree; "
            f"Krippendorff's alpha {_figure(presence['alpha'])}"
        )
    if args.json:
        atomic_write_json(args.json, doc)
    return 0


def _figure(value) -> str:
    return "n/a" if value is None else f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"

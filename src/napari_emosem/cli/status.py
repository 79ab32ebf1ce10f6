"""``emosem status``: how far a campaign has come, by painting and by (painting, emotion) pair."""

from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "status",
        help="a campaign's progress: paintings done, pairs reviewed, annotators' time",
        description=(
            "Count the campaign's paintings by status (not started, proposed, in progress, done, "
            "skipped) and its (painting, emotion) pairs (reviewed, unreviewed drafts, no stimulus), "
            "with each annotator's reviewed pairs and active time. Statuses are derived from the "
            "records; nothing is written to the dataset."
        ),
    )
    p.add_argument("dataset", metavar="DATASET", help="campaign (dataset) folder")
    p.add_argument("--json", metavar="PATH", default=None, help="also write the figures as JSON to PATH")
    p.set_defaults(func=run)


def run(args) -> int:
    from .._io import atomic_write_json, check_writable_dir
    from ..campaign import PaintingStatus, campaign_progress
    from ..campaign.status import format_duration
    from ..data import StimulusDataset

    if args.json:  # a bad output path costs nothing
        from pathlib import Path

        check_writable_dir(Path(args.json).expanduser().resolve().parent)
    dataset = StimulusDataset.open(args.dataset)
    progress = campaign_progress(dataset)
    doc = progress.to_json()
    print(progress.summary_line())
    print("paintings: " + ", ".join(f"{progress.count(s)} {s.value}" for s in PaintingStatus))
    pairs = doc["pairs"]
    print(
        f"pairs: {pairs['reviewed']} reviewed ({pairs['no_stimulus']} no stimulus), "
        f"{pairs['unreviewed_drafts']} unreviewed drafts, of {pairs['total']}"
    )
    for name, row in doc["annotators"].items():
        print(f"  {name}: {row['pairs']} pairs, {format_duration(row['seconds'])}")
    if args.json:
        atomic_write_json(args.json, doc)
    return 0

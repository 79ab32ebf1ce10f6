"""``emosem compact``: fold the journal into annotations.json, so that the file alone is the dataset."""

from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "compact",
        help="fold the journal of recent saves into annotations.json (before COCO tools read it)",
        description=(
            "Saving a painting appends a line to annotations.json.journal instead of rewriting the "
            "whole annotations.json; writers fold the journal in from time to time. Compact folds "
            "it in now, so that annotations.json alone is the complete dataset, e.g. before "
            "handing it to a COCO tool. Safe while others save: it takes the dataset's write lock."
        ),
    )
    p.add_argument("dataset", metavar="DATASET", help="dataset folder")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..data import StimulusDataset

    dataset = StimulusDataset.open(args.dataset)
    folded = dataset.journal_bytes
    if dataset.compact():
        print(f"{dataset.root / 'annotations.json'}: complete ({folded:,} bytes of journal folded in)")
    else:
        print(f"{dataset.root / 'annotations.json'}: already complete (no journal)")
    return 0

"""``emosem merge``: join annotators' copies of a campaign into one dataset."""

from __future__ import annotations

import sys


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "merge",
        help="join several copies of a campaign (one per annotator) into one dataset",
        description=(
            "Merge datasets into a new one, keeping every annotator's records. Paintings are "
            "matched by their pixels, not only by file name: the same bytes, or the same decoded "
            "pixels under another name or format, are one painting; the same name with other "
            "pixels is two (the later one is renamed name-2.ext). When two copies hold different "
            "records of the same annotator for a pair, the one modified last is kept and the "
            "conflict is listed, one line each. Unreviewed drafts of pairs somebody reviewed are "
            "dropped."
        ),
    )
    p.add_argument(
        "datasets", nargs="+", metavar="DATASET", help="dataset folders, in order of precedence for metadata"
    )
    p.add_argument("--out", required=True, metavar="DATASET", help="the merged dataset (a new or empty folder)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..data import StimulusDataset
    from ..data.merge import merge_datasets
    from ..errors import EmoSEMError

    if len(args.datasets) < 2:
        raise EmoSEMError("give at least two datasets to merge")
    sources = [StimulusDataset.open(path) for path in args.datasets]  # every one checked before any work
    report = merge_datasets(sources, args.out)
    for source, name, merged in report.matched_by_content:
        print(f"{source}: {name} shows the same pixels as {merged}: merged into it")
    for source, name, merged in report.renamed:
        print(f"{source}: {name} differs from the painting of that name: written as {merged}")
    for conflict in report.conflicts:
        print(f"emosem merge: conflict: {conflict.line()}", file=sys.stderr)
    print(
        f"merged {len(sources)} datasets into {args.out}: {report.paintings} paintings, {report.records} records"
        + (f", {len(report.conflicts)} conflict(s) (the newer record kept)" if report.conflicts else "")
    )
    return 0

"""``emosem add``: put paintings into a campaign without proposing (they are "not started")."""

from __future__ import annotations

import sys


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "add",
        help="add paintings to a campaign (dataset folder) without proposing",
        description=(
            "Copy image files (or every image directly inside the given folders) into the dataset "
            "folder DATASET as paintings with no records yet: the campaign's 'not started' paintings. "
            "Paintings the dataset already holds under the same file name are left exactly as they "
            "are. --emotions sets the emotions the campaign annotates (written to campaign.json)."
        ),
    )
    p.add_argument("dataset", metavar="DATASET", help="campaign (dataset) folder; created if needed")
    p.add_argument("images", nargs="+", metavar="IMAGE_OR_FOLDER", help="image files, or folders of images")
    p.add_argument(
        "--emotions",
        default=None,
        help="the campaign's emotions, 'all' or a comma list (default: keep the campaign's, else all)",
    )
    p.set_defaults(func=run)


def run(args) -> int:
    from ..campaign import CampaignSettings, add_paintings, campaign_progress, write_settings
    from ..data import StimulusDataset
    from ..emotions import parse_emotions
    from ..errors import EmoSEMError
    from ..propose import expand_inputs

    settings = CampaignSettings(parse_emotions(args.emotions)) if args.emotions else None
    paths = expand_inputs(args.images)
    if not paths:
        raise EmoSEMError(f"no images found in {', '.join(args.images)}")
    dataset = StimulusDataset.open(args.dataset, create=True)
    if settings is not None:
        write_settings(dataset.root, settings)

    def failed(path: str, reason: str) -> None:
        line = reason if reason.startswith(path) else f"{path}: {reason}"
        print(f"emosem add: error: {line}", file=sys.stderr)

    report = add_paintings(dataset, paths, on_failure=failed)
    print(
        f"added {len(report.added)} painting(s) to {dataset.root}"
        + (f"; {len(report.present)} already there" if report.present else "")
        + (f"; {len(report.failed)} failed" if report.failed else "")
    )
    print(campaign_progress(dataset).summary_line())
    return 2 if report.failed else 0

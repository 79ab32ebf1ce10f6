"""``emosem import-apolo``: turn the APOLO release (+ ArtEmis + WikiArt images) into a dataset."""

from __future__ import annotations

import argparse
import sys

DESCRIPTION = """\
Import APOLO's pixel-level stimulus maps into a stimulus dataset, so you can train and evaluate
on the real benchmark. APOLO (Chen, Garcia et al., 2024) is distributed through a request form;
its images are WikiArt paintings you download separately.

Each apolo.json row is a (painting, emotion) pair: painting is the WikiArt stem
(artist-name_title-words-year), artemis_id the 0-based row positions in ArtEmis's CSV (an
integer or a list; the first row's emotion is the pair's emotion unless the row has "emotion"),
split is val or test. The mask is MAPS/{painting}_{emotion}.npy (values >= 0.5 are stimulus; an
all-zero map becomes an explicit "no stimulus" record). The explanations are the ArtEmis rows of
artemis_id, then every other ArtEmis row of the same (painting, emotion). Images are looked for
as IMAGES/{painting}.jpg (any image suffix) or IMAGES/{art_style}/{painting}.jpg; paintings whose
image is missing are listed and skipped, the rest imported. Artist and title are parsed from the
WikiArt name, the style from ArtEmis's art_style. Paintings already in the dataset are updated.

Exit status: 0 when every usable row was imported (paintings whose image or map is missing are
listed and skipped), 2 when a map or row could not be used (each gets an error line; the rest is
imported) or nothing could be imported.
"""

EPILOG = """\
example:
  emosem import-apolo --apolo apolo/apolo.json --maps apolo/apolo_pixel_map \\
      --artemis artemis_dataset_release_v0.csv --images wikiart --out apolo-test --split test
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "import-apolo",
        help="import the APOLO benchmark (maps + ArtEmis explanations + WikiArt images)",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--apolo", required=True, metavar="JSON", help="APOLO's apolo.json")
    parser.add_argument(
        "--maps", required=True, metavar="DIR", help="folder of {painting}_{emotion}.npy maps"
    )
    parser.add_argument(
        "--artemis",
        metavar="CSV",
        help="ArtEmis's artemis_dataset_release_v0.csv (needed unless the rows carry 'emotion' "
        "and 'utterances')",
    )
    parser.add_argument("--images", required=True, metavar="DIR", help="folder of WikiArt images")
    parser.add_argument("--out", required=True, metavar="DATASET", help="dataset folder (created)")
    parser.add_argument(
        "--split", default="all", choices=("val", "test", "all"), help="which rows (default: all)"
    )
    parser.add_argument(
        "--annotator",
        default="APOLO",
        help="the name the imported (reviewed) records carry: their annotator slot (default: APOLO)",
    )
    parser.set_defaults(func=run)


def run(args) -> int:
    from ..data.apolo import import_apolo

    def progress(done: int, total: int) -> None:
        if total and (done == total or done % 200 == 0):
            print(f"  {done}/{total} paintings", file=sys.stderr, flush=True)

    report = import_apolo(
        args.apolo,
        args.maps,
        args.images,
        args.out,
        artemis_csv=args.artemis,
        split=args.split,
        progress=progress,
        annotator=args.annotator,
    )
    for line in report.lines():
        print(line)
    print(f"dataset: {args.out}")
    for line in report.unusable:
        print(f"emosem import-apolo: error: {line}", file=sys.stderr)
    if not report.pairs:
        print("emosem import-apolo: error: nothing was imported (see above)", file=sys.stderr)
    return 2 if report.unusable or not report.pairs else 0

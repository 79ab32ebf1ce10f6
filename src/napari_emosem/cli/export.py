"""``emosem export``: write a dataset in APOLO's layout, as ArtEmis-style CSV, or as PNG masks."""

from __future__ import annotations

import argparse

DESCRIPTION = """\
Export a stimulus dataset for other tools. Paintings are named by their file stem
("starry-night.jpg" -> "starry-night"); two paintings with the same stem are refused.

  apolo    DIR/apolo.json: a list with one row per (painting, emotion) record that has a mask,
           {"painting", "emotion", "split", "artemis_id" (only for pairs imported from APOLO),
           "utterances"}; split is the record's or painting's split, else "test".
           DIR/apolo_pixel_map/{painting}_{emotion}.npy: uint8 (H, W), 1 = stimulus, 0 = not
           (all zeros for "no stimulus" records). Text-only records are not written.
  artemis  DIR/artemis.csv with ArtEmis's columns art_style, painting, emotion, utterance,
           repetition: one row per explanation (including "something else"); art_style is the
           painting's style ("" if unknown), repetition the painting's number of rows.
  png      DIR/{painting}_{emotion}.png: 8-bit grayscale masks at the painting's size,
           255 = stimulus, 0 = not (all black for "no stimulus" records).
  coco     DIR/annotations.json and DIR/images/: a stimulus dataset (COCO, RLE masks) with one
           record per (painting, emotion) pair; DIR must be new or empty.

With several annotators per pair, a pair's record is its effective one (the adjudicated record,
else the one modified last). --consensus (apolo, coco) writes the annotators' consensus instead
(docs/annotators.md): apolo maps become float32 in [0, 1], per pixel the fraction of the pair's
annotators who marked it (an adjudicated pair: its adjudicated mask), with every annotator's
explanation as utterances; coco records hold the pixels marked by at least half the annotators
(or the adjudicated mask) and every annotator's explanation.

The dataset's journal is folded into its annotations.json first (emosem compact). Existing files
of the same names are replaced; other files in DIR are left alone.
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "export",
        help="export a dataset as APOLO maps, ArtEmis-style CSV or PNG masks",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("dataset", metavar="DATASET", help="dataset folder (holds annotations.json)")
    parser.add_argument("--format", required=True, choices=("apolo", "artemis", "png", "coco"), help="what to write")
    parser.add_argument(
        "--consensus",
        action="store_true",
        help="write the annotators' consensus of each pair (apolo, coco), not its effective record",
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (created)")
    parser.add_argument("--emotions", default="all", help="'all' (default) or a comma-separated list, e.g. fear,awe")
    parser.set_defaults(func=run)


def run(args) -> int:
    from ..data import StimulusDataset
    from ..data.export import CONSENSUS_FORMATS, export_dataset
    from ..emotions import parse_emotions
    from ..errors import EmoSEMError

    emotions = parse_emotions(args.emotions)
    if args.consensus and args.format not in CONSENSUS_FORMATS:
        raise EmoSEMError(f"--consensus writes {' or '.join(CONSENSUS_FORMATS)}, not {args.format}")
    dataset = StimulusDataset.open(args.dataset)
    _compact(dataset)
    report = export_dataset(dataset, args.format, args.out, emotions=emotions, consensus=args.consensus)
    print(f"wrote {report.description}")
    return 0


def _compact(dataset) -> None:
    """Fold the journal into annotations.json before the dataset leaves for other tools; a
    dataset that cannot be written (a read-only share) is exported as it is."""
    import sys

    from ..errors import DatasetError

    if not dataset.journal_bytes:
        return
    try:
        dataset.compact()
    except DatasetError as exc:
        print(f"emosem export: note: annotations.json not compacted ({exc}); the export is whole all the same",
              file=sys.stderr)  # fmt: skip

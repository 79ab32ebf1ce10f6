"""``emosem evaluate``: score a model or a dataset of predictions against ground truth."""

from __future__ import annotations

import argparse
import sys

from ..config import models_help

DESCRIPTION = """\
Compare predictions with a ground-truth stimulus dataset and print a table (overall and per
emotion). Masks are scored by the APOLO protocol (min-max normalise the predicted map, resize
bilinearly to the mask, threshold at 0.35, foreground IoU; mean IoU, Acc@0.25, Acc@0.5; pairs
with an empty ground-truth mask skipped; a ground-truth mask without a prediction scores 0).
Explanations are scored with pycocoevalcap (BLEU-1..4, METEOR, ROUGE-L, CIDEr) against every
reference explanation of the pair; this needs Java (apt install default-jre-headless).

With several annotators per pair (docs/annotators.md), a pair's truth is its adjudicated mask,
else the majority of its annotators' masks, and every annotator's explanation is a reference; the
table then adds the human ceiling (each annotator scored against the others' consensus, the same
way) and the model on the same pairs.

Predictions come from a model (--model: it proposes every ground-truth pair, and its soft maps
are what the protocol normalises) or from another dataset of the same paintings
(--predictions: a model's saved proposals, or a second annotator, which measures agreement).
"""

EPILOG = """\
The --json file holds
  {"segmentation": {"miou", "acc_25", "acc_50", "pairs", "per_emotion": {...}},
   "explanation": {"bleu_1", "bleu_2", "bleu_3", "bleu_4", "meteor", "rouge_l", "cider",
                   "per_emotion": {...}}}
with values as fractions (the table prints them ×100) and null where nothing was measured; with
two or more annotators on some pair, also
  "human": {"annotators", "pairs", "segmentation": {"miou", "acc_25", "acc_50", "scores",
            "per_emotion", "per_annotator"}, "explanation": {"bleu_1", ..., "cider", "scores",
            "per_annotator"}, "model": {"segmentation": {...}, "explanation": {...}}}

examples:
  emosem evaluate --data apolo-test --model my-checkpoint --json results.json
  emosem evaluate --data annotator-a --predictions annotator-b --emotions fear,sadness
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="score a model or saved predictions against a ground-truth dataset",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--data", required=True, metavar="GT", help="ground-truth dataset folder")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--model",
        metavar="MODEL",
        help=models_help(),
    )
    source.add_argument(
        "--predictions", metavar="PRED", help="dataset folder of predictions for the same paintings"
    )
    parser.add_argument("--json", metavar="OUT", help="also write the metrics to this JSON file")
    parser.add_argument(
        "--emotions",
        default="all",
        help="emotions to score: 'all' (default) or a comma-separated list, e.g. fear,awe",
    )
    parser.add_argument(
        "--device", default="auto", help="with --model: auto (default), cpu, cuda, cuda:1, mps"
    )
    parser.add_argument(
        "--no-explanations",
        action="store_true",
        help="score masks only (no Java needed; explanation metrics are null)",
    )
    parser.set_defaults(func=run)


def run(args) -> int:
    from .._io import atomic_write_json, check_writable_file, describe_os_error
    from ..data import StimulusDataset
    from ..emotions import parse_emotions
    from ..errors import EmoSEMError
    from ..evaluate import (
        evaluate_report,
        format_table,
        predictions_from_dataset,
        predictions_from_predictor,
    )
    from ..metrics import require_java

    emotions = parse_emotions(args.emotions)
    explain = not args.no_explanations
    if args.json:
        check_writable_file(args.json)  # before the work, not after it
    if explain:
        require_java()  # fail before a long model run, not after
    truth = StimulusDataset.open(args.data)
    if args.predictions:
        predicted = StimulusDataset.open(args.predictions)
        predictions = predictions_from_dataset(predicted, truth, emotions=emotions)
    else:
        predictor = _load_predictor(args.model, args.device)

        def progress(index, total, painting):
            print(f"[{index + 1}/{total}] {painting.file_name}", file=sys.stderr, flush=True)

        predictions = predictions_from_predictor(
            predictor, truth, emotions=emotions, explain=explain, progress=progress
        )
    report = evaluate_report(truth, predictions, emotions=emotions, explanations=explain)
    if args.json:  # before printing, so that a closed pipe (| head) cannot lose the results
        try:
            atomic_write_json(args.json, report.metrics)
        except OSError as exc:
            print(format_table(report))  # the work is not lost
            raise EmoSEMError(f"{args.json}: cannot write the metrics ({describe_os_error(exc)})") from None
    print(format_table(report))
    if args.json:
        print(f"wrote {args.json}")
    return 0


def _load_predictor(spec: str, device: str):
    from ..errors import EmoSEMError

    try:
        from ..loading import load_predictor
    except ImportError:
        raise EmoSEMError(
            "this installation cannot load models (napari_emosem.loading is missing); evaluate "
            "saved predictions with --predictions instead"
        ) from None
    return load_predictor(spec, device=device)

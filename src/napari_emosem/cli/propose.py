"""``emosem propose``: masks, explanation drafts and overlays for paintings, into a dataset folder."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from ..config import models_help
from ..devices import DEVICES
from ..errors import EmoSEMError
from ..precision import PRECISIONS

DEFAULT_OUT = "emosem-proposals"
DESCRIPTION = (
    "For each painting, propose one stimulus mask and one explanation draft per emotion and "
    "write them into a stimulus dataset folder (annotations.json + images/, COCO with RLE "
    "masks), plus a contact sheet per painting in OUT/overlays/. Re-running updates the "
    "proposed emotions in place and leaves the painting's other records alone; a record a "
    "person wrote, accepted, edited or marked 'no stimulus' is kept unless "
    "--overwrite-reviewed. With --pending instead of images: propose again for every "
    "painting of the campaign OUT that is neither done nor skipped (after fine-tuning: "
    "the new model's drafts replace the older ones; pairs a person reviewed are not "
    "touched). Works offline: the default 'starter' model needs no weights. "
    "Under `torchrun --nproc_per_node N` each process takes every N-th painting."
)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "propose",
        help="propose stimulus masks and explanation drafts for paintings",
        description=DESCRIPTION,
    )
    p.add_argument("images", nargs="*", metavar="IMAGE", help="image files, or folders of images")
    p.add_argument(
        "--pending",
        action="store_true",
        help="propose for the paintings of the dataset OUT that are not done (nor skipped), for the "
        "emotions nobody has reviewed yet, instead of for IMAGES",
    )
    p.add_argument(
        "--emotions",
        default=None,
        help="'all' or a comma list, e.g. fear,awe (default: all; with --pending the campaign's emotions)",
    )
    p.add_argument(
        "--model",
        default="starter",
        help=models_help(),
    )
    p.add_argument("--out", default=DEFAULT_OUT, help=f"dataset folder to write (default: ./{DEFAULT_OUT})")
    p.add_argument("--device", default="auto", choices=DEVICES)
    p.add_argument(
        "--precision",
        default="auto",
        choices=PRECISIONS,
        help="EmoSEM's arithmetic on a CPU: bf16 encoder/decoder and int8 language model where this "
        "machine runs them faster (auto, measured once), always (bf16), or never (fp32)",
    )
    p.add_argument(
        "--batch-size",
        default="auto",
        help="paintings per encoder call, read by worker processes, drafts batched across them "
        "(EmoSEM; auto: by free GPU memory on CUDA, 1 on a CPU)",
    )
    p.add_argument("--sam-checkpoint", default=None, help="local SAM .pth to use instead of the cached/downloaded one")
    p.add_argument("--lm", default=None, help="language model id or folder to use instead of the model's own")
    p.add_argument("--beams", type=int, default=1, help="beam width for explanations (1 = greedy)")
    p.add_argument("--max-tokens", type=int, default=None, help="token limit of an explanation draft")
    p.add_argument("--no-overlay", action="store_true", help="do not write overlay contact sheets")
    p.add_argument(
        "--overwrite-reviewed",
        action="store_true",
        help="replace records a person reviewed (wrote, accepted, edited, marked no stimulus) with "
        "the new proposals; without it they are kept",
    )
    p.add_argument("--view", action="store_true", help="open the result in napari afterwards (needs a display)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..propose import ProposeReport, propose_paintings, propose_pending

    emotions, batch_size = _checked(args)
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    if args.pending:
        dataset, todo = _pending(args, rank, world)
    else:
        out, paths = _images(args, rank, world)
    predictor = _predictor(args)
    if args.pending:
        out = dataset.root
        report = ProposeReport()
        for step in propose_pending(dataset, predictor, overlays=not args.no_overlay, paintings=todo, report=report):
            _show(step.file_name, step.proposals, step.error)
        what = f"{len(report.written)} open painting(s) of {out}"
    else:
        if batch_size is None:
            from ..collection import auto_batch_size

            batch_size = auto_batch_size(getattr(predictor, "device", "cpu"))
        report = propose_paintings(
            paths, predictor, emotions, out, overlays=not args.no_overlay, overwrite_reviewed=args.overwrite_reviewed,
            on_painting=lambda path, p, e: _show(str(path), p, e), batch_size=batch_size,
        )  # fmt: skip
        what = f"{len(report.written)} painting(s) × {len(emotions)} emotion(s) to {out}"
    _summarise(report, what)
    if args.view and report.written and (rank == 0):
        _view(out, args)
    return 2 if report.failed else 0


def _checked(args) -> tuple[list[str], int | None]:
    """The emotions and batch size; everything a typo can break is checked before any work."""
    from .. import parse_emotions

    emotions = parse_emotions(args.emotions or "all")
    if args.beams < 1:
        raise EmoSEMError("--beams must be at least 1")
    if args.max_tokens is not None and args.max_tokens < 1:
        raise EmoSEMError(
            f"--max-tokens {args.max_tokens}: give at least 1 (or leave it out for the model's own limit)"
        )
    batch_size = _batch_size(args.batch_size)
    if args.pending and args.images:
        raise EmoSEMError("give IMAGES or --pending, not both (add new paintings with `emosem add` first)")
    if not args.pending and not args.images:
        raise EmoSEMError("give the images to propose for, or --pending to propose for the campaign's open paintings")
    return emotions, batch_size


def _images(args, rank: int, world: int) -> tuple[Path, list[Path]]:
    """The output folder (checked writable) and this process's share of the image files."""
    from .._io import check_writable_dir
    from ..propose import expand_inputs, shard

    out = check_writable_dir(args.out)
    paths = expand_inputs(args.images)
    if not paths:
        raise EmoSEMError(f"no images found in {', '.join(args.images)}")
    if world > 1:
        paths = shard(paths, rank, world)
    return out, paths


def _predictor(args):
    from ..loading import load_predictor

    predictor = load_predictor(
        args.model,
        device=args.device,
        sam_checkpoint=args.sam_checkpoint,
        language_model=args.lm,
        num_beams=args.beams,
        max_new_tokens=args.max_tokens,
        precision=args.precision,
    )
    print(f"model: {predictor.description}", file=sys.stderr)
    return predictor


def _show(name: str, proposals, error) -> None:
    """One painting's proposals on stdout, or its error as one line on stderr."""
    if error is not None:
        line = error if error.startswith(name) else f"{name}: {error}"
        print(f"emosem propose: error: {line}", file=sys.stderr)
        return
    print(Path(name).name)
    for p in proposals:
        print(f"  {p.emotion:<12} score {p.score:4.2f}  area {100 * p.mask.mean():5.1f}%  {p.explanation}")


def _summarise(report, what: str) -> None:
    print(f"wrote {what}" + (f"; {len(report.failed)} failed" if report.failed else ""), file=sys.stderr)
    if report.kept_reviewed:
        print(
            f"kept {len(report.kept_reviewed)} reviewed records (use --overwrite-reviewed to replace them)",
            file=sys.stderr,
        )
    if report.replaced_reviewed:
        print(f"replaced {len(report.replaced_reviewed)} reviewed records", file=sys.stderr)


def _pending(args, rank: int, world: int):
    """The campaign OUT and this process's share of its open paintings (for --pending)."""
    from .. import parse_emotions
    from ..data import StimulusDataset
    from ..propose import pending_paintings, shard

    if args.overwrite_reviewed:
        raise EmoSEMError("--pending never touches reviewed pairs; --overwrite-reviewed works with IMAGES only")
    dataset = StimulusDataset.open(args.out)  # it must exist: --pending proposes for its paintings
    emotions = None if args.emotions is None else parse_emotions(args.emotions)
    todo = pending_paintings(dataset, emotions)
    if world > 1:
        todo = shard(todo, rank, world)
    if not todo:
        print(f"nothing to propose: every painting of {dataset.root} is done or skipped", file=sys.stderr)
    return dataset, todo


def _batch_size(value: str) -> int | None:
    """--batch-size as a number, or None for auto."""
    if value == "auto":
        return None
    try:
        size = int(value)
    except ValueError:
        size = 0
    if size < 1:
        raise EmoSEMError(f"--batch-size must be 'auto' or a positive number, not {value!r}")
    return size


def _view(out: Path, args) -> None:
    try:
        from .view import check_display, open_viewer
    except ImportError:  # the plugin is optional for the core
        return
    try:
        check_display()
    except EmoSEMError as exc:
        print(f"emosem propose: not opening napari: {exc}", file=sys.stderr)
        return
    import napari

    open_viewer([str(out)], model=args.model, device=args.device, dataset=str(out))
    napari.run()

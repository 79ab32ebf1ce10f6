"""``emosem train``: fine-tune EmoSEM on stimulus datasets (reviewed corrections) via ``fine_tune``."""

from __future__ import annotations

import sys

from ..config import DEFAULT_BASE, PRESETS, about_model
from ..devices import DEVICES


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train",
        help="fine-tune EmoSEM on annotated datasets",
        description=(
            "Train the emotional prompt, emotion projector, mask decoder and prefix adapter (the image "
            "encoder stays frozen when pretrained and each painting is encoded once; the language model "
            "stays frozen unless --train-lm; the tiny preset trains everything from scratch) on the "
            "reviewed (painting, emotion) pairs with stimulus masks in the given datasets: written by a "
            "person, or a proposal a person accepted or edited. Unreviewed model drafts are left out "
            "unless --include-unreviewed. Validation is split by painting. OUT becomes a run folder: "
            "OUT/best is the best checkpoint (use it as --model OUT), OUT/state lets --resume continue "
            "a killed run, OUT/log.jsonl has one line per epoch. Under `torchrun --nproc_per_node N` it "
            "trains with DistributedDataParallel."
        ),
    )
    bases = "; ".join(f"{name}: {about_model(name)}" for name in PRESETS)
    p.add_argument("--data", action="append", required=True, metavar="DATASET", help="dataset folder (repeatable)")
    p.add_argument(
        "--base",
        default=DEFAULT_BASE,
        help=f"what to start from: a preset ({bases}) or a checkpoint folder to continue from",
    )
    p.add_argument("--out", required=True, help="run folder to write")
    p.add_argument("--epochs", type=int, default=20, help="at most this many passes over the training paintings")
    p.add_argument(
        "--lr", type=float, default=None, help="peak learning rate (none given: 2e-3 for tiny, 1e-4 otherwise)"
    )
    p.add_argument("--batch-size", type=int, default=8, help="(painting, emotion) pairs per step and process")
    p.add_argument("--val-fraction", type=float, default=0.15, help="share of paintings held out for validation")
    p.add_argument(
        "--patience", type=int, default=5, help="epochs without better validation mIoU before stopping (0: off)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the split, the batch order and new weights")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last finished epoch")
    p.add_argument(
        "--include-unreviewed",
        action="store_true",
        help="also train on model drafts nobody reviewed (by default only reviewed pairs: accepted, edited or "
        "written by a person)",
    )
    p.add_argument("--device", default="auto", choices=DEVICES, help="where to train (auto: a GPU when there is one)")
    p.add_argument("--train-lm", action="store_true", help="also fine-tune the language model's own weights")
    p.add_argument(
        "--sam-checkpoint", default=None, help="local SAM .pth instead of the cached/downloaded one (`emosem weights`)"
    )
    p.add_argument("--lm", default=None, help="language model id or folder instead of the base's own")
    p.add_argument(
        "--no-text-metrics", action="store_true", help="skip drafting explanations (BLEU-4) during validation"
    )
    p.set_defaults(func=run)


def run(args) -> int:
    from ..finetune import fine_tune
    from ..reporting import result_line
    from ..training import TrainConfig, distributed

    config = TrainConfig(  # checks every setting before anything is read or built
        epochs=args.epochs,
        lr=args.lr,
        batch_size=args.batch_size,
        val_fraction=args.val_fraction,
        seed=args.seed,
        patience=args.patience,
        validate_explanations=not args.no_text_metrics,
    )
    main = distributed.from_env().is_main
    printer = _Printer(main)
    result = None
    try:
        for event in fine_tune(
            args.data,
            args.base,
            run_dir=args.out,
            config=config,
            device=args.device,
            resume=args.resume,
            include_unreviewed=args.include_unreviewed,
            sam_checkpoint=args.sam_checkpoint,
            language_model=args.lm,
            train_lm=args.train_lm,
        ):
            if event.stage == "done":
                result = event.metrics["result"]
            printer(event)
    finally:
        printer.close()
        distributed.shutdown(distributed.from_env())
    if main:
        if result is None or result.checkpoint is None:
            print("no checkpoint was written", file=sys.stderr)
            return 1
        print(
            f"best checkpoint: {result.checkpoint.path} ({result.checkpoint.id}) after {result_line(result)}"
            f"\nuse it: emosem propose IMAGE --model {args.out}",
            file=sys.stderr,
        )
    return 0


class _Printer:
    """Progress on stderr for rank 0: one bar over the whole run (training steps, validation
    drafts and caption metrics alike), one summary line per epoch."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.bar = None

    def __call__(self, event) -> None:
        from ..reporting import epoch_line, progress_line

        if not self.enabled or event.stage == "done":
            return
        if event.stage in ("data", "message"):
            self._write(event.message)
            return
        if event.stage == "epoch":
            self._write(epoch_line(event))
        if event.total:
            if self.bar is None:
                from tqdm import tqdm

                self.bar = tqdm(total=event.total, leave=False, file=sys.stderr, dynamic_ncols=True)
            self.bar.set_description_str(progress_line(event), refresh=False)
            self.bar.update(event.done - self.bar.n)

    def _write(self, line: str) -> None:
        if self.bar is not None:
            self.bar.write(line, file=sys.stderr)
        else:
            print(line, file=sys.stderr)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

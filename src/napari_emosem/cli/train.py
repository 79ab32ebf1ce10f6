"""``emosem train``: fine-tune EmoSEM on stimulus datasets (corrected proposals)."""

from __future__ import annotations

import sys
from pathlib import Path

from ..errors import TrainingError


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train",
        help="fine-tune EmoSEM on annotated datasets",
        description=(
            "Train the emotional prompt, emotion projector, mask decoder and prefix adapter (the image "
            "encoder stays frozen when pretrained and each painting is encoded once; the language model "
            "stays frozen unless --train-lm; the tiny preset trains everything from scratch) on the "
            "(painting, emotion) pairs with stimulus masks in the given datasets. Validation is split by "
            "painting. OUT becomes a run folder: OUT/best is the best checkpoint (use it as --model OUT), "
            "OUT/state lets --resume continue a killed run, OUT/log.jsonl has one line per epoch. "
            "Under `torchrun --nproc_per_node N` it trains with DistributedDataParallel."
        ),
    )
    p.add_argument("--data", action="append", required=True, metavar="DATASET", help="dataset folder (repeatable)")
    p.add_argument("--base", required=True, help="tiny, vit_b, vit_l, vit_h, or a checkpoint folder to continue from")
    p.add_argument("--out", required=True, help="run folder to write")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--lr", type=float, default=None, help="peak learning rate (default 2e-3 for tiny, 1e-4 otherwise)")
    p.add_argument("--batch-size", type=int, default=8, help="(painting, emotion) pairs per step and process")
    p.add_argument("--val-fraction", type=float, default=0.15, help="share of paintings held out for validation")
    p.add_argument("--patience", type=int, default=5, help="epochs without better validation mIoU before stopping (0: off)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last finished epoch")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"))
    p.add_argument("--train-lm", action="store_true", help="also fine-tune the language model's own weights")
    p.add_argument("--sam-checkpoint", default=None, help="local SAM .pth instead of the cached/downloaded one")
    p.add_argument("--lm", default=None, help="language model id or folder instead of the base's own")
    p.add_argument("--no-text-metrics", action="store_true", help="skip drafting explanations (BLEU-4) during validation")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..devices import resolve_device
    from ..finetune import load_base
    from ..training import TrainConfig, Trainer, from_datasets

    data = from_datasets(args.data)  # validates the datasets before any model is built
    model, identity, parent = load_base(
        args.base, seed=args.seed, sam_checkpoint=args.sam_checkpoint, language_model=args.lm, train_lm=args.train_lm
    )
    config = TrainConfig(
        epochs=args.epochs,
        lr=args.lr,
        batch_size=args.batch_size,
        val_fraction=args.val_fraction,
        seed=args.seed,
        patience=args.patience,
        validate_explanations=not args.no_text_metrics,
    )
    out = Path(args.out)
    if not args.resume and (out / "state").exists():
        raise TrainingError(f"{out} already holds a run; add --resume to continue it, or choose another --out")
    trainer = Trainer(
        model, identity, data, config, out, parent=parent, device=resolve_device(args.device), resume=args.resume
    )
    main = trainer.dist.is_main
    if main:
        print(
            f"training {data.n_pairs} pairs on {len(data.paintings)} paintings from {model.config.name}"
            + (f" (continuing {parent.label})" if parent else "")
            + f" on {trainer.device}"
            + (f" × {trainer.dist.world_size} processes" if trainer.dist.enabled else ""),
            file=sys.stderr,
        )
    result = trainer.fit(_Printer(main))
    if main:
        if result.checkpoint is None:
            print("no checkpoint was written", file=sys.stderr)
            return 1
        print(
            f"best checkpoint: {result.checkpoint.path} ({result.checkpoint.id}); validation before "
            f"{_m(result.before)}, after {_m(result.after)}\nuse it: emosem propose IMAGE --model {out}",
            file=sys.stderr,
        )
    from ..training import distributed

    distributed.shutdown(trainer.dist)
    return 0


def _m(metrics: dict) -> str:
    if not metrics or metrics.get("miou") is None:
        return "n/a (no validation paintings)"
    bleu = metrics.get("bleu_4")
    return f"mIoU {metrics['miou']:.3f}, Acc@0.5 {metrics['acc_50']:.3f}" + (f", BLEU-4 {bleu:.3f}" if bleu is not None else "")


class _Printer:
    """Progress on stderr for rank 0: a tqdm bar per epoch, one summary line per epoch."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.bar = None

    def __call__(self, event) -> None:
        if not self.enabled:
            return
        from tqdm import tqdm

        if event.stage == "train":
            if self.bar is None:
                self.bar = tqdm(total=event.steps, desc=f"epoch {event.epoch}/{event.epochs}", leave=False, file=sys.stderr)
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{event.losses.get('loss', 0):.3f}")
        elif event.stage == "epoch":
            if self.bar is not None:
                self.bar.close()
                self.bar = None
            l = event.losses
            print(
                f"epoch {event.epoch}/{event.epochs}  loss {l.get('loss', 0):.3f} (bce {l.get('mask_bce', 0):.3f}, "
                f"dice {l.get('mask_dice', 0):.3f}, text {l.get('text', 0):.3f})  val {_m(event.metrics)}",
                file=sys.stderr,
            )
        elif event.stage == "message":
            print(event.message, file=sys.stderr)

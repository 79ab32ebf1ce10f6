"""The training loop: corrections in, a better checkpoint out.

``Trainer.run()`` is a generator of :class:`TrainEvent` (the widget's worker yields them, so Cancel
takes effect between steps; the CLI draws a progress bar from them). Per epoch: losses, then on the
validation paintings mean IoU / Acc@0.5 by the APOLO protocol and BLEU-4 of the drafts; the best
epoch by validation mIoU is saved as ``<run>/best`` with its provenance; early stopping after
``patience`` epochs without improvement; ``<run>/state`` lets a killed run resume where its last
finished epoch ended, with the same result as an uninterrupted run (every epoch reseeds from
``(seed, epoch)``).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from .._io import atomic_write_text
from ..annotators.consensus import majority_mask
from ..checkpoint import CheckpointInfo, save_checkpoint
from ..embedding_cache import EmbeddingCache
from ..emosem_predictor import encoder_key
from ..errors import TrainingError
from ..metrics import apolo_iou, summarise_ious
from ..modeling.transforms import lowres_to_painting
from . import distributed
from .batches import collate, epoch_batches
from .examples import TrainingData, split_by_painting
from .features import PaintingFeatures, prepare
from .state import has_state, load_state, read_state_info, save_state

BEST = "best"
LOG = "log.jsonl"


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 20
    #: None: 2e-3 when everything learns from scratch (tiny), 1e-4 on a pretrained encoder
    lr: float | None = None
    #: (painting, emotion) pairs per step and process (whole paintings: may go a little over)
    batch_size: int = 8
    val_fraction: float = 0.15
    seed: int = 0
    #: epochs without a better validation mIoU before stopping (0: never stop early)
    patience: int = 5
    weight_decay: float = 0.01
    warmup_fraction: float = 0.1
    grad_clip: float = 1.0
    #: share of batches that also get 1–3 simulated clicks, so that click refinement is learned
    click_fraction: float = 0.25
    #: draft explanations during validation and score BLEU-4 (needs Java)
    validate_explanations: bool = True

    def __post_init__(self) -> None:
        # Checked here, before any data is read or model built, for the CLI and the widget alike.
        # (The names are the CLI's options; the widget's fields say the same.)
        def bad(option: str, value, rule: str):
            raise TrainingError(f"{option} {value!r}: {rule}")

        def number(value) -> bool:
            return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)

        def whole(value) -> bool:
            return isinstance(value, int) and not isinstance(value, bool)

        if not whole(self.epochs) or self.epochs < 1:
            bad("--epochs", self.epochs, "give a whole number of epochs, at least 1")
        if self.lr is not None and not (number(self.lr) and self.lr > 0):
            bad("--lr", self.lr, "the learning rate must be a positive number, e.g. 1e-4")
        if not whole(self.batch_size) or self.batch_size < 1:
            bad("--batch-size", self.batch_size, "give at least 1 pair per step")
        if not (number(self.val_fraction) and 0 <= self.val_fraction < 1):
            bad("--val-fraction", self.val_fraction, "the share of paintings held out must be in [0, 1)")
        if not whole(self.seed) or not 0 <= self.seed < 2**63:
            bad("--seed", self.seed, "the seed must be a whole number ≥ 0")
        if not whole(self.patience) or self.patience < 0:
            bad("--patience", self.patience, "give a number of epochs ≥ 0 (0 turns early stopping off)")
        if not (number(self.weight_decay) and self.weight_decay >= 0):
            bad("weight_decay", self.weight_decay, "must be a number ≥ 0")
        if not (number(self.grad_clip) and self.grad_clip >= 0):
            bad("grad_clip", self.grad_clip, "must be a number ≥ 0 (0: no clipping)")
        for name in ("warmup_fraction", "click_fraction"):
            value = getattr(self, name)
            if not (number(value) and 0 <= value <= 1):
                bad(name, value, "must be a share in [0, 1]")

    def learning_rate(self, model) -> float:
        if self.lr is not None:
            return self.lr
        return 2e-3 if not model.config.encoder.frozen else 1e-4


@dataclass
class TrainEvent:
    """One step of progress.

    ``stage``: "data" (from :func:`~napari_emosem.finetune.fine_tune`: what is trained on, where),
    "message", "prepare" (a painting encoded), "validate" (a validation painting proposed and
    drafted), "metrics" (scoring the drafts: BLEU-4), "train" (an optimiser step), "epoch" (an
    epoch ended: losses and validation metrics), "done" (``metrics["result"]`` is the
    :class:`TrainResult`). ``step``/``steps`` count within the stage; ``done``/``total`` count
    the whole run (preparation, validation before training, and per epoch its steps, validation
    paintings and caption metrics), so a progress bar never stalls at 100% while validation runs.
    """

    stage: str
    epoch: int = 0
    epochs: int = 0
    step: int = 0
    steps: int = 0
    losses: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    message: str = ""
    done: int = 0
    total: int = 0
    #: the paintings this step trained on or validated (keys: "<dataset>/<file name>")
    paintings: tuple[str, ...] = ()
    #: on "data" events: the run folder
    run_dir: str = ""


@dataclass
class TrainResult:
    checkpoint: CheckpointInfo | None
    before: dict
    after: dict
    history: list[dict]
    epochs_run: int
    stopped_early: bool
    #: what was trained on (:attr:`TrainingData.summary`: pairs, paintings, unreviewed drafts)
    data: dict = field(default_factory=dict)


def check_resumable(run_dir: Path | None, data: TrainingData, config: TrainConfig) -> None:
    """Raise :class:`TrainingError` unless ``run_dir`` holds a finished epoch of the same run:
    the same data, seed and batch size, and an undamaged state."""
    if run_dir is None or not has_state(run_dir):
        raise TrainingError(
            f"nothing to resume in {run_dir}: no finished epoch was saved there; drop --resume to start"
        )
    info = read_state_info(run_dir)
    if info["data_hash"] != data.data_hash:
        raise TrainingError(
            f"the training data changed since {run_dir} was started; --resume continues the same "
            "run on the same data: start a new run (another --out) instead"
        )
    saved = info["config"]
    if saved.get("seed") != config.seed or saved.get("batch_size") != config.batch_size:
        raise TrainingError("--resume needs the same --seed and --batch-size as the run it continues")


def lr_at(step: int, total: int, base: float, warmup_fraction: float) -> float:
    """Linear warm-up, then cosine decay to 2% of ``base``."""
    warm = max(1, int(total * warmup_fraction))
    if step < warm:
        return base * (step + 1) / warm
    progress = min(1.0, (step - warm) / max(1, total - warm))
    return base * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * progress)))


@dataclass
class _Optimisation:
    """What every training step of a run needs."""

    items: list  # (painting features, pair); the batches index into it
    groups: list[int]  # each item's painting, for epoch_batches
    key: str  # the encoder's embedding-cache key
    net: torch.nn.Module  # the model, or its DistributedDataParallel wrapper
    optimizer: torch.optim.Optimizer
    params: list
    lr: float
    total_steps: int


class Trainer:
    def __init__(
        self,
        model,
        identity,
        data: TrainingData,
        config: TrainConfig,
        run_dir: str | os.PathLike | None,
        *,
        parent: CheckpointInfo | None = None,
        device: str = "cpu",
        cache: EmbeddingCache | None = None,
        resume: bool = False,
    ):
        self.config = config
        self.identity = identity
        self.data = data
        self.parent = parent
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.resume = resume
        self.dist, self.device = distributed.init(device)
        self.model = model.to(self.device)
        self.cache = cache if cache is not None else EmbeddingCache()
        self._done = self._total = 0
        if resume:
            check_resumable(self.run_dir, data, config)  # before any work: a damaged state costs nothing

    # ------------------------------------------------------------------------------------------
    def fit(self, on_event=None) -> TrainResult:
        result = None
        for event in self.run():
            if on_event is not None:
                on_event(event)
            if event.stage == "done":
                result = event.metrics["result"]
        return result

    def _event(self, stage: str, epoch: int = 0, step: int = 0, steps: int = 0, **fields) -> TrainEvent:
        return TrainEvent(stage, epoch, self.config.epochs, step, steps, done=self._done, total=self._total, **fields)

    def run(self) -> Iterator[TrainEvent]:
        cfg, model = self.config, self.model
        train_paintings, val_paintings = split_by_painting(self.data, cfg.val_fraction, cfg.seed)
        if not val_paintings:
            yield self._event("message", message=self._without_validation())
        key = encoder_key(model, self.identity)
        groups = [g for g, p in enumerate(train_paintings) for _ in p.pairs]
        steps_per_epoch = len(
            epoch_batches(groups, cfg.batch_size, np.random.default_rng(0), self.dist.rank, self.dist.world_size)
        )
        val_units = self._plan_progress(train_paintings, val_paintings, steps_per_epoch)
        train = yield from self._prepare(train_paintings, key, "training")
        val = yield from self._prepare(val_paintings, key, "validation")
        run = self._optimisation(train, groups, key, steps_per_epoch)

        info = {"epoch": 0, "global_step": 0, "best": None, "bad_epochs": 0, "history": [], "before": None}
        if self.resume:
            info = self._restore(run.optimizer)
            self._write_log(info["history"])
            self._done += val_units + info["epoch"] * (steps_per_epoch + val_units)
            yield self._event("message", message=f"resuming after epoch {info['epoch']} of {cfg.epochs}")
        if info["before"] is None:
            info["before"] = yield from self._validate(val, 0)
        stopped_early = False
        for epoch in range(info["epoch"] + 1, cfg.epochs + 1):
            epoch_losses = yield from self._train_epoch(run, epoch, info)
            metrics = yield from self._validate(val, epoch)
            self._end_epoch(run.optimizer, info, epoch, epoch_losses, metrics)
            yield self._event("epoch", epoch, losses=epoch_losses, metrics=metrics)
            if val and cfg.patience and info["bad_epochs"] >= cfg.patience:
                stopped_early = True
                why = f"stopping early: no better validation mIoU for {cfg.patience} epochs"
                yield self._event("message", epoch, message=why)
                break
        yield self._event("done", info["epoch"], metrics={"result": self._result(info, stopped_early)})

    def _without_validation(self) -> str:
        if len(self.data.paintings) == 1:
            return (
                "only one painting: no validation possible; training on it without validation "
                "(no early stopping, the last epoch is kept)"
            )
        return "validation is off (--val-fraction 0): no early stopping, the last epoch is kept"

    def _plan_progress(self, train_paintings, val_paintings, steps_per_epoch: int) -> int:
        """Set the progress total (preparing, validation before training, every epoch's steps and
        validation); returns the units of one validation."""
        cfg = self.config
        drafts = cfg.validate_explanations and any(pair.explanations for p in val_paintings for pair in p.pairs)
        val_units = len(val_paintings) + (1 if drafts else 0)  # the caption metrics count as one
        self._total = len(train_paintings) + len(val_paintings) + val_units + cfg.epochs * (steps_per_epoch + val_units)
        return val_units

    def _optimisation(self, train, groups: list[int], key: str, steps_per_epoch: int) -> _Optimisation:
        cfg, model = self.config, self.model
        lr = cfg.learning_rate(model)
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=cfg.weight_decay)
        net = model
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel

            net = DistributedDataParallel(
                model,
                device_ids=[self.device] if self.device.startswith("cuda") else None,
                find_unused_parameters=True,  # SAM's 3 unused multimask heads, clicks only sometimes
            )
        items = [(pf, pair) for pf in train for pair in pf.pairs]
        return _Optimisation(items, groups, key, net, optimizer, params, lr, steps_per_epoch * cfg.epochs)

    def _train_epoch(self, run: _Optimisation, epoch: int, info: dict) -> Iterator[TrainEvent]:
        """One epoch's steps; yields a "train" event per step, returns the epoch's mean losses."""
        cfg, model = self.config, self.model
        torch.manual_seed(cfg.seed * 1_000_003 + epoch)  # dropout; same on every process
        # one stream shared by all processes (batch order, click batches), one per process
        # (which explanation, where the clicks fall): they must not drift apart
        shared = np.random.default_rng([cfg.seed, epoch])
        local = np.random.default_rng([cfg.seed, epoch, self.dist.rank])
        model.train()
        sums: dict[str, float] = {}
        batches = epoch_batches(run.groups, cfg.batch_size, shared, self.dist.rank, self.dist.world_size)
        click_steps = shared.random(len(batches)) < cfg.click_fraction
        for step, indices in enumerate(batches, 1):
            chosen = [run.items[i] for i in indices]
            batch = collate(
                model,
                chosen,
                local,
                embeddings_for=lambda pf: pf.get_embedding(self.cache, run.key),
                clicks=bool(click_steps[step - 1]),
            ).to(self.device)
            for group in run.optimizer.param_groups:
                group["lr"] = lr_at(info["global_step"], run.total_steps, run.lr, cfg.warmup_fraction)
            losses = run.net(batch)
            run.optimizer.zero_grad(set_to_none=True)
            losses["loss"].backward()
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(run.params, cfg.grad_clip)
            run.optimizer.step()
            info["global_step"] += 1
            for name, value in losses.items():
                sums[name] = sums.get(name, 0.0) + float(value.detach())
            self._done += 1
            yield self._event(
                "train", epoch, step, len(batches),
                losses={k: v / step for k, v in sums.items()},
                paintings=tuple(dict.fromkeys(pf.key for pf, _ in chosen)),
            )  # fmt: skip
        return {k: v / len(batches) for k, v in sums.items()}

    def _end_epoch(self, optimizer, info: dict, epoch: int, epoch_losses: dict, metrics: dict) -> None:
        """Record the epoch, keep the best checkpoint, write the resumable state and the log."""
        record = {"epoch": epoch, "losses": epoch_losses, "val": metrics}
        info["history"].append(record)
        if self._improved(metrics, info["best"]):
            info["best"] = {"epoch": epoch, "val": metrics}
            info["bad_epochs"] = 0
            self._save_best(metrics, info)
        else:
            info["bad_epochs"] += 1
        info["epoch"] = epoch
        if self.dist.is_main and self.run_dir is not None:
            state = dict(info, data_hash=self.data.data_hash, config=asdict(self.config))
            save_state(self.run_dir, self.model, optimizer, state)
            self._write_log(info["history"])
        distributed.barrier(self.dist)

    def _write_log(self, history: list[dict]) -> None:
        """RUN/log.jsonl, one line per epoch, written whole from the state's history: a run killed
        between saving its state and writing the log gets the missing line back on resume."""
        if self.dist.is_main and self.run_dir is not None:
            atomic_write_text(self.run_dir / LOG, "".join(json.dumps(record) + "\n" for record in history))

    def _result(self, info: dict, stopped_early: bool) -> TrainResult:
        best = info["best"] or {"val": {}}
        checkpoint = None
        if self.run_dir is not None and (self.run_dir / BEST).is_dir():
            from ..checkpoint import read_checkpoint

            checkpoint = read_checkpoint(self.run_dir / BEST)
        return TrainResult(
            checkpoint,
            info["before"] or {},
            best["val"],
            info["history"],
            info["epoch"],
            stopped_early,
            dict(self.data.summary),
        )

    # ------------------------------------------------------------------------------------------
    def _prepare(self, paintings, key, what) -> Iterator[TrainEvent]:
        if not paintings:
            return []
        frozen = self.model.config.encoder.frozen
        self.model.eval()
        if frozen and self.dist.enabled:
            # each process encodes its share into the shared disk cache, then all read it
            mine = paintings[self.dist.rank :: self.dist.world_size]
            for done, total, _ in prepare(
                self.model, mine, encoder_key=key, cache=self.cache, device=self.device, encode=False
            ):
                yield self._event("prepare", step=done, steps=total, message=f"encoding {what} paintings")
            distributed.barrier(self.dist)
        budget = 1.5 * 1024**3
        per = 4 * self.model.config.encoder.out_chans * self.model.config.encoder.embedding_size**2
        keep = len(paintings) * per <= budget
        out: list[PaintingFeatures] = []
        for done, total, features in prepare(
            self.model,
            paintings,
            encoder_key=key,
            cache=self.cache,
            device=self.device,
            encode=True,
            keep_in_memory=keep,
        ):
            out.append(features)
            self._done += 1
            yield self._event(
                "prepare", step=done, steps=total, message=f"preparing {what} paintings", paintings=(features.key,)
            )
        return out

    def _restore(self, optimizer) -> dict:
        info = load_state(self.run_dir, self.model, optimizer)
        info.pop("config")
        info.pop("data_hash")
        return info

    @staticmethod
    def _improved(metrics: dict, best: dict | None) -> bool:
        if best is None:
            return True
        new, old = metrics.get("miou"), best["val"].get("miou")
        if new is None or old is None:
            return True  # without validation the last epoch is kept
        return new > old

    def _save_best(self, metrics: dict, info: dict) -> None:
        if not self.dist.is_main or self.run_dir is None:
            return
        training = dict(
            self.data.summary,
            data_hash=self.data.data_hash,
            epoch=info["history"][-1]["epoch"],
            config=asdict(self.config),
            distributed_processes=self.dist.world_size,
        )
        save_checkpoint(
            self.model,
            self.identity,
            self.run_dir / BEST,
            parent=self.parent,
            training=training,
            metrics={"validation": metrics, "validation_before": info["before"]},
        )

    def _validate(self, val: list[PaintingFeatures], epoch: int) -> Iterator[TrainEvent]:
        metrics: dict = {}
        if self.dist.is_main and val:
            metrics = yield from self._validate_main(val, epoch)
        elif val:  # the other processes wait for rank 0's metrics: their progress jumps with it
            self._done += len(val) + (1 if self._drafts(val) else 0)
        return distributed.broadcast(self.dist, metrics)

    def _drafts(self, val: list[PaintingFeatures]) -> bool:
        return self.config.validate_explanations and any(p.explanations for pf in val for p in pf.pairs)

    @torch.no_grad()
    def _validate_main(self, val: list[PaintingFeatures], epoch: int) -> Iterator[TrainEvent]:
        model = self.model
        model.eval()
        key = encoder_key(model, self.identity) if model.config.encoder.frozen else None
        ious, refs, cands = [], {}, {}
        for i, pf in enumerate(val, 1):
            if pf.image is not None:
                embedding = model.encode(pf.image[None].to(self.device))
            else:
                embedding = pf.get_embedding(self.cache, key)[None].to(self.device)
            ids = torch.tensor([p.emotion_id for p in pf.pairs], device=self.device)
            pred = model.propose(embedding, ids)
            for j, pair in enumerate(pf.pairs):
                # scored against the majority mask (a mask is its own): see docs/annotators.md
                truth = majority_mask(pair.truth())
                if not truth.any():
                    continue  # the annotators marked different places: no majority to score against
                prob = lowres_to_painting(pred.logits[j : j + 1].float(), pf.geometry)[0, 0].sigmoid().cpu().numpy()
                ious.append(apolo_iou(prob, truth))
            if self.config.validate_explanations and any(p.explanations for p in pf.pairs):
                extent = torch.tensor([pf.geometry.extent] * len(ids), device=self.device)
                texts = model.explain(embedding, ids, pred.logits[:, 0].sigmoid(), extent)
                for j, pair in enumerate(pf.pairs):
                    if pair.explanations:
                        refs[(pf.key, j)] = pair.explanations
                        cands[(pf.key, j)] = texts[j]
            self._done += 1
            yield self._event("validate", epoch, i, len(val), paintings=(pf.key,))
        seg = summarise_ious(ious)
        metrics = {"miou": seg["miou"], "acc_25": seg["acc_25"], "acc_50": seg["acc_50"], "pairs": seg["pairs"]}
        metrics["bleu_4"] = None
        if self._drafts(val):
            yield self._event("metrics", epoch, message="scoring the drafts (BLEU-4)")
            metrics["bleu_4"] = _bleu4(refs, cands) if cands else None
            self._done += 1
        return metrics


def _bleu4(references: dict, candidates: dict) -> float | None:
    """BLEU-4 as the evaluation reports it (pycocoevalcap after PTB tokenisation); None without Java."""
    from ..metrics import java_available

    if not java_available():
        return None
    import contextlib
    import io

    from pycocoevalcap.bleu.bleu import Bleu

    from ..metrics import ptb_tokenize

    keys = [k for k, c in candidates.items() if c.strip()]
    if not keys:
        return 0.0
    packed = {}
    for k in keys:
        packed[("r", k)] = references[k]
        packed[("c", k)] = [candidates[k]]
    tokens = ptb_tokenize(packed)
    gts = {i: tokens[("r", k)] for i, k in enumerate(keys)}
    res = {i: tokens[("c", k)] for i, k in enumerate(keys)}
    with contextlib.redirect_stdout(io.StringIO()):
        scores, _ = Bleu(4).compute_score(gts, res, verbose=0)
    return float(scores[3])

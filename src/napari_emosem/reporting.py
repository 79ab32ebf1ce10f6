"""How training and its results read, in words: one definition for the CLI and the annotator.

Pure functions of dicts and events (no torch, no Qt): the metric lines, what a run trains on, and
what each progress event says.
"""

from __future__ import annotations

from typing import Any

#: (metrics key, name shown), in the order shown; BLEU-4 only when the run measured it
METRICS = (("miou", "mIoU"), ("acc_50", "Acc@0.5"), ("bleu_4", "BLEU-4"))

NO_VALIDATION = "no validation metrics (a single painting: nothing held out)"


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def validation_of(info) -> dict[str, Any]:
    """The validation metrics a checkpoint was saved with ({} when it has none)."""
    return ((info.metadata.get("metrics") or {}).get("validation")) or {}


def metric_rows(before: dict, after: dict) -> list[tuple[str, float | None, float | None]]:
    """``(name, before, after)`` for each metric either side has."""
    rows = []
    for key, name in METRICS:
        b, a = before.get(key), after.get(key)
        if b is not None or a is not None:
            rows.append((name, b, a))
    return rows


def value_text(x: float | None) -> str:
    return "–" if x is None else f"{x:.3f}"


def metrics_line(before: dict, after: dict) -> str:
    """One line: ``mIoU 0.041 → 0.702, Acc@0.5 0.000 → 0.750, BLEU-4 0.010 → 0.120``."""
    rows = metric_rows(before, after)
    if not rows:
        return NO_VALIDATION
    return ", ".join(f"{name} {value_text(b)} → {value_text(a)}" for name, b, a in rows)


def metrics_summary(metrics: dict) -> str:
    """One side: ``mIoU 0.702, Acc@0.5 0.750, BLEU-4 0.120``."""
    rows = metric_rows({}, metrics)
    if not rows:
        return "no validation"
    return ", ".join(f"{name} {value_text(a)}" for name, _, a in rows)


def training_data_line(summary: dict) -> str:
    """What a run learns from (``TrainingData.summary``): ``training on 40 reviewed pairs from
    12 paintings; 8 unreviewed drafts left out``, and with several annotators how many targets are
    their consensus maps or adjudicated masks: ``(targets: 30 consensus maps, 2 adjudicated masks)``."""
    pairs, paintings = summary.get("pairs", 0), summary.get("paintings", 0)
    if summary.get("include_unreviewed"):
        drafts = summary.get("unreviewed_pairs", 0)
        line = (
            f"training on {plural(pairs, 'pair')} from {plural(paintings, 'painting')}; "
            f"{plural(drafts, 'unreviewed draft')} included (asked for)"
        )
    else:
        left_out = (summary.get("skipped") or {}).get("unreviewed", 0)
        line = (
            f"training on {plural(summary.get('reviewed_pairs', pairs), 'reviewed pair')} from "
            f"{plural(paintings, 'painting')}; {plural(left_out, 'unreviewed draft')} left out"
        )
    targets = summary.get("targets") or {}
    counts = ((targets.get("consensus", 0), "consensus map"), (targets.get("adjudicated", 0), "adjudicated mask"))
    kinds = [plural(n, what) for n, what in counts if n]
    return line + (f" (targets: {', '.join(kinds)})" if kinds else "")


def epoch_line(event) -> str:
    """An "epoch" event in one line: losses, then the validation metrics."""
    losses = event.losses
    return (
        f"epoch {event.epoch}/{event.epochs}  loss {losses.get('loss', 0):.3f} (bce {losses.get('mask_bce', 0):.3f}, "
        f"dice {losses.get('mask_dice', 0):.3f}, text {losses.get('text', 0):.3f})  "
        f"val {metrics_summary(event.metrics)}"
    )


def progress_line(event) -> str:
    """What a :class:`~napari_emosem.training.TrainEvent` says, for a status line or a bar's label."""
    when = "before training" if event.epoch == 0 else f"epoch {event.epoch}/{event.epochs}"
    if event.stage == "train":
        loss = event.losses.get("loss")
        return f"{when}, step {event.step}/{event.steps}" + (f", loss {loss:.3f}" if loss is not None else "")
    if event.stage == "validate":
        return f"validating ({when}): painting {event.step}/{event.steps}"
    if event.stage == "metrics":
        return f"validating ({when}): {event.message or 'scoring the drafts'}"
    if event.stage == "prepare":
        return f"{event.message or 'preparing paintings'} {event.step}/{event.steps}"
    if event.stage == "epoch":
        miou = event.metrics.get("miou")
        return f"{when} done" + (f": validation mIoU {miou:.3f}" if miou is not None else "")
    return event.message


def result_line(result) -> str:
    """A finished run (:class:`~napari_emosem.training.TrainResult`) in one line."""
    epochs = plural(result.epochs_run, "epoch")
    early = " (stopped early: validation stopped improving)" if result.stopped_early else ""
    return f"{epochs}{early}; validation {metrics_line(result.before, result.after)}"

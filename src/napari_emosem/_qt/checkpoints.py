"""How fine-tuned checkpoints and their validation metrics read in the annotator (no Qt)."""

from __future__ import annotations

from typing import Any

#: (metrics key, name shown), in the order shown; BLEU-4 only when the run measured it
METRICS = (("miou", "mIoU"), ("acc_50", "Acc@0.5"), ("bleu_4", "BLEU-4"))


def validation_of(info) -> dict[str, Any]:
    """The validation metrics a checkpoint was saved with ({} when it has none)."""
    return ((info.metadata.get("metrics") or {}).get("validation")) or {}


def choice_label(info) -> str:
    """The model list's entry: ``checkpoint <id> (v2, fine-tuned on 40 pairs) · mIoU 0.712``."""
    miou = validation_of(info).get("miou")
    return f"checkpoint {info.label}" + (f" · mIoU {miou:.3f}" if miou is not None else "")


def metric_rows(before: dict, after: dict) -> list[tuple[str, float | None, float | None]]:
    """``(name, before, after)`` for each metric either side has."""
    rows = []
    for key, name in METRICS:
        b, a = before.get(key), after.get(key)
        if b is not None or a is not None:
            rows.append((name, b, a))
    return rows


def _value(x: float | None) -> str:
    return "–" if x is None else f"{x:.3f}"


def metrics_line(before: dict, after: dict) -> str:
    """One line: ``mIoU 0.041 → 0.702, Acc@0.5 0.000 → 0.750, BLEU-4 0.010 → 0.120``."""
    rows = metric_rows(before, after)
    if not rows:
        return "no validation metrics (a single painting: nothing held out)"
    return ", ".join(f"{name} {_value(b)} → {_value(a)}" for name, b, a in rows)


def metrics_html(before: dict, after: dict, *, title: str) -> str:
    """A small before/after table for a QLabel."""
    rows = metric_rows(before, after)
    if not rows:
        return f"<b>{title}</b><br>{metrics_line(before, after)}"
    pairs = after.get("pairs") or before.get("pairs")
    held_out = f" ({pairs} held-out pairs)" if pairs else ""
    cells = "".join(
        f"<tr><td>{name}</td><td align='right'>{_value(b)}</td><td>→</td><td align='right'><b>{_value(a)}</b></td></tr>"
        for name, b, a in rows
    )
    return (
        f"<b>{title}</b><br>validation{held_out}, before → after:"
        f"<table cellspacing='0' cellpadding='1'>{cells}</table>"
    )

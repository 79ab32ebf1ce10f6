"""How fine-tuned checkpoints and their validation metrics read in the annotator (no Qt)."""

from __future__ import annotations

from typing import Any

#: (metrics key, name shown), in the order shown; BLEU-4 only when the run measured it
METRICS = (("miou", "mIoU"), ("acc_50", "Acc@0.5"), ("bleu_4", "BLEU-4"))


def validation_of(info) -> dict[str, Any]:
    """The validation metrics a checkpoint was saved with ({} when it has none)."""
    return ((info.metadata.get("metrics") or {}).get("validation")) or {}


def choice_label(info) -> str:
    """The model list's entry, most telling first (a narrow combo box shows the start):
    ``checkpoint v2 · mIoU 0.712 · fine-tuned on 40 pairs · emosem-tiny-…``."""
    miou = validation_of(info).get("miou")
    pairs = (info.metadata.get("training") or {}).get("pairs")
    parts = [f"checkpoint v{info.version}"]
    if miou is not None:
        parts.append(f"mIoU {miou:.3f}")
    if pairs:
        parts.append(f"fine-tuned on {pairs} pairs")
    return " · ".join(parts + [info.id])


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
    """For a QLabel: the title, then the metrics in one wrapped line, the new values in bold."""
    rows = metric_rows(before, after)
    if not rows:
        return f"<b>{title}</b><br>{metrics_line(before, after)}"
    pairs = after.get("pairs") or before.get("pairs")
    held_out = f" ({pairs} held-out pairs)" if pairs else ""
    values = " · ".join(f"{name} {_value(b)} → <b>{_value(a)}</b>" for name, b, a in rows)
    return f"<b>{title}</b><br>validation{held_out}: {values}"

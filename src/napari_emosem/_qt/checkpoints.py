"""How fine-tuned checkpoints and their validation metrics read in the annotator (no Qt)."""

from __future__ import annotations

# The metric lines are the core's (the CLI prints the same); re-exported for the widget.
from ..reporting import METRICS, metric_rows, metrics_line, validation_of, value_text

__all__ = ["METRICS", "choice_label", "metric_rows", "metrics_html", "metrics_line", "validation_of"]


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


def metrics_html(before: dict, after: dict, *, title: str) -> str:
    """For a QLabel: the title, then the metrics in one wrapped line, the new values in bold."""
    rows = metric_rows(before, after)
    if not rows:
        return f"<b>{title}</b><br>{metrics_line(before, after)}"
    pairs = after.get("pairs") or before.get("pairs")
    held_out = f" ({pairs} held-out pairs)" if pairs else ""
    values = " · ".join(f"{name} {value_text(b)} → <b>{value_text(a)}</b>" for name, b, a in rows)
    return f"<b>{title}</b><br>validation{held_out}: {values}"

"""A contact sheet of proposals: one panel per emotion, the stimulus tinted, its draft underneath.

What ``emosem propose`` writes beside the dataset so a person can review a painting's drafts
without opening napari.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

import numpy as np

from .predictor import Proposal

#: one colour per emotion, shared with the napari layers (ArtEmis order)
EMOTION_COLOURS = {
    "amusement": (255, 200, 0),
    "awe": (0, 190, 255),
    "contentment": (60, 200, 90),
    "excitement": (255, 120, 0),
    "anger": (230, 30, 40),
    "disgust": (140, 150, 30),
    "fear": (150, 60, 200),
    "sadness": (40, 90, 230),
}


def render_overlay(
    image: np.ndarray,
    proposals: Sequence[Proposal],
    *,
    panel_side: int = 360,
    columns: int = 4,
    model: str | None = None,
) -> np.ndarray:
    """RGB uint8 sheet: the painting dimmed outside each stimulus, outlined, with caption and draft."""
    from PIL import Image, ImageDraw, ImageFont
    from skimage.segmentation import find_boundaries

    h, w = image.shape[:2]
    scale = panel_side / max(h, w)
    ph, pw = max(1, round(h * scale)), max(1, round(w * scale))
    small = np.asarray(Image.fromarray(image).resize((pw, ph), Image.BILINEAR, reducing_gap=3.0), dtype=np.float32)
    font = ImageFont.load_default()
    line_h = 13
    caption_lines = 6
    cell_w, cell_h = panel_side + 16, panel_side + 16 + line_h * caption_lines
    n = max(1, len(proposals))
    cols = min(columns, n)
    rows = (n + cols - 1) // cols
    header = 24
    sheet = Image.new("RGB", (cols * cell_w, header + rows * cell_h), (24, 24, 28))
    draw = ImageDraw.Draw(sheet)
    title = f"EmoSEM proposals{f': {model}' if model else ''}"
    draw.text((8, 6), title, fill=(230, 230, 230), font=font)
    chars = max(20, panel_side // 6)
    for i, prop in enumerate(proposals):
        mask = np.asarray(Image.fromarray(prop.mask.astype(np.uint8) * 255).resize((pw, ph), Image.NEAREST)) > 127
        colour = np.array(EMOTION_COLOURS.get(prop.emotion, (255, 255, 255)), np.float32)
        panel = small * np.where(mask[..., None], 1.0, 0.35)
        panel = np.where(mask[..., None], 0.75 * panel + 0.25 * colour, panel)
        panel[find_boundaries(mask, mode="inner")] = colour
        x0 = (i % cols) * cell_w + 8
        y0 = header + (i // cols) * cell_h + 8
        sheet.paste(Image.fromarray(panel.clip(0, 255).astype(np.uint8)), (x0 + (panel_side - pw) // 2, y0))
        yt = y0 + panel_side + 4
        area = 100.0 * prop.mask.mean()
        draw.text(
            (x0, yt),
            f"{prop.emotion}  score {prop.score:.2f}  area {area:.0f}%",
            fill=tuple(int(c) for c in colour),
            font=font,
        )
        for j, line in enumerate(textwrap.wrap(prop.explanation or "(no draft)", chars)[: caption_lines - 1]):
            draw.text((x0, yt + line_h * (j + 1)), line, fill=(220, 220, 220), font=font)
    return np.asarray(sheet)

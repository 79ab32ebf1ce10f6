"""napari layers of the annotator: one Labels layer per emotion, one Points layer for clicks."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..annotation import EMOTION_COLORS, METADATA_KEY, EmotionAnnotation, Status, layer_metadata, layer_name

CLICKS_LAYER = "EmoSEM clicks"
INSIDE_COLOR = "#39d353"
OUTSIDE_COLOR = "#ff3b30"
#: opacity of a stimulus layer, and of a rejected one (kept visible but faint)
OPACITY = 0.55
REJECTED_OPACITY = 0.15


def label_colormap(emotion: str):
    from napari.utils.colormaps import DirectLabelColormap

    return DirectLabelColormap(
        color_dict={None: "transparent", 0: "transparent", 1: EMOTION_COLORS[emotion]}
    )


def stimulus_layer_kwargs(item: EmotionAnnotation, *, painting: str, image_layer=None) -> dict[str, Any]:
    """Keyword arguments for ``viewer.add_labels`` / LayerData of an emotion's mask."""
    kwargs: dict[str, Any] = {
        "name": layer_name(item.emotion),
        "metadata": layer_metadata(item, painting=painting),
        "colormap": label_colormap(item.emotion),
        "opacity": REJECTED_OPACITY if item.status == Status.REJECTED else OPACITY,
        "blending": "translucent",
    }
    if image_layer is not None:
        kwargs["scale"] = tuple(image_layer.scale[-2:])
        kwargs["translate"] = tuple(image_layer.translate[-2:])
    return kwargs


def mask_to_labels(mask: np.ndarray) -> np.ndarray:
    # uint8 keeps eight full-resolution layers of a large painting affordable
    return np.asarray(mask, dtype=np.uint8)


def painting_of(layer) -> str | None:
    """The image digest a stimulus layer belongs to (from its metadata), if recorded."""
    meta = layer.metadata.get(METADATA_KEY) if isinstance(layer.metadata, dict) else None
    return (meta or {}).get("painting")


def rgba(hex_color: str) -> np.ndarray:
    """"#rrggbb" -> float32 RGBA in [0, 1]."""
    value = hex_color.lstrip("#")
    return np.array([int(value[i : i + 2], 16) / 255.0 for i in (0, 2, 4)] + [1.0], np.float32)


def click_colors(labels: np.ndarray) -> np.ndarray:
    """Face colours of click points: green inside, red outside."""
    inside, outside = rgba(INSIDE_COLOR), rgba(OUTSIDE_COLOR)
    labels = np.asarray(labels).reshape(-1)
    if labels.size == 0:
        return np.zeros((0, 4), np.float32)
    return np.where(labels[:, None] > 0, inside, outside).astype(np.float32)

"""The Points layer "EmoSEM clicks": inside/outside clicks that refine the selected emotion's mask.

The layer shows the clicks of one emotion at a time (the session keeps each emotion's own); its
data coordinates are the painting's pixels (same scale and translate as the Image layer).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from psygnal import Signal, SignalGroup

from .._layers import CLICKS_LAYER

INSIDE_COLOR = "#39d353"
OUTSIDE_COLOR = "#ff3b30"


def rgba(hex_color: str) -> np.ndarray:
    """"#rrggbb" -> float32 RGBA in [0, 1]."""
    value = hex_color.lstrip("#")
    return np.array([int(value[i : i + 2], 16) / 255.0 for i in (0, 2, 4)] + [1.0], np.float32)


def click_colors(labels: np.ndarray) -> np.ndarray:
    """Face colours of click points: green inside, red outside."""
    labels = np.asarray(labels).reshape(-1)
    if labels.size == 0:
        return np.zeros((0, 4), np.float32)
    return np.where(labels[:, None] > 0, rgba(INSIDE_COLOR), rgba(OUTSIDE_COLOR)).astype(np.float32)


class ClicksEvents(SignalGroup):
    #: the annotator added or removed clicks: all of them now, as (points (N, 2), labels (N,))
    changed = Signal(object, object)
    #: the annotator deleted the layer
    removed = Signal()
    #: new clicks mark the stimulus (True) or what is outside it (False)
    inside = Signal(bool)


class ClicksLayer:
    """The clicks layer of a viewer, made when first needed."""

    def __init__(self, viewer):
        self.viewer = viewer
        self.events = ClicksEvents()
        self.layer = None
        self.inside = True

    def ensure(self, *, size: int, image_layer=None):
        """The layer, made now if there is none."""
        if self.layer is None:
            kwargs: dict[str, Any] = {
                "name": CLICKS_LAYER,
                "features": {"inside": np.zeros(0, bool)},
                "size": size,
                "border_color": "white",
                "border_width": 0.15,
            }
            if image_layer is not None:
                kwargs["scale"] = tuple(image_layer.scale[-2:])
                kwargs["translate"] = tuple(image_layer.translate[-2:])
            self.layer = self.viewer.add_points(np.zeros((0, 2)), **kwargs)
            self.layer.events.data.connect(self._on_data)
            self.set_inside(self.inside)
        return self.layer

    def place(self, image_layer) -> None:
        """Clicks are in this painting's pixels."""
        if self.layer is not None and image_layer is not None:
            self.layer.scale = tuple(image_layer.scale[-2:])
            self.layer.translate = tuple(image_layer.translate[-2:])

    def set_inside(self, inside: bool) -> None:
        """New clicks mark the stimulus (True) or what is outside it (False)."""
        if self.inside != bool(inside):
            self.inside = bool(inside)
            self.events.inside.emit(self.inside)
        if self.layer is not None:
            self.layer.feature_defaults = {"inside": self.inside}
            self.layer.current_face_color = INSIDE_COLOR if self.inside else OUTSIDE_COLOR

    def show(self, points: np.ndarray, labels: np.ndarray) -> None:
        """Show these clicks (an emotion's), without reporting them as the annotator's."""
        layer = self.layer
        if layer is None:
            return
        # napari recolours the selected points with the current colour: none may stay selected
        layer.selected_data = set()
        with layer.events.data.blocker(self._on_data):
            layer.data = np.asarray(points, float).reshape(-1, 2)
            layer.features = {"inside": np.asarray(labels, bool)}
            if len(layer.data):
                layer.face_color = click_colors(labels)
        self.set_inside(self.inside)

    def add(self, row: float, col: float) -> None:
        """A click at painting pixel (row, col), as one on the canvas (which selects no point)."""
        self.layer.add(np.array([[row, col]], float))
        self.layer.selected_data = set()

    def clicks(self) -> tuple[np.ndarray, np.ndarray]:
        """The clicks shown: (N, 2) (row, col) in the painting's pixels, and labels (1 in, 0 out)."""
        layer = self.layer
        if layer is None or len(layer.data) == 0:
            return np.zeros((0, 2)), np.zeros((0,), np.int64)
        features = layer.features
        inside = np.asarray(features["inside"], bool) if "inside" in features else np.ones(len(layer.data), bool)
        return np.asarray(layer.data, np.float64)[:, -2:], inside.astype(np.int64)

    def start(self) -> None:
        """Clicking on the canvas adds clicks."""
        self.viewer.layers.selection.active = self.layer
        self.layer.mode = "add"

    def stop(self) -> None:
        if self.layer is not None:
            self.layer.mode = "pan_zoom"

    def forget(self, layer) -> bool:
        """``layer`` left the viewer: True if it was the clicks layer."""
        if layer is None or layer is not self.layer:
            return False
        self.layer = None
        self.events.removed.emit()
        return True

    def _on_data(self, event=None) -> None:
        action = str(getattr(event, "action", "added"))
        if action.endswith("ing"):  # "adding", "removing", "changing": wait for the change itself
            return
        self.events.changed.emit(*self.clicks())

"""Spare Labels layers, made ahead of time so that proposed masks appear without freezing napari.

napari spends 150–450 ms of the GUI thread creating a Labels layer, whatever its size (a 1×1
layer costs as much as a 1024² one: vispy visuals, the layer's overlays, its Qt controls; measured
with software OpenGL on 2 cores, see ``benchmarks/bench_responsiveness.py``), but only about
40 ms to rename, recolour and fill one that exists. So the annotator keeps a few hidden 1×1
layers named :data:`SPARE_NAME`, made one per event-loop turn when a painting is chosen, and a
proposal turns a spare into its "<emotion> stimulus" layer instead of adding a new one.

Spares belong to no painting and carry no annotation: their name is no emotion's, so the
annotator, the reader and the writer ignore them. Deleting one is harmless.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from napari.utils.colormaps import DirectLabelColormap

from .._layers import SPARE_NAME


class SparePool:
    """Hidden, empty Labels layers of ``viewer`` waiting to become stimulus layers."""

    def __init__(self, viewer):
        self.viewer = viewer
        self._layers: list[Any] = []

    def __len__(self) -> int:
        return len(self._layers)

    def __contains__(self, layer) -> bool:
        return any(layer is spare for spare in self._layers)

    def make_one(self, *, scale=None, translate=None) -> Any:
        """Add one spare (hidden, 1×1), leaving the layer selection as it was."""
        layers = self.viewer.layers
        active, selected = layers.selection.active, list(layers.selection)
        kwargs: dict[str, Any] = {"name": SPARE_NAME, "visible": False}
        if scale is not None:
            kwargs["scale"] = tuple(scale)
            kwargs["translate"] = tuple(translate)
        # a fixed transparent colormap: napari's default random one is computed (and imported) first
        kwargs["colormap"] = DirectLabelColormap(color_dict={None: "transparent"})
        layer = self.viewer.add_labels(np.zeros((1, 1), np.uint8), **kwargs)
        self._layers.append(layer)
        # napari selects what it adds: give the annotator back the layer they were working on
        if active is not None and active in layers:
            layers.selection.active = active
            layers.selection.update(s for s in selected if s in layers)
        else:
            layers.selection.clear()
        return layer

    def take(self) -> Any | None:
        """A spare to use (it leaves the pool), or None when there is none.

        The oldest first: it is the lowest in the layer list, so masks shown one after the other
        stack as new layers would (the last on top).
        """
        while self._layers:
            layer = self._layers.pop(0)
            if layer in self.viewer.layers:
                return layer
        return None

    def put_back(self, layer) -> None:
        """A stimulus layer the painting shown no longer needs becomes a spare again (hidden
        first: napari then neither slices nor repaints the data it is given)."""
        layer.visible = False
        layer.name = SPARE_NAME
        layer.metadata = {}
        layer.data = np.zeros((1, 1), np.uint8)
        self._layers.append(layer)

    def forget(self, layer) -> bool:
        """``layer`` was removed from the viewer: drop it if it was a spare."""
        for i, spare in enumerate(self._layers):
            if spare is layer:
                del self._layers[i]
                return True
        return False


def dress(layer, data: np.ndarray, kwargs: dict[str, Any], *, layers=None, above=None, reveal: bool = True) -> None:
    """Make spare ``layer`` show ``data`` with the given ``add_labels`` keyword arguments.

    ``above``: a layer of the list ``layers`` (the painting) it must be drawn over; spares made
    before the painting was opened sit below it, so they move to the top, where a new layer goes.
    ``reveal=False`` leaves it hidden: showing it (napari then slices the data, makes the
    thumbnail and the texture, and repaints) can be left to the next event-loop turn.
    """
    for key in ("name", "metadata", "colormap", "opacity", "blending"):
        if key in kwargs:
            setattr(layer, key, kwargs[key])
    for key in ("scale", "translate"):
        # ~20 ms each (napari recomputes the layer's extent): only when the painting's differ
        if key in kwargs and not np.allclose(getattr(layer, key)[-2:], kwargs[key]):
            setattr(layer, key, kwargs[key])
    layer.data = data
    layer.selected_label = 1
    below = layers is not None and above is not None and above in layers and layers.index(layer) < layers.index(above)
    if below:
        layers.move(layers.index(layer), len(layers))
    if reveal:
        layer.visible = True

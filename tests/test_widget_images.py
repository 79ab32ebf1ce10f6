"""The annotator on every kind of painting: RGBA, grayscale, 16-bit, large (xvfb-run)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_emosem._qt.settings import Settings
from napari_emosem._widget import EmoSEMAnnotator
from napari_emosem.image_io import load_image
from napari_emosem.paintings import FOLDER as PAINTINGS

pytestmark = [pytest.mark.gui, pytest.mark.usefixtures("own_user_folders")]

BOY = PAINTINGS / "boy-in-a-red-vest-1888.jpg"


@pytest.fixture
def annotator(make_napari_viewer):
    def make():
        viewer = make_napari_viewer()
        widget = EmoSEMAnnotator(viewer, settings=Settings(backend=False, precision="fp32"), synchronous=True)
        viewer.window.add_dock_widget(widget, name="EmoSEM annotator", area="right")
        return viewer, widget

    return make


@pytest.mark.parametrize("kind", ["rgba", "gray", "uint16"])
def test_other_image_kinds(annotator, kind):
    viewer, widget = annotator()
    rgb = load_image(BOY)
    if kind == "rgba":
        data = np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 255, np.uint8)], axis=-1)
        viewer.add_image(data, rgb=True, name=kind)
    elif kind == "gray":
        viewer.add_image(rgb.mean(-1).astype(np.uint8), name=kind)
    else:
        viewer.add_image(rgb[..., 0].astype(np.uint16) * 257, name=kind)
    widget.set_model("starter")
    widget.propose(["fear"])
    assert widget.last_error is None, widget.last_error
    assert widget.session.image.shape == rgb.shape and widget.session.image.dtype == np.uint8
    assert widget.stimulus_layer("fear").data.shape == rgb.shape[:2]


def test_a_large_painting_gets_full_resolution_masks(annotator):
    viewer, widget = annotator()
    from skimage.transform import resize

    big = (resize(load_image(BOY), (3000, 2350), order=1, preserve_range=True)).astype(np.uint8)
    viewer.add_image(big, rgb=True, name="big")
    widget.set_model("starter")
    widget.propose(["sadness"])
    assert widget.last_error is None, widget.last_error
    layer = widget.stimulus_layer("sadness")
    assert layer.data.shape == (3000, 2350) and layer.data.dtype == np.uint8 and layer.data.any()

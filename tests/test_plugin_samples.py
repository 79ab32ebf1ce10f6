"""The project's own sample paintings (procedural) and their npe2 sample-data commands."""

from __future__ import annotations

import numpy as np
import pytest

from napari_emosem import samples
from napari_emosem._sample_data import landscape as landscape_sample
from napari_emosem._sample_data import storm as storm_sample
from napari_emosem.errors import EmoSEMError


@pytest.mark.parametrize("scene", samples.SCENES)
def test_scenes_are_deterministic_paintings(scene):
    a = samples.painting(scene, height=240, width=320, seed=0)
    assert a.shape == (240, 320, 3) and a.dtype == np.uint8
    assert np.array_equal(a, samples.painting(scene, height=240, width=320, seed=0))
    assert not np.array_equal(a, samples.painting(scene, height=240, width=320, seed=1))
    # brushwork: neighbouring pixels vary, like paint, not like flat vector shapes
    assert np.abs(np.diff(a.astype(int), axis=1)).mean() > 2


def test_the_scenes_show_what_they_say():
    valley = samples.landscape(height=300, width=400).astype(float)
    sky, fields = valley[:60].mean((0, 1)), valley[-60:].mean((0, 1))
    assert sky[2] > sky[1] and fields[1] > fields[0] and fields[1] > fields[2]  # blue sky, green fields
    storm = samples.storm(height=300, width=400).astype(float)
    assert storm.mean() < valley.mean() - 30  # a dark scene
    assert not np.array_equal(samples.landscape(height=300, width=400), samples.storm(height=300, width=400))


def test_bad_requests_are_clear():
    with pytest.raises(EmoSEMError, match="choose from landscape, storm"):
        samples.painting("sunset")
    with pytest.raises(EmoSEMError, match="at least 32 px"):
        samples.landscape(height=10, width=400)


def test_sample_data_commands_return_layer_data():
    for command, name in ((landscape_sample, "sunny valley"), (storm_sample, "storm at sea")):
        ((data, meta, kind),) = command()
        assert kind == "image" and meta == {"name": name, "rgb": True}
        assert data.shape == (600, 800, 3) and data.dtype == np.uint8


@pytest.mark.gui
def test_napari_opens_the_samples(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-emosem", "landscape")
    viewer.open_sample("napari-emosem", "storm")
    assert [layer.name for layer in viewer.layers] == ["sunny valley", "storm at sea"]
    assert viewer.layers[0].rgb

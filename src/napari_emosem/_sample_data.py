"""npe2 sample data: four real Cézanne paintings shipped with the package, and two procedural
paintings the project generates (see :mod:`napari_emosem.samples`)."""

from __future__ import annotations

from ._layers import image_metadata
from .image_io import load_image
from .paintings import CEZANNE, painting_path
from .samples import landscape as make_landscape
from .samples import storm as make_storm


def landscape():
    return [(make_landscape(), {"name": "sunny valley", "rgb": True}, "image")]


def storm():
    return [(make_storm(), {"name": "storm at sea", "rgb": True}, "image")]


def _cezanne(key: str):
    path = painting_path(key)
    file_name, title = CEZANNE[key]
    # the annotator exports the file as is, under its own name, with the painting's metadata
    meta = image_metadata(
        source_path=str(path),
        file_name=file_name,
        metadata={"artist": "Paul Cézanne", "title": title.split(" (")[0]},
    )
    return [(load_image(path), {"name": path.stem, "rgb": True, "metadata": meta}, "image")]


def painter_at_work():
    return _cezanne("painter_at_work")


def boy_in_a_red_vest():
    return _cezanne("boy_in_a_red_vest")


def fortune_marion():
    return _cezanne("fortune_marion")


def madame_cezanne_in_blue():
    return _cezanne("madame_cezanne_in_blue")

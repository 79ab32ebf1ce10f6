"""npe2 sample data: paintings the project generates (see :mod:`napari_emosem.samples`)."""

from __future__ import annotations


def landscape():
    from .samples import landscape as make

    return [(make(), {"name": "sunny valley", "rgb": True}, "image")]


def storm():
    from .samples import storm as make

    return [(make(), {"name": "storm at sea", "rgb": True}, "image")]

"""Where napari found the annotator before it moved to :mod:`napari_emosem._qt.annotator`.

Kept so that dock layouts and scripts that name ``napari_emosem._widget:EmoSEMAnnotator`` keep
working.
"""

from ._qt.annotator import EmoSEMAnnotator

__all__ = ["EmoSEMAnnotator"]

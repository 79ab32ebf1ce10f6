"""Stimulus datasets: the COCO-based annotation format, its library, import and export.

See ``docs/dataset-format.md`` for the format.
"""

from .dataset import PaintingUpdate, StimulusDataset, WriteReport
from .records import Painting, Stimulus
from .validate import FORMAT_NAME, FORMAT_VERSION

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "Painting",
    "PaintingUpdate",
    "Stimulus",
    "StimulusDataset",
    "WriteReport",
]

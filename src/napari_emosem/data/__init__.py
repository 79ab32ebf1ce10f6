"""Stimulus datasets: the COCO-based annotation format, its library, import and export.

See ``docs/dataset-format.md`` for the format.
"""

from .dataset import Compaction, PaintingUpdate, StimulusDataset, WriteReport
from .records import Painting, PairRecords, Slot, Stimulus
from .validate import FORMAT_NAME, FORMAT_VERSION

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "Compaction",
    "PairRecords",
    "Painting",
    "PaintingUpdate",
    "Slot",
    "Stimulus",
    "StimulusDataset",
    "WriteReport",
]

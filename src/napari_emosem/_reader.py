"""napari reader: a stimulus dataset folder (or its ``annotations.json``) as layers.

One painting at a time: the Image layer, then one Labels layer per annotated emotion, named
"<emotion> stimulus", whose ``metadata["emosem"]`` carries the explanation and provenance (the
annotator widget shows and edits them). A dataset is a campaign of many paintings: the reader
opens the first one that is neither done nor skipped
(:meth:`napari_emosem.campaign.CampaignProgress.first_open`; when all are, the one annotated
last), and the annotator's navigator lists the others (its Dataset "Open…", ``emosem view
--painting`` and ``read_dataset(root, painting=...)`` choose another).
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from ._layers import image_metadata, mask_to_labels, stimulus_layer_kwargs
from .annotation import annotation_from_stimulus, passthrough_record
from .campaign import campaign_progress
from .data import StimulusDataset
from .data.records import parse_time
from .data.store import ANNOTATIONS
from .errors import DatasetError
from .image_io import image_digest


def dataset_root(path: str | os.PathLike) -> Path | None:
    """The dataset folder ``path`` names (the folder, or its annotations.json), else None."""
    p = Path(path)
    if p.is_dir() and (p / ANNOTATIONS).is_file():
        return p
    if p.name == ANNOTATIONS and p.is_file():
        return p.parent
    return None


def get_reader(path):
    """npe2 reader hook: a function for dataset folders / annotations.json, else None."""
    if isinstance(path, (list, tuple)):
        if len(path) != 1:
            return None
        path = path[0]
    root = dataset_root(path)
    if root is None:
        return None
    return lambda _path: read_dataset(root)


def read_dataset(root: str | os.PathLike, painting: str | int | None = None) -> list[tuple[Any, dict, str]]:
    """Layer data for one painting of the dataset at ``root`` (default: the first not done)."""
    dataset = StimulusDataset.open(root)
    if not dataset.paintings:
        raise DatasetError(
            f"{dataset.root} holds no paintings yet; add some with `emosem add {dataset.root} FOLDER`, "
            "or export one from the EmoSEM annotator"
        )
    chosen = dataset.painting(painting) if painting is not None else _first_to_annotate(dataset)
    if chosen is None:
        names = ", ".join(p.file_name for p in dataset.paintings[:10])
        raise DatasetError(f"{dataset.root}: no painting {painting!r}; it holds {names}")
    rgb = dataset.image(chosen)
    digest = image_digest(rgb)
    stimuli = dataset.stimuli(chosen)
    passthrough = []
    layers: list[tuple[Any, dict, str]] = []
    for stimulus in stimuli:
        item = annotation_from_stimulus(stimulus, rgb.shape[:2])
        if item is None:
            passthrough.append(passthrough_record(stimulus))
            continue
        kwargs = stimulus_layer_kwargs(item, painting=digest)
        layers.append((mask_to_labels(item.mask), kwargs, "labels"))
    image_meta = image_metadata(
        dataset=str(dataset.root),
        file_name=chosen.file_name,
        source_path=str(dataset.image_path(chosen)),
        metadata=dict(chosen.metadata),
        passthrough=passthrough,
        painting=digest,
    )
    image = (np.asarray(rgb), {"name": chosen.name, "rgb": True, "metadata": image_meta}, "image")
    return [image, *layers]


def _first_to_annotate(dataset):
    """Where the campaign stands: the first painting neither done nor skipped, else the latest."""
    first = campaign_progress(dataset).first_open()
    return first.painting if first is not None else _latest(dataset)


def _latest(dataset):
    """The painting whose records were modified last, else the last one."""
    never = datetime.min.replace(tzinfo=UTC)
    best, best_time = None, never
    for painting in dataset.paintings:
        times = [parse_time(s.modified or s.created) or never for s in dataset.stimuli(painting)]
        latest = max(times, default=never)
        if best is None or latest >= best_time:
            best, best_time = painting, latest
    return best

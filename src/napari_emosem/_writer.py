"""napari writer: a painting and its "<emotion> stimulus" Labels layers into a stimulus dataset.

Save to ``<folder>/annotations.json`` to write into the dataset ``<folder>`` (created if needed;
the painting is added, or updated when the dataset already has it). Any other ``name.json``
writes the dataset folder ``name/`` beside it. Explanations and provenance come from the layers'
metadata (the annotator widget keeps it current); a Labels layer without it counts as drawn by a
person. Points layers (clicks) are ignored.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ._layers import painting_info, session_from_layers
from .data.store import ANNOTATIONS
from .errors import EmoSEMError


def dataset_folder_for(path: str | os.PathLike) -> Path:
    """The dataset folder a save path names (see the module docstring)."""
    p = Path(path)
    if p.name == ANNOTATIONS:
        return p.parent
    if p.suffix.lower() == ".json":
        return p.with_suffix("")
    return p


def write_dataset(path: str, layer_data: list[tuple[Any, dict, str]]) -> list[str]:
    """npe2 writer: one Image layer plus its stimulus Labels layers; returns the file written."""
    images = [(data, meta) for data, meta, kind in layer_data if kind == "image"]
    if len(images) != 1:
        raise EmoSEMError(
            f"select exactly one painting (Image layer) and its stimulus layers to save; got {len(images)} images"
        )
    image, image_meta = images[0]
    if isinstance(image, list):  # multiscale: the full-resolution level
        image = image[0]
    info = painting_info(image_meta.get("metadata"))
    name = str(image_meta.get("name") or "painting")
    labels = [
        (str(meta.get("name", "")), data, meta.get("metadata") or {})
        for data, meta, kind in layer_data
        if kind == "labels"
    ]
    session = session_from_layers(
        image,
        labels,
        file_name=info.file_name or f"{name}.png",
        source_path=info.source_path,
        metadata=info.metadata,
        passthrough=info.passthrough,
        autosave_dir=False,
    )
    root = dataset_folder_for(path)
    session.export(root)
    return [str(root / ANNOTATIONS)]

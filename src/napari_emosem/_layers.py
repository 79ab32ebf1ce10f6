"""How napari shows an annotation: layer names, the metadata layers carry, how they look.

The one place of the plugin's napari conventions, shared by the reader, the writer, the annotator
widget and ``emosem view`` (no Qt here; napari itself only for the colormap):

* The painting is an Image layer; ``metadata["emosem"]`` (:func:`image_metadata`) says where it
  came from: ``source_path``, ``file_name`` and ``metadata`` for the dataset, the ``dataset`` it
  was opened from, ``passthrough`` records and the image ``painting`` digest.
* Each emotion's mask is a Labels layer named ``"<emotion> stimulus"`` (label 1 = stimulus; napari
  may add " [1]" to a repeated name) whose ``metadata["emosem"]`` (:func:`layer_metadata`) holds
  the annotation without its mask, the painting's digest and the mask's digest, so that napari's
  File > Save keeps explanations and provenance, and a mask painted without the annotator is
  recognised as edited.
* ``"EmoSEM clicks"`` (Points) and ``"EmoSEM spare"`` (hidden Labels) are the annotator's own
  layers; their names are no emotion's, so the reader and writer ignore them.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .annotation import AnnotationSession, EmotionAnnotation, Status
from .data.records import now_iso
from .emotions import EMOTIONS, normalise_emotion
from .errors import EmoSEMError

#: key of this plugin's entry in a napari layer's ``metadata``
METADATA_KEY = "emosem"
#: napari layer names are "<emotion> stimulus"
LAYER_SUFFIX = " stimulus"
#: metadata key of the layers that show other records over a painting (an annotator's contour, a
#: consensus map: ``_qt.adjudication``): no painting and no stimulus layer of the session
OVERLAY_KEY = "emosem_overlay"
CLICKS_LAYER = "EmoSEM clicks"
SPARE_NAME = "EmoSEM spare"
#: napari's suffix for a repeated layer name: "awe stimulus [1]"
_REPEAT = re.compile(r"\s*\[\d+\]$")

#: One colour per emotion for the mask layers: warm hues for the positive emotions, cool or
#: murky ones for the negative (ArtEmis order).
EMOTION_COLORS: dict[str, str] = {
    "amusement": "#ffb000",
    "awe": "#f4e04d",
    "contentment": "#7cc96b",
    "excitement": "#ff6d3a",
    "anger": "#e0282e",
    "disgust": "#9b8f1e",
    "fear": "#9d4edd",
    "sadness": "#3a86ff",
}
#: opacity of a stimulus layer, and of a rejected one (kept visible but faint)
OPACITY = 0.55
REJECTED_OPACITY = 0.15


# Image layers ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PaintingInfo:
    """What an Image layer's ``metadata["emosem"]`` says about the painting (all optional)."""

    source_path: str | None = None
    file_name: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    passthrough: tuple[dict[str, Any], ...] = ()
    dataset: str | None = None
    painting: str | None = None


def image_metadata(**fields: Any) -> dict[str, Any]:
    """An Image layer's ``metadata`` for :class:`PaintingInfo` fields (None values left out)."""
    unknown = set(fields) - set(PaintingInfo.__dataclass_fields__)
    if unknown:
        raise TypeError(f"unknown painting fields: {', '.join(sorted(unknown))}")
    return {METADATA_KEY: {key: value for key, value in fields.items() if value is not None}}


def painting_info(metadata: dict[str, Any] | None) -> PaintingInfo:
    """The :class:`PaintingInfo` of an Image layer's ``metadata`` (empty when it has none)."""
    meta = (metadata or {}).get(METADATA_KEY) or {}
    return PaintingInfo(
        source_path=meta.get("source_path"),
        file_name=meta.get("file_name"),
        metadata=dict(meta.get("metadata") or {}),
        passthrough=tuple(dict(r) for r in meta.get("passthrough") or ()),
        dataset=meta.get("dataset"),
        painting=meta.get("painting"),
    )


# Stimulus layers ---------------------------------------------------------------------------------


def layer_name(emotion: str) -> str:
    """The napari layer name of an emotion's mask: "<emotion> stimulus"."""
    return normalise_emotion(emotion) + LAYER_SUFFIX


def emotion_of_layer(name: str, metadata: dict[str, Any] | None = None) -> str | None:
    """The emotion a Labels layer annotates: from its metadata, else its name (napari may add " [1]")."""
    meta = (metadata or {}).get(METADATA_KEY) or {}
    for candidate in (meta.get("emotion"), _REPEAT.sub("", str(name))):
        if not candidate:
            continue
        text = str(candidate).removesuffix(LAYER_SUFFIX)
        try:
            emotion = normalise_emotion(text)
        except EmoSEMError:
            continue
        if emotion in EMOTIONS:
            return emotion
    return None


def is_overlay(layer) -> bool:
    """Does ``layer`` show other records over a painting (see :data:`OVERLAY_KEY`)?"""
    metadata = getattr(layer, "metadata", None)
    return isinstance(metadata, dict) and OVERLAY_KEY in metadata


def painting_of(metadata: dict[str, Any] | None) -> str | None:
    """The image digest a stimulus layer's ``metadata`` says it belongs to, if recorded."""
    meta = metadata.get(METADATA_KEY) if isinstance(metadata, dict) else None
    return (meta or {}).get("painting")


def mask_digest(mask: np.ndarray) -> str:
    """A short content hash of a mask: tells whether a layer was painted since it was labelled."""
    mask = np.asarray(mask) > 0
    h = hashlib.blake2b(digest_size=8)
    h.update(repr(mask.shape).encode())
    h.update(np.packbits(mask.reshape(-1)).tobytes())
    return h.hexdigest()


def layer_metadata(item: EmotionAnnotation, *, painting: str | None = None) -> dict[str, Any]:
    """What a Labels layer's ``metadata`` carries for ``item`` (``painting``: the image digest)."""
    state = item.to_state()
    state["painting"] = painting
    state["mask_digest"] = mask_digest(item.mask)
    return {METADATA_KEY: state}


def annotation_from_layer(
    name: str,
    data: np.ndarray,
    metadata: dict[str, Any] | None,
    shape: Sequence[int],
) -> EmotionAnnotation | None:
    """An emotion's annotation from a Labels layer's name, data and metadata (None if not one)."""
    emotion = emotion_of_layer(name, metadata)
    if emotion is None:
        return None
    data = np.asarray(data)
    if tuple(data.shape) != tuple(shape[:2]):
        raise EmoSEMError(
            f"layer {name!r} is {' × '.join(map(str, data.shape))} but the painting is "
            f"{shape[0]} × {shape[1]}; a stimulus layer must have the painting's size"
        )
    mask = data > 0
    state = dict((metadata or {}).get(METADATA_KEY) or {})
    if not state:
        # drawn by hand in napari, without this plugin
        return EmotionAnnotation(emotion=emotion, mask=mask, status=Status.ACCEPTED, created=now_iso())
    state["emotion"] = emotion
    item = EmotionAnnotation.from_state(state, mask)
    if state.get("mask_digest") not in (None, mask_digest(mask)):
        # painted in napari after this metadata was written (e.g. saved without the annotator)
        if item.from_model:
            item.mask_edited = True
        if item.status in (Status.NO_STIMULUS, Status.REJECTED) and mask.any():
            item.status = Status.PROPOSED if item.from_model else Status.ACCEPTED
        item.modified = now_iso()
    return item


def session_from_layers(
    image: np.ndarray,
    layers: Iterable[tuple[str, np.ndarray, dict[str, Any]]],
    **kwargs: Any,
) -> AnnotationSession:
    """A session from napari Labels layers given as ``(name, data, metadata)`` (not dirty).

    Layers are matched to emotions by their metadata, else by their name; others are ignored. A
    layer without this plugin's metadata counts as a person's annotation.
    """
    session = AnnotationSession(image, **kwargs)
    for name, data, metadata in layers:
        item = annotation_from_layer(name, data, metadata, session.shape)
        if item is not None:
            session.load(item)
    return session


def label_colormap(emotion: str):
    from napari.utils.colormaps import DirectLabelColormap  # here: `emosem` commands import this module


    return DirectLabelColormap(color_dict={None: "transparent", 0: "transparent", 1: EMOTION_COLORS[emotion]})


def stimulus_layer_kwargs(item: EmotionAnnotation, *, painting: str, image_layer=None) -> dict[str, Any]:
    """Keyword arguments for ``viewer.add_labels`` / LayerData of an emotion's mask."""
    kwargs: dict[str, Any] = {
        "name": layer_name(item.emotion),
        "metadata": layer_metadata(item, painting=painting),
        "colormap": label_colormap(item.emotion),
        "opacity": REJECTED_OPACITY if item.status == Status.REJECTED else OPACITY,
        "blending": "translucent",
    }
    if image_layer is not None:
        kwargs["scale"] = tuple(image_layer.scale[-2:])
        kwargs["translate"] = tuple(image_layer.translate[-2:])
    return kwargs


def mask_to_labels(mask: np.ndarray) -> np.ndarray:
    # uint8 keeps eight full-resolution layers of a large painting affordable
    return np.asarray(mask, dtype=np.uint8)


def add_layer_data(viewer, layer_data: Iterable[tuple[Any, dict, str]]):
    """Add reader-style ``(data, kwargs, kind)`` layers to ``viewer``; returns the Image layer."""
    image = None
    for data, kwargs, kind in layer_data:
        layer = getattr(viewer, f"add_{kind}")(data, **kwargs)
        if kind == "image":
            image = layer
    return image

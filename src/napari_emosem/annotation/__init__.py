"""The annotation of one painting, independent of any user interface (no Qt, no napari).

One module per job:

* :mod:`.records`: :class:`EmotionAnnotation` (one emotion's mask, text, provenance, decision),
  :class:`Status`, and the one rule for a person's work (:attr:`EmotionAnnotation.reviewed`);
* :mod:`.session`: :class:`AnnotationSession`, the state machine of one painting's annotation,
  the only writer of that state, emitting ``events.changed`` for its observers;
* :mod:`.edits`: how a proposal, a refinement, a stroke or an explanation merges into an annotation;
* :mod:`.visit_time`: the active time of one visit, added to the records on export;
* :mod:`.autosave`: unexported work in one file per painting;
* :mod:`.dataset`: between annotations and a stimulus dataset's records (export, open).

How napari shows an annotation (layer names and metadata) is the plugin's business:
:mod:`napari_emosem._layers`.
"""

from .autosave import AUTOSAVE_FORMAT, AutosaveInfo
from .dataset import PASSTHROUGH_FIELDS, ExportResult, annotation_from_stimulus, passthrough_record
from .records import HUMAN, EmotionAnnotation, Status
from .session import AnnotationSession, SessionEvents

__all__ = [
    "AUTOSAVE_FORMAT",
    "HUMAN",
    "PASSTHROUGH_FIELDS",
    "AnnotationSession",
    "AutosaveInfo",
    "EmotionAnnotation",
    "ExportResult",
    "SessionEvents",
    "Status",
    "annotation_from_stimulus",
    "passthrough_record",
]

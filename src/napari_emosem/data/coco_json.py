"""The document as JSON: ``annotations.json`` and the painting entries of journal lines.

Serialising only; what the fields mean is in ``docs/dataset-format.md`` and what a reader accepts
in :mod:`.validate`.
"""

from __future__ import annotations

from typing import Any

from .. import __version__
from ..emotions import EMOTIONS, POSITIVE, SOMETHING_ELSE
from .records import METADATA_KEYS, Painting, now_iso
from .rle import empty_rle, rle_bbox
from .validate import CATEGORY_IDS, FORMAT_NAME, FORMAT_VERSION, Document, StoredRecord


def supercategory(emotion: str) -> str:
    if emotion == SOMETHING_ELSE:
        return "other"
    return "positive" if emotion in POSITIVE else "negative"


def document_json(doc: Document) -> dict[str, Any]:
    now = now_iso()
    info = dict(doc.info)
    info.setdefault("description", "Emotion stimuli in paintings (napari-emosem)")
    info.setdefault("version", "1.0")
    info.setdefault("year", int(now[:4]))
    info.setdefault("date_created", now)
    info.update(
        format=FORMAT_NAME,
        format_version=FORMAT_VERSION,
        date_modified=now,
        writer=f"napari-emosem {__version__}",
    )
    images = []
    annotations = []
    for p in doc.paintings.values():
        images.append(image_json(p))
        annotations.extend(annotation_json(record, p) for record in doc.records.get(p.id, []))
    out: dict[str, Any] = {"info": info}
    out.update(doc.extra)
    out["images"] = images
    out["categories"] = [
        {"id": CATEGORY_IDS[e], "name": e, "supercategory": supercategory(e)} for e in (*EMOTIONS, SOMETHING_ELSE)
    ]
    out["annotations"] = annotations
    return out


def painting_json(painting: Painting, records: list[StoredRecord]) -> dict[str, Any]:
    """A painting's whole state as a journal line holds it (see :func:`.validate.apply_entry`)."""
    return {"image": image_json(painting), "annotations": [annotation_json(r, painting) for r in records]}


def image_json(p: Painting) -> dict[str, Any]:
    entry = {"id": p.id, "file_name": p.file_name, "width": p.width, "height": p.height}
    for key in METADATA_KEYS:
        if key in p.metadata:
            entry[key] = p.metadata[key]
    entry.update({k: v for k, v in p.metadata.items() if k not in entry})
    return entry


def annotation_json(record: StoredRecord, painting: Painting) -> dict[str, Any]:
    s = record.stimulus
    rle = s._stored_rle()
    has_mask = rle is not None
    if rle is None:
        rle = empty_rle(painting.height, painting.width)
    ann: dict[str, Any] = {
        "id": record.id,
        "image_id": painting.id,
        "category_id": CATEGORY_IDS[s.emotion],
        "segmentation": rle.to_json(),
        "area": rle.area,
        "bbox": rle_bbox(rle),
        # one region per record, not a COCO "crowd": COCOeval would otherwise ignore matches
        "iscrowd": 0,
        "explanation": s.explanation,
        "explanations": list(s.explanations),
        "source": s.source,
        "edited": s.edited,
        "reviewed": s.reviewed,
        "adjudicated": s.adjudicated,
        "annotator": s.annotator,
        "created": s.created,
        "modified": s.modified,
        "score": s.score,
        # 0 rather than 0.0 for drafts: integers are what JSON readers parse fastest
        "annotation_seconds": int(s.annotation_seconds) if s.annotation_seconds.is_integer() else s.annotation_seconds,
        "no_stimulus": s.no_stimulus,
        "has_mask": has_mask,
    }
    ann.update(s.extra)
    return ann

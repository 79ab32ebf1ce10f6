"""The content hash of a dataset: what training reads, and nothing else (see
:meth:`.StimulusDataset.content_hash`)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

from .validate import FORMAT_NAME, Document

#: Version of :meth:`StimulusDataset.content_hash`'s recipe (not the file format's: a dataset of
#: format 1 read by this version hashes as it did)
HASH_SCHEME = 1


class ContentHasher:
    """Hashes documents, remembering each image file's digest by path, mtime and size."""

    def __init__(self) -> None:
        self._digest_cache: dict[tuple[str, int, int], str] = {}

    def content_hash(self, doc: Document, image_file: Callable[[str], Path]) -> str:
        """Every painting's file bytes (found by ``image_file``) and size, and each record's
        emotion, mask, explanations, no-stimulus flag and whether it is adjudicated."""
        h = hashlib.sha256()
        h.update(f"{FORMAT_NAME} {HASH_SCHEME}\n".encode())
        order = {"adjudicated": 0, "reviewed": 1, "draft": 2}
        for p in sorted(doc.paintings.values(), key=lambda p: p.file_name):
            records = sorted(
                (r.stimulus for r in doc.records.get(p.id, [])),
                key=lambda s: (s.emotion, order[s.slot.kind], s.slot.label),
            )
            entry = {
                "file_name": p.file_name,
                "size": [p.width, p.height],
                "file": self._file_digest(image_file(p.file_name)),
                "records": [
                    [
                        s.emotion,
                        None if s._stored_rle() is None else s._stored_rle().counts,
                        s.explanations,
                        s.no_stimulus,
                    ]
                    + (["adjudicated"] if s.adjudicated else [])
                    for s in records
                ],
            }
            h.update(json.dumps(entry, sort_keys=True, ensure_ascii=False).encode("utf-8"))
            h.update(b"\n")
        return h.hexdigest()

    def _file_digest(self, path: Path) -> str:
        try:
            st = path.stat()
        except OSError:
            return "missing"
        key = (str(path), st.st_mtime_ns, st.st_size)
        digest = self._digest_cache.get(key)
        if digest is None:
            b = hashlib.blake2b(digest_size=16)
            with open(path, "rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    b.update(chunk)
            digest = self._digest_cache[key] = b.hexdigest()
        return digest

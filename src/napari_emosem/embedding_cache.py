"""Image embeddings cached on disk, keyed by the painting's pixels and the encoder's identity.

Encoding is the expensive step (about 14 s for ViT-B on a 2-core CPU; proposing from an embedding
takes milliseconds), and a frozen encoder gives the same embedding every time, so each painting is
encoded once: reopening it, refining, re-proposing and every training epoch reuse the file.
The folder is bounded in size; the least recently used files go first.
"""

from __future__ import annotations

import contextlib
import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from . import paths

DEFAULT_MAX_BYTES = 2 * 1024**3


def default_max_bytes() -> int:
    """The cache's bound: ``EMOSEM_EMBEDDING_CACHE_MB`` megabytes (0 turns the disk cache off),
    else 2 GiB. A value that is not a number raises a one-line EmoSEMError."""
    from .errors import EmoSEMError

    env = os.environ.get("EMOSEM_EMBEDDING_CACHE_MB", "").strip()
    if not env:
        return DEFAULT_MAX_BYTES
    try:
        megabytes = float(env)
    except ValueError:
        megabytes = float("nan")
    if not (0 <= megabytes < 1 << 40):  # NaN, negative, inf, absurd
        raise EmoSEMError(
            f"EMOSEM_EMBEDDING_CACHE_MB={env!r} is not a size in megabytes; set a number such as "
            "2048 (0 turns the disk cache off), or unset it for the default 2 GiB"
        )
    return int(megabytes * 1024**2)


@dataclass
class CachedEmbedding:
    embedding: object  # torch.Tensor (C, h, w), float32, on the CPU
    input_size: tuple[int, int]
    original_size: tuple[int, int]


class EmbeddingCache:
    """A size-bounded folder of ``<encoder key>/<image digest>.safetensors`` plus a small RAM LRU."""

    def __init__(self, root: str | os.PathLike | None = None, *, max_bytes: int | None = None, memory_items: int = 4):
        self.root = Path(root) if root is not None else paths.embeddings_dir()
        self.max_bytes = default_max_bytes() if max_bytes is None else int(max_bytes)
        self._memory: OrderedDict[tuple[str, str], CachedEmbedding] = OrderedDict()
        self._memory_items = memory_items
        self.hits = 0
        self.misses = 0

    def _path(self, encoder_key: str, digest: str) -> Path:
        return self.root / encoder_key / f"{digest}.safetensors"

    def get(self, encoder_key: str, digest: str) -> CachedEmbedding | None:
        key = (encoder_key, digest)
        if key in self._memory:
            self._memory.move_to_end(key)
            self.hits += 1
            return self._memory[key]
        path = self._path(encoder_key, digest)
        try:
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as handle:
                meta = handle.metadata()
                tensor = handle.get_tensor("embedding")
            item = CachedEmbedding(
                tensor,
                (int(meta["input_h"]), int(meta["input_w"])),
                (int(meta["original_h"]), int(meta["original_w"])),
            )
            os.utime(path)  # recently used: evicted last
        except (OSError, KeyError, ValueError, Exception):  # noqa: BLE001 - a bad cache file is a miss
            self.misses += 1
            return None
        self.hits += 1
        self._remember(key, item)
        return item

    def put(self, encoder_key: str, digest: str, item: CachedEmbedding) -> None:
        self._remember((encoder_key, digest), item)
        if self.max_bytes <= 0:
            return
        from safetensors.torch import save

        from ._io import atomic_write_bytes

        data = save(
            {"embedding": item.embedding.detach().cpu().contiguous()},
            metadata={
                "input_h": str(item.input_size[0]),
                "input_w": str(item.input_size[1]),
                "original_h": str(item.original_size[0]),
                "original_w": str(item.original_size[1]),
            },
        )
        try:
            atomic_write_bytes(self._path(encoder_key, digest), data)
        except OSError:
            return  # a full or read-only disk only costs speed
        self.evict()

    def _remember(self, key, item) -> None:
        self._memory[key] = item
        self._memory.move_to_end(key)
        while len(self._memory) > self._memory_items:
            self._memory.popitem(last=False)

    def files(self) -> list[Path]:
        return [p for p in self.root.glob("*/*.safetensors")] if self.root.is_dir() else []

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.files())

    def evict(self) -> None:
        """Delete least recently used files until the folder fits ``max_bytes``."""
        entries = []
        for p in self.files():
            try:
                st = p.stat()
            except FileNotFoundError:
                continue
            entries.append((st.st_mtime, st.st_size, p))
        total = sum(size for _, size, _ in entries)
        for _, size, path in sorted(entries):
            if total <= self.max_bytes:
                break
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            total -= size

    def clear(self) -> None:
        self._memory.clear()
        for p in self.files():
            p.unlink(missing_ok=True)

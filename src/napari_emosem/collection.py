"""Proposals for a collection of paintings in batches: how ``emosem propose FOLDER`` keeps a GPU busy.

One painting at a time, a GPU waits while the CPU decodes and resizes each JPEG, encodes one
painting per call and drafts 8 sentences per ``generate`` call. Here DataLoader worker processes
read, decode and preprocess the next paintings while the model works; the encoder takes a batch of
paintings per call; each painting's emotions are decoded as always (per emotion, as the paper
specifies); and the drafts of every (painting, emotion) pair of the batch come from one batched
``generate`` call (:meth:`EmoSEMPredictor.propose_batch`). Writing stays per painting, in
:func:`napari_emosem.propose.propose_paintings`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import EmoSEMError

#: what ViT-B needs per painting in one batched encode at 1024 px (activations, float32), with room
GPU_BYTES_PER_PAINTING = 3 * 1024**3
MAX_AUTO_BATCH = 32


@dataclass
class ReadPainting:
    path: Path
    image: np.ndarray | None = None
    #: (3, S, S) preprocessed tensor and its Geometry, from a worker
    preprocessed: tuple | None = None
    digest: str | None = None
    error: str | None = None


class PaintingFiles:
    """A map-style dataset: index -> the painting read, decoded and preprocessed (in a worker)."""

    def __init__(self, paths: Sequence[Path], img_size: int, mean, std):
        self.paths = list(paths)
        self.img_size = img_size
        self.mean, self.std = mean, std

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> ReadPainting:
        from .image_io import image_digest, load_image
        from .modeling.transforms import preprocess_image

        path = self.paths[index]
        try:
            image = load_image(path)
        except EmoSEMError as exc:
            return ReadPainting(path, error=str(exc))
        x, geometry = preprocess_image(image, self.img_size, self.mean, self.std)
        return ReadPainting(path, image, (x, geometry), image_digest(image))


def auto_batch_size(device: str) -> int:
    """Paintings per batch: by free GPU memory on CUDA; 1 elsewhere (a CPU is busy with one)."""
    import torch

    if not str(device).startswith("cuda"):
        return 1
    free, _ = torch.cuda.mem_get_info(torch.device(device))
    return max(1, min(MAX_AUTO_BATCH, int(free // GPU_BYTES_PER_PAINTING)))


def default_workers(device: str) -> int:
    """Decoding workers: enough to feed a GPU; one on a CPU (it shares the cores with the model)."""
    cores = os.cpu_count() or 1
    if str(device).startswith("cuda"):
        return max(1, min(8, cores - 1))
    return 1 if cores > 1 else 0


def _keep(batch):
    return batch


def _one_thread(_worker_id: int) -> None:
    import torch

    torch.set_num_threads(1)  # a worker decodes; the model's threads are in the main process


def batched_proposals(
    paths: Sequence[Path],
    predictor,
    emotions: Sequence[str],
    *,
    batch_size: int,
    num_workers: int | None = None,
) -> Iterator[tuple[Path, np.ndarray | None, list | None, str | None]]:
    """``(path, image, proposals, None)`` or ``(path, None, None, error)`` per painting, in order."""
    import torch
    from torch.utils.data import DataLoader

    from .modeling.image_encoder import PIXEL_MEAN, PIXEL_STD

    device = getattr(predictor, "device", "cpu")
    workers = default_workers(device) if num_workers is None else num_workers
    files = PaintingFiles(
        paths, predictor.model.config.encoder.img_size, torch.tensor(PIXEL_MEAN), torch.tensor(PIXEL_STD)
    )
    loader = DataLoader(
        files,
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=_keep,
        worker_init_fn=_one_thread if workers else None,
        prefetch_factor=2 if workers else None,
        pin_memory=False,
    )
    for batch in loader:
        ready = [item for item in batch if item.error is None]
        results = {}
        if ready:
            proposals = predictor.propose_batch(
                [item.image for item in ready],
                emotions,
                explain=True,
                preprocessed=[item.preprocessed for item in ready],
                digests=[item.digest for item in ready],
            )
            results = {id(item): p for item, p in zip(ready, proposals, strict=True)}
        for item in batch:
            if item.error is not None:
                yield item.path, None, None, item.error
            else:
                yield item.path, item.image, results[id(item)], None

"""Prefetch: the campaign's next painting loaded, encoded and proposed while the annotator works."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...errors import EmoSEMError
from ...image_io import image_digest, load_image, to_rgb_uint8
from ...predictor import Proposal
from .base import Failed, Step
from .model import CampaignModelJob


@dataclass(frozen=True)
class Prefetched:
    """A painting made ready ahead of the annotator: its pixels, and the model's drafts for the
    emotions it had no record of."""

    file_name: str
    image: np.ndarray
    digest: str
    proposals: tuple[Proposal, ...]
    #: the model spec, ``source`` and description the drafts come from
    spec: str
    source: str
    model: str


class PrefetchJob(CampaignModelJob):
    """Read ``path``, encode it with the model in use, propose ``emotions`` and draft their
    explanations, one step each. A background job: the annotator's own jobs pause it between two
    steps, and may give the predictor another painting meanwhile, so every step gives it this
    painting again first (the embedding cache makes that cheap)."""

    name = "prefetch"

    def __init__(
        self,
        controller,
        cache,
        file_name: str,
        path: Path,
        emotions: Sequence[str],
        *,
        on_ready: Callable[[Prefetched], None],
        on_failed: Callable[[str], None],
    ):
        super().__init__(controller, cache)
        self.file_name, self.path, self.emotions = file_name, Path(path), list(emotions)
        self._on_ready, self._on_failed = on_ready, on_failed

    def work(self) -> Iterator[Step]:
        try:
            rgb = to_rgb_uint8(load_image(self.path), self.file_name)
            digest = image_digest(rgb)
            yield Step(f"prefetch: read {self.file_name}", kind="loading")
            predictor, _, _ = self.predictor(with_painting=False)
            self.cache.set_image(predictor, rgb, digest)
            yield Step(f"prefetch: encoded {self.file_name}", kind="encoded")
            proposals: list[Proposal] = []
            if self.emotions:
                self.cache.set_image(predictor, rgb, digest)
                proposals = list(predictor.propose(self.emotions, explain=False))
                yield Step(f"prefetch: {len(proposals)} masks for {self.file_name}", kind="masks")
                for i, proposal in enumerate(proposals):
                    self.cache.set_image(predictor, rgb, digest)
                    text = predictor.explain(proposal.emotion, proposal.mask)
                    proposals[i] = dataclasses.replace(proposal, explanation=text)
                    yield Step(f"prefetch: explained {proposal.emotion}", kind="explanation")
        except EmoSEMError as exc:
            return Failed(f"{self.file_name}: {exc}")
        return Prefetched(
            self.file_name, rgb, digest, tuple(proposals), self.spec, predictor.source, predictor.description
        )

    def on_done(self, result: Prefetched) -> None:
        self._on_ready(result)

    def on_failed(self, message: str) -> None:
        self._on_failed(message)

"""The consensus of a pair's annotators: per pixel, the fraction who marked it; and the majority
mask. Defined in ``docs/annotators.md``."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import EmoSEMError


def consensus_map(masks: Sequence[np.ndarray | None], shape: tuple[int, int]) -> np.ndarray:
    """float32 (H, W) in [0, 1]: the fraction of ``masks`` that mark each pixel.

    One entry per annotator of the pair; ``None`` (or an empty mask) is an annotator who said *no
    stimulus*, and counts as a vote for no pixel. Annotators who did not annotate the pair are not
    in ``masks`` at all. With no annotator the map is all zeros.
    """
    total = np.zeros(shape, np.float32)
    if not masks:
        return total
    for mask in masks:
        if mask is None:
            continue
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != tuple(shape):
            raise EmoSEMError(
                f"an annotator's mask is {mask.shape[1]} × {mask.shape[0]} px "
                f"but the painting is {shape[1]} × {shape[0]}"
            )
        total += mask
    return total / np.float32(len(masks))


def majority_mask(consensus: np.ndarray) -> np.ndarray:
    """The pixels marked by at least half the annotators (what a single COCO record can hold)."""
    # fractions k/n are exact enough in float32 for n < 2**24 annotators; 0.5 itself counts
    return np.asarray(consensus) >= 0.5

"""Settings of the cold-start ``starter`` model (no learned weights, so these are all it has)."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import EmoSEMError


@dataclass(frozen=True)
class StarterConfig:
    """How the starter model cuts a painting into regions and picks them.

    Everything is computed on a downscaled working copy (``working_side`` on its longest side),
    so time and memory do not grow with the painting; masks are upsampled at the end.
    """

    #: longest side of the working copy, in pixels (regions and features are computed there)
    working_side: int = 448
    #: SLIC superpixels before merging (the unit of click refinement)
    n_superpixels: int = 300
    #: SLIC's colour/space trade-off: higher gives rounder, more regular superpixels
    compactness: float = 12.0
    #: merged regions: at least / at most this many (a flat painting needs fewer)
    min_regions: int = 5
    max_regions: int = 10
    #: between min and max regions, keep merging neighbours closer than this CIE76 ΔE
    merge_delta_e: float = 8.0
    #: regions smaller than this share of the painting are merged into a neighbour
    min_region_fraction: float = 0.01
    #: a proposal joins up to this many of the best-scoring regions ...
    max_regions_per_mask: int = 2
    #: ... when their score is within this margin of the best one
    join_margin: float = 0.03
    #: SAM automatic mask generator (used only when a SAM model is given)
    sam_points_per_side: int = 16
    sam_pred_iou_thresh: float = 0.86
    sam_stability_score_thresh: float = 0.92

    def __post_init__(self) -> None:
        problems = []
        if self.working_side < 32:
            problems.append(f"working_side={self.working_side} (needs ≥ 32)")
        if self.n_superpixels < 2:
            problems.append(f"n_superpixels={self.n_superpixels} (needs ≥ 2)")
        if self.compactness <= 0:
            problems.append(f"compactness={self.compactness} (needs > 0)")
        if not 1 <= self.min_regions <= self.max_regions:
            problems.append(
                f"min_regions={self.min_regions}, max_regions={self.max_regions} "
                "(needs 1 ≤ min_regions ≤ max_regions)"
            )
        if self.max_regions > 255:
            problems.append(f"max_regions={self.max_regions} (needs ≤ 255)")
        if not 0 <= self.min_region_fraction < 0.5:
            problems.append(f"min_region_fraction={self.min_region_fraction} (needs 0 ≤ f < 0.5)")
        if self.max_regions_per_mask < 1:
            problems.append(f"max_regions_per_mask={self.max_regions_per_mask} (needs ≥ 1)")
        if self.join_margin < 0:
            problems.append(f"join_margin={self.join_margin} (needs ≥ 0)")
        if self.sam_points_per_side < 1:
            problems.append(f"sam_points_per_side={self.sam_points_per_side} (needs ≥ 1)")
        if problems:
            raise EmoSEMError("invalid StarterConfig: " + "; ".join(problems))

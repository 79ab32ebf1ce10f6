"""Candidate regions: a painting cut into a handful of coherent parts (sky, figure, dress, ground).

Two sources, both on the downscaled working copy:

- scikit-image (always available): SLIC superpixels, then agglomerative merging of neighbours
  on mean CIE Lab colour, into ``min_regions``–``max_regions`` connected regions;
- SAM's automatic mask generator (when a SAM model is given): the most stable masks, painted
  largest first so that smaller parts stay on top; what no mask covers is one more region.

Either way the result keeps the superpixels inside each region: clicks are refined at that
finer level.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from .config import StarterConfig

log = logging.getLogger(__name__)

#: values of :attr:`Segmentation.source`
SOURCE_SUPERPIXELS = "superpixels"
SOURCE_SAM = "sam"

#: CIE76 ΔE under which two neighbouring regions count as the same paint and are always merged
#: (ΔE ≈ 2.3 is a just-noticeable difference; brushwork noise moves region means by a few units)
SAME_PAINT_DELTA_E = 5.0


# Painting <-> working copy ---------------------------------------------------------------------


def working_shape(shape: tuple[int, ...], longest_side: int) -> tuple[int, int]:
    """(h, w) of the working copy: longest side ``longest_side``, never larger than the painting."""
    height, width = int(shape[0]), int(shape[1])
    scale = min(1.0, longest_side / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


def downscale(rgb: np.ndarray, longest_side: int) -> np.ndarray:
    """An area-averaged RGB uint8 copy of ``rgb`` with its longest side at most ``longest_side``.

    Very large paintings are first box-averaged in bands of rows (uint32 sums, a few MB at a
    time) so that no float or PIL copy of the full painting is made.
    """
    from PIL import Image

    h, w = working_shape(rgb.shape, longest_side)
    if (h, w) == rgb.shape[:2]:
        return np.ascontiguousarray(rgb)
    factor = min(rgb.shape[0] // h, rgb.shape[1] // w) // 2
    if factor >= 2:
        rgb = _box_reduce(rgb, factor)
    # Lanczos with PIL's own antialiasing for the last (≤ 4×) step
    return np.asarray(Image.fromarray(rgb).resize((w, h), Image.Resampling.LANCZOS), dtype=np.uint8)


def _box_reduce(rgb: np.ndarray, k: int, band_rows: int = 32) -> np.ndarray:
    height, width = rgb.shape[:2]
    row_edges = np.arange(0, height, k)
    col_edges = np.arange(0, width, k)
    col_counts = np.diff(np.append(col_edges, width))
    out = np.empty((len(row_edges), len(col_edges), 3), np.uint8)
    for start in range(0, len(row_edges), band_rows):
        edges = row_edges[start : start + band_rows]
        stop = edges[-1] + k
        band = rgb[edges[0] : stop]
        sums = np.add.reduceat(band, edges - edges[0], axis=0, dtype=np.uint32)
        sums = np.add.reduceat(sums, col_edges, axis=1)
        row_counts = np.diff(np.append(edges, min(stop, height)))
        counts = (row_counts[:, None] * col_counts[None, :])[..., None]
        out[start : start + len(edges)] = (sums + counts // 2) // counts
    return out


@dataclass(frozen=True)
class Grid:
    """Nearest-neighbour correspondence between the painting (H, W) and its working copy (h, w).

    Painting row ``r`` maps to working row ``rows[r]``; the rows mapping to one working row are
    contiguous, so a painting-size mask reduces to per-working-pixel coverage exactly, and a
    working-size mask upsampled with :meth:`upsample` reduces back to itself.
    """

    full_shape: tuple[int, int]
    small_shape: tuple[int, int]
    rows: np.ndarray = field(repr=False)
    cols: np.ndarray = field(repr=False)

    @classmethod
    def between(cls, full_shape: tuple[int, ...], small_shape: tuple[int, ...]) -> Grid:
        big_h, big_w = int(full_shape[0]), int(full_shape[1])
        h, w = int(small_shape[0]), int(small_shape[1])
        rows = np.minimum(((np.arange(big_h) + 0.5) * (h / big_h)).astype(np.intp), h - 1)
        cols = np.minimum(((np.arange(big_w) + 0.5) * (w / big_w)).astype(np.intp), w - 1)
        return cls((big_h, big_w), (h, w), rows, cols)

    def upsample(self, small: np.ndarray) -> np.ndarray:
        """A working-size map at the painting's size (nearest neighbour; any dtype)."""
        if self.small_shape == self.full_shape:
            return small.copy()
        return small.take(self.rows, axis=0).take(self.cols, axis=1)

    def coverage(self, mask: np.ndarray) -> np.ndarray:
        """float32 (h, w): the share of each working pixel's painting pixels inside ``mask``."""
        mask = np.asarray(mask)
        if mask.dtype != bool:
            mask = mask != 0
        if self.small_shape == self.full_shape:
            return mask.astype(np.float32)
        h, w = self.small_shape
        row_starts = np.searchsorted(self.rows, np.arange(h))
        col_starts = np.searchsorted(self.cols, np.arange(w))
        counts = np.add.reduceat(mask.view(np.uint8), row_starts, axis=0, dtype=np.uint32)
        counts = np.add.reduceat(counts, col_starts, axis=1)
        row_n = np.diff(np.append(row_starts, self.full_shape[0]))
        col_n = np.diff(np.append(col_starts, self.full_shape[1]))
        return (counts / (row_n[:, None] * col_n[None, :])).astype(np.float32)

    def to_small(self, points: np.ndarray) -> np.ndarray:
        """(N, 2) painting (row, col) points -> int (N, 2) working-copy pixels."""
        points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        r = np.clip(points[:, 0].astype(np.intp), 0, self.full_shape[0] - 1)
        c = np.clip(points[:, 1].astype(np.intp), 0, self.full_shape[1] - 1)
        return np.stack([self.rows[r], self.cols[c]], axis=1)


# Segmentation ----------------------------------------------------------------------------------


@dataclass
class Segmentation:
    """Regions of the working copy, each a union of superpixels."""

    #: int32 (h, w): superpixel id of each working pixel, 0..n_superpixels-1
    superpixels: np.ndarray
    #: int (n_superpixels,): region of each superpixel, 0..n_regions-1
    sp_region: np.ndarray
    #: where the regions came from: "superpixels" (scikit-image) or "sam"
    source: str
    #: int32 (h, w): region id of each working pixel
    regions: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.regions = self.sp_region[self.superpixels].astype(np.int32)

    @property
    def n_regions(self) -> int:
        return int(self.sp_region.max()) + 1

    @property
    def n_superpixels(self) -> int:
        return len(self.sp_region)


def segment(small: np.ndarray, lab: np.ndarray, config: StarterConfig, sam=None) -> Segmentation:
    """Regions of the working copy ``small`` (RGB uint8) whose CIE Lab is ``lab``.

    With ``sam`` the automatic mask generator proposes the regions; when it returns nothing
    usable (no mask passes its thresholds, or everything is one region), this falls back to the
    scikit-image regions and says so in the log and in :attr:`Segmentation.source`.
    """
    superpixels = slic_superpixels(small, config)
    if sam is not None:
        painted = sam_label_map(small, sam, config)
        if painted is not None:
            min_pixels = config.min_region_fraction * painted.size
            n = int(painted.max()) + 1
            # SAM's parts are kept as they are: only specks are absorbed and the count capped
            mapping = merge_regions(
                painted, lab, n,
                min_regions=config.max_regions, max_regions=config.max_regions,
                merge_delta_e=0.0, min_pixels=min_pixels,
            )
            regions = mapping[painted]
            if regions.max() >= 1:
                return _intersect(superpixels, regions, SOURCE_SAM)
            log.info("SAM's masks make a single region; using scikit-image regions instead")
        else:
            log.info("SAM's mask generator returned no masks; using scikit-image regions instead")
    n_sp = int(superpixels.max()) + 1
    sp_region = merge_regions(
        superpixels, lab, n_sp,
        min_regions=config.min_regions, max_regions=config.max_regions,
        merge_delta_e=config.merge_delta_e,
        min_pixels=config.min_region_fraction * superpixels.size,
    )
    return Segmentation(superpixels, sp_region, SOURCE_SUPERPIXELS)


def slic_superpixels(small: np.ndarray, config: StarterConfig) -> np.ndarray:
    """SLIC superpixels (Achanta et al. 2012) of the working copy, ids 0..n-1."""
    from skimage.segmentation import slic

    n_segments = max(2, min(config.n_superpixels, small.shape[0] * small.shape[1] // 16))
    # sigma=1 smooths brushwork so superpixels follow forms, not single strokes
    labels = slic(
        small, n_segments=n_segments, compactness=config.compactness, sigma=1.0,
        start_label=0, convert2lab=True, enforce_connectivity=True,
    )
    _, labels = np.unique(labels, return_inverse=True)  # dense ids even if SLIC skipped some
    return labels.reshape(small.shape[:2]).astype(np.int32)


class _RegionGraph:
    """Regions of a label map with their area, mean Lab colour and neighbours; merged pair by
    pair. ``ward`` and ``delta`` hold each adjacent active pair's Ward cost and colour distance
    (inf elsewhere), kept up to date by every merge."""

    def __init__(self, labels: np.ndarray, lab: np.ndarray, n: int) -> None:
        self.flat = labels.ravel()
        self.area = np.bincount(self.flat, minlength=n).astype(np.float64)
        self.sums = np.stack(
            [np.bincount(self.flat, weights=lab[..., c].ravel(), minlength=n) for c in range(3)], axis=1
        )
        present = self.area > 0
        self.mean = np.zeros((n, 3))
        self.mean[present] = self.sums[present] / self.area[present, None]

        self.adjacency = np.zeros((n, n), dtype=bool)
        for a, b in ((labels[:, :-1], labels[:, 1:]), (labels[:-1, :], labels[1:, :])):
            differ = a != b
            self.adjacency[a[differ], b[differ]] = True
        self.adjacency |= self.adjacency.T

        self.active = present.copy()
        self.owner = np.arange(n)
        self.ward = np.full((n, n), np.inf)
        self.delta = np.full((n, n), np.inf)
        self.count = int(self.active.sum())
        for i in np.flatnonzero(self.active):
            self._update(i)

    def _update(self, i: int) -> None:
        nbrs = np.flatnonzero(self.adjacency[i] & self.active)
        d2 = ((self.mean[nbrs] - self.mean[i]) ** 2).sum(axis=1)
        self.ward[i, :] = self.delta[i, :] = np.inf
        self.ward[:, i] = self.delta[:, i] = np.inf
        w = self.area[i] * self.area[nbrs] / (self.area[i] + self.area[nbrs]) * d2
        self.ward[i, nbrs] = self.ward[nbrs, i] = w
        self.delta[i, nbrs] = self.delta[nbrs, i] = np.sqrt(d2)

    def next_pair(
        self, *, min_regions: int, max_regions: int, merge_delta_e: float, min_pixels: float
    ) -> tuple[int, int] | None:
        """The pair to merge next by :func:`merge_regions`'s rules, or None to stop."""
        small = np.flatnonzero(self.active & (self.area < min_pixels))
        if len(small):
            i = int(small[np.argmin(self.area[small])])
            if not np.isfinite(self.delta[i]).any():
                return None  # an isolated speck (cannot happen on a connected label map)
            return i, int(np.argmin(self.delta[i]))
        if self.count > max_regions:
            i, j = np.unravel_index(int(np.argmin(self.ward)), self.ward.shape)
            return int(i), int(j)
        # down to min_regions, neighbours closer than merge_delta_e; below it, only
        # neighbours of the same paint (a flat painting should not be split at random)
        limit = merge_delta_e if self.count > min_regions else min(merge_delta_e, SAME_PAINT_DELTA_E)
        i, j = np.unravel_index(int(np.argmin(self.delta)), self.delta.shape)
        return (int(i), int(j)) if self.delta[i, j] < limit else None

    def merge(self, i: int, j: int) -> None:
        """The higher-numbered region joins the lower one."""
        i, j = min(i, j), max(i, j)
        self.sums[i] += self.sums[j]
        self.area[i] += self.area[j]
        self.mean[i] = self.sums[i] / self.area[i]
        self.adjacency[i] |= self.adjacency[j]
        self.adjacency[:, i] = self.adjacency[i]
        self.adjacency[i, i] = False
        self.adjacency[j, :] = self.adjacency[:, j] = False
        self.active[j] = False
        self.ward[j, :] = self.ward[:, j] = self.delta[j, :] = self.delta[:, j] = np.inf
        self.owner[self.owner == j] = i
        self._update(i)
        self.count -= 1

    def regions_in_raster_order(self) -> np.ndarray:
        """Each label's region, regions numbered by first appearance in raster order."""
        n = len(self.owner)
        uniq, first_index = np.unique(self.flat, return_index=True)
        order_keys = np.full(n, np.iinfo(np.int64).max)
        np.minimum.at(order_keys, self.owner[uniq], first_index)
        roots = np.unique(self.owner[uniq])
        roots = roots[np.argsort(order_keys[roots], kind="stable")]
        renumber = np.zeros(n, dtype=np.int64)
        renumber[roots] = np.arange(len(roots))
        return renumber[self.owner]


def merge_regions(
    labels: np.ndarray,
    lab: np.ndarray,
    n: int,
    *,
    min_regions: int,
    max_regions: int,
    merge_delta_e: float,
    min_pixels: float,
) -> np.ndarray:
    """Merge adjacent labels (0..n-1) of ``labels`` into regions; returns each label's region.

    Order of merges:
    1. any region under ``min_pixels`` joins its most similar neighbour (no specks);
    2. above ``max_regions``, the adjacent pair with the smallest Ward cost (area-weighted Lab
       distance, so small distinct parts such as a red vest survive longer than colour noise);
    3. down to ``min_regions``, the adjacent pair closest in colour while closer than
       ``merge_delta_e`` (a flat painting gets fewer regions than a busy one); below
       ``min_regions`` only pairs under :data:`SAME_PAINT_DELTA_E`.
    Regions are numbered by first appearance in raster order, so the result is deterministic.
    """
    graph = _RegionGraph(labels, lab, n)
    while graph.count > 1:
        pair = graph.next_pair(
            min_regions=min_regions, max_regions=max_regions, merge_delta_e=merge_delta_e, min_pixels=min_pixels
        )
        if pair is None:
            break
        graph.merge(*pair)
    return graph.regions_in_raster_order()


def _intersect(superpixels: np.ndarray, regions: np.ndarray, source: str) -> Segmentation:
    """Split superpixels at region borders, so every superpixel lies in one region."""
    n_regions = int(regions.max()) + 1
    combined = superpixels.astype(np.int64) * n_regions + regions
    keys, inverse = np.unique(combined, return_inverse=True)
    return Segmentation(
        inverse.reshape(superpixels.shape).astype(np.int32), (keys % n_regions).astype(np.int64),
        source,
    )


def sam_label_map(small: np.ndarray, sam, config: StarterConfig) -> np.ndarray | None:
    """SAM automatic masks as one label map (0..n-1), or None when SAM proposes nothing.

    The most stable masks (at most ``2 × max_regions``, of at least ``min_region_fraction`` of
    the painting) are painted largest first, so a figure stays on top of the ground it stands
    on; pixels no mask covers become one more label.
    """
    from segment_anything import SamAutomaticMaskGenerator

    generator = SamAutomaticMaskGenerator(
        sam,
        points_per_side=config.sam_points_per_side,
        pred_iou_thresh=config.sam_pred_iou_thresh,
        stability_score_thresh=config.sam_stability_score_thresh,
    )
    records = generator.generate(small)
    min_pixels = config.min_region_fraction * small.shape[0] * small.shape[1]
    records = [r for r in records if r["area"] >= max(1.0, min_pixels)]
    if not records:
        return None
    records.sort(key=lambda r: (-r["stability_score"] * r["predicted_iou"], -r["area"]))
    records = records[: 2 * config.max_regions]
    records.sort(key=lambda r: -r["area"])
    painted = np.full(small.shape[:2], -1, dtype=np.int64)
    for index, record in enumerate(records):
        painted[np.asarray(record["segmentation"], dtype=bool)] = index
    painted[painted < 0] = len(records)
    _, painted = np.unique(painted, return_inverse=True)  # drop fully covered masks
    return painted.reshape(small.shape[:2]).astype(np.int32)

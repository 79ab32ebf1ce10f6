"""``StarterPredictor``: cold-start drafts from colour and regions, with no learned weights.

On a fresh machine nobody has trained EmoSEM yet, so this model gives the annotator first drafts
to correct: it cuts the painting into a handful of regions (scikit-image superpixels, or SAM's
automatic masks when a SAM model is given), scores every region for every emotion from
documented affective features (see ``scoring``), proposes the best region(s) and writes a draft
from the region's own description (see ``describe``). Deterministic, CPU only, no download.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..emotions import EMOTIONS, SOMETHING_ELSE, normalise_emotion
from ..errors import EmoSEMError, UnknownEmotionError, WeightsError
from ..image_io import image_digest, to_rgb_uint8
from ..predictor import Predictor, Proposal, check_points
from .config import StarterConfig
from .describe import colour_families, describe_mask, draft_explanation
from .features import PixelTable, affective_features, region_weights, standardise
from .regions import Grid, Segmentation, downscale, segment
from .scoring import choose_regions, emotion_scores

log = logging.getLogger(__name__)

SAM_MODEL_TYPES = ("vit_b", "vit_l", "vit_h")


@dataclass
class _Painting:
    """Everything ``set_image`` computes for one painting (all at working resolution)."""

    grid: Grid
    key: str  # digest of the working copy: seeds the choice of sentences
    table: PixelTable = field(repr=False)
    lab: np.ndarray = field(repr=False)  # (h·w, 3)
    families: np.ndarray = field(repr=False)  # (h·w,) colour family per pixel
    segmentation: Segmentation = field(repr=False)
    painting_features: np.ndarray = field(repr=False)  # (F,)
    region_z: np.ndarray = field(repr=False)  # (R, F) standardised region features
    sp_centroid: np.ndarray = field(repr=False)  # (S, 2) superpixel centroids (row, col)
    sp_lab: np.ndarray = field(repr=False)  # (S, 3) superpixel mean Lab


class StarterPredictor(Predictor):
    """The cold-start model: region and colour heuristics from the literature, no training.

    Parameters
    ----------
    config:
        working resolution, number of regions, SAM generator thresholds (:class:`StarterConfig`).
    sam_checkpoint:
        a segment-anything ``.pth`` file; its automatic mask generator then proposes the regions
        (slow on a CPU: one ViT encoding per painting). Without it, scikit-image regions.
    sam_model_type:
        the checkpoint's architecture: ``"vit_b"``, ``"vit_l"`` or ``"vit_h"``.
    device:
        where the SAM model runs (``"cpu"``, ``"cuda"``, ...); unused without SAM.
    sam:
        a ready ``segment_anything.Sam`` model, instead of ``sam_checkpoint`` (used as it is).
    """

    name = "starter"
    cold_start = True

    def __init__(
        self,
        config: StarterConfig | None = None,
        *,
        sam_checkpoint: str | os.PathLike | None = None,
        sam_model_type: str = "vit_b",
        device: str = "cpu",
        sam=None,
    ) -> None:
        self.config = config if config is not None else StarterConfig()
        if sam is not None and sam_checkpoint is not None:
            raise EmoSEMError("give either sam_checkpoint or a ready sam model, not both")
        self._sam = sam
        if sam_checkpoint is not None:
            self._sam = load_sam(sam_checkpoint, sam_model_type, device)
        self._painting: _Painting | None = None

    # Interface ---------------------------------------------------------------------------------

    @property
    def description(self) -> str:
        if self._sam is not None:
            return "starter (cold-start drafts: SAM regions and colour heuristics, no learned emotion weights)"
        return "starter (cold-start drafts: colour and region heuristics, no learned weights)"

    @property
    def uses_sam(self) -> bool:
        """Whether a SAM model proposes the regions (it may still fall back, see region_source)."""
        return self._sam is not None

    @property
    def region_source(self) -> str | None:
        """Where the current painting's regions came from: ``"sam"`` or ``"superpixels"``
        (also when SAM was given but its generator returned nothing); None before set_image."""
        return None if self._painting is None else self._painting.segmentation.source

    @property
    def region_labels(self) -> np.ndarray:
        """uint8 (H, W): the current painting's candidate regions (0..n-1) at full resolution."""
        painting = self._require_painting()
        # StarterConfig caps regions at 255: one byte per pixel keeps huge paintings cheap
        return painting.grid.upsample(painting.segmentation.regions.astype(np.uint8))

    def set_image(self, image: np.ndarray) -> None:
        """Cut the painting into regions and describe them (RGB, grayscale or RGBA, any dtype)."""
        rgb = to_rgb_uint8(image, "painting")
        self._painting = None  # free the previous painting first
        from skimage.color import rgb2lab

        small = downscale(rgb, self.config.working_side)
        lab_image = rgb2lab(small)
        segmentation = segment(small, lab_image, self.config, sam=self._sam)
        table = PixelTable.from_image(small, lab_image)
        lab = lab_image.reshape(-1, 3)
        painting_features = affective_features(table, np.ones((1, table.n_pixels)))[0]
        region_features = affective_features(
            table, region_weights(segmentation.regions, segmentation.n_regions)
        )

        sp = segmentation.superpixels.ravel()
        n_sp = segmentation.n_superpixels
        count = np.bincount(sp, minlength=n_sp).astype(np.float64)
        yy, xx = np.divmod(np.arange(sp.size), small.shape[1])
        sp_centroid = np.stack(
            [np.bincount(sp, weights=yy, minlength=n_sp), np.bincount(sp, weights=xx, minlength=n_sp)],
            axis=1,
        ) / count[:, None]
        sp_lab = np.stack(
            [np.bincount(sp, weights=lab[:, c], minlength=n_sp) for c in range(3)], axis=1
        ) / count[:, None]

        self._painting = _Painting(
            grid=Grid.between(rgb.shape, small.shape),
            key=image_digest(small),
            table=table,
            lab=lab,
            families=colour_families(table.L, table.chroma, table.hue),
            segmentation=segmentation,
            painting_features=painting_features,
            region_z=standardise(region_features, painting_features),
            sp_centroid=sp_centroid,
            sp_lab=sp_lab,
        )
        log.debug(
            "starter: %d regions (%s), %d superpixels on a %s working copy",
            segmentation.n_regions, segmentation.source, n_sp, small.shape[:2],
        )

    def propose(
        self,
        emotions: Sequence[str],
        *,
        explain: bool = True,
        with_probability: bool = False,
    ) -> list[Proposal]:
        """For each emotion, the best-scoring region(s) as a mask, their score and a draft."""
        painting = self._require_painting()
        names = [_emotion(e) for e in emotions]
        if not names:
            return []
        regions = painting.segmentation.regions
        scores = emotion_scores(painting.region_z, names)
        areas = np.bincount(regions.ravel(), minlength=len(painting.region_z))
        proposals = []
        for emotion, row in zip(names, scores, strict=True):
            chosen = choose_regions(
                row, margin=self.config.join_margin, max_regions=self.config.max_regions_per_mask
            )
            small_mask = np.isin(regions, chosen)
            score = float(np.average(row[chosen], weights=areas[chosen]))
            # the painting-size mask reduces exactly back to small_mask (see Grid), so this draft
            # equals explain(emotion, proposal.mask)
            text = self._draft(painting, emotion, small_mask.astype(np.float32)) if explain else ""
            probability = None
            if with_probability:
                low, high = float(row.min()), float(row.max())
                soft = (row - low) / (high - low) if high > low else np.ones_like(row)
                probability = painting.grid.upsample(soft.astype(np.float32)[regions])
            proposals.append(
                Proposal(emotion, painting.grid.upsample(small_mask), score, text, probability)
            )
        return proposals

    def refine(
        self,
        emotion: str,
        points: np.ndarray,
        labels: np.ndarray,
        *,
        explain: bool = False,
    ) -> Proposal:
        """Re-propose from clicks: regions under positive clicks, minus negatively clicked parts.

        - a region holding both kinds of click is split between them at superpixel level (each
          superpixel goes with the nearest click in position and colour), and a superpixel holding
          both at pixel level;
        - with only negative clicks: the emotion's proposal without the clicked regions, or the
          best-scoring region left;
        - the clicked pixels always end up inside (positive) or outside (negative) the mask.
        Clicks outside the painting are ignored; with none left this is the plain proposal.
        """
        painting = self._require_painting()
        emotion = _emotion(emotion)
        points, labels = check_points(points, labels, painting.grid.full_shape)
        if len(points) == 0:
            return self.propose([emotion], explain=explain)[0]
        seg = painting.segmentation
        row = emotion_scores(painting.region_z, [emotion])[0]
        small_points = painting.grid.to_small(points)
        clicked_sp = seg.superpixels[small_points[:, 0], small_points[:, 1]]
        clicked_region = seg.sp_region[clicked_sp]
        positive = labels == 1
        selected = self._selected_regions(row, clicked_region, positive)
        small_mask = _clicked_small_mask(painting, selected, clicked_sp, clicked_region, small_points, positive)
        mask = _with_clicked_pixels(painting.grid.upsample(small_mask), points, positive)

        coverage = painting.grid.coverage(mask)
        region_score = row[seg.regions]
        score = float(np.average(region_score, weights=coverage))
        text = self._draft(painting, emotion, coverage) if explain else ""
        return Proposal(emotion, mask, score, text)

    def _selected_regions(self, row: np.ndarray, clicked_region: np.ndarray, positive: np.ndarray) -> np.ndarray:
        """The regions under positive clicks; with only negative clicks, the emotion's proposal
        without the clicked regions, or the best-scoring region left."""
        if positive.any():
            return np.unique(clicked_region[positive])
        excluded = set(clicked_region.tolist())
        chosen = choose_regions(row, margin=self.config.join_margin, max_regions=self.config.max_regions_per_mask)
        selected = np.array([r for r in chosen if r not in excluded], dtype=np.int64)
        if len(selected) == 0:
            remaining = [int(r) for r in np.argsort(-row, kind="stable") if r not in excluded]
            selected = np.array(remaining[:1], dtype=np.int64)
        return selected

    def explain(self, emotion: str, mask: np.ndarray) -> str:
        """Draft why ``mask`` (painting-size, bool or nonzero = inside) evokes ``emotion``."""
        painting = self._require_painting()
        emotion = _emotion(emotion)
        mask = np.asarray(mask)
        full = painting.grid.full_shape
        if mask.shape != full:
            raise EmoSEMError(
                f"the mask is {_shape(mask.shape)} but the painting is {_shape(full)}; "
                "draw the mask on this painting"
            )
        coverage = painting.grid.coverage(mask)
        if not coverage.any():
            raise EmoSEMError(
                f"the {emotion} mask is empty: paint the region that evokes {emotion} first, "
                "then draft its explanation"
            )
        return self._draft(painting, emotion, coverage)

    # Helpers -----------------------------------------------------------------------------------

    def _require_painting(self) -> _Painting:
        if self._painting is None:
            raise RuntimeError("call set_image(painting) before propose/refine/explain")
        return self._painting

    @staticmethod
    def _draft(painting: _Painting, emotion: str, coverage: np.ndarray) -> str:
        weights = coverage.ravel()
        features = affective_features(painting.table, weights[None, :])
        z = standardise(features, painting.painting_features)[0]
        description = describe_mask(
            weights, painting.table.shape, painting.families, painting.lab
        )
        return draft_explanation(emotion, description, z, painting.key)

    @staticmethod
    def _nearest_click(painting: _Painting, superpixels: np.ndarray, clicked: np.ndarray) -> np.ndarray:
        """Index (into ``clicked``) of the click nearest each superpixel: position in percent of
        the working copy's longest side, plus CIE76 ΔE (1 % of the width ≈ 1 ΔE unit)."""
        scale = 100.0 / max(painting.table.shape)
        dp = painting.sp_centroid[superpixels, None, :] - painting.sp_centroid[None, clicked, :]
        dc = painting.sp_lab[superpixels, None, :] - painting.sp_lab[None, clicked, :]
        distance = (dp**2).sum(-1) * scale**2 + (dc**2).sum(-1)
        return np.argmin(distance, axis=1)

    def image_features(self) -> np.ndarray:
        """The base descriptor (colour histogram, grey thumbnail) of the working copy, rebuilt
        from its Lab pixels: the starter keeps no RGB copy of the painting."""
        from skimage.color import lab2rgb

        from ..campaign.queue import colour_features

        painting = self._require_painting()
        lab = painting.lab.reshape(*painting.grid.small_shape, 3)
        return colour_features(np.round(np.clip(lab2rgb(lab), 0, 1) * 255).astype(np.uint8))


def _emotion(name: str) -> str:
    emotion = normalise_emotion(name)
    if emotion == SOMETHING_ELSE:
        raise UnknownEmotionError(
            f"'{SOMETHING_ELSE}' has no stimulus mask to propose: choose from {', '.join(EMOTIONS)}"
        )
    return emotion


def _shape(shape: tuple[int, ...]) -> str:
    return " × ".join(str(s) for s in shape[:2]) + (" × …" if len(shape) > 2 else "")


def load_sam(checkpoint: str | os.PathLike, model_type: str = "vit_b", device: str = "cpu"):
    """A segment-anything model from a ``.pth`` checkpoint, read without running pickled code."""
    path = Path(checkpoint).expanduser()
    if model_type not in SAM_MODEL_TYPES:
        raise EmoSEMError(
            f"unknown SAM model type {model_type!r}: choose one of {', '.join(SAM_MODEL_TYPES)}"
        )
    if not path.is_file():
        raise WeightsError(
            f"{path}: no SAM checkpoint there; give the path of a downloaded segment-anything "
            f"{model_type} .pth file, or leave sam_checkpoint out to use scikit-image regions"
        )
    from segment_anything import sam_model_registry

    from ..weights import load_sam_state_dict

    state = load_sam_state_dict(path)
    model = sam_model_registry[model_type]()
    try:
        model.load_state_dict(state)
    except RuntimeError:
        raise WeightsError(
            f"{path}: its weights do not fit a SAM {model_type}; pass the checkpoint's own "
            f"sam_model_type ({', '.join(SAM_MODEL_TYPES)})"
        ) from None
    return model.to(device).eval()


def _clicked_small_mask(
    painting: _Painting, selected, clicked_sp, clicked_region, small_points, positive
) -> np.ndarray:
    """The working-size mask of the selected regions, with the clicked superpixels in or out, and
    regions or superpixels clicked both ways split between their nearest clicks."""
    seg = painting.segmentation
    keep = np.isin(seg.sp_region, selected)
    if len(selected) == 0:  # every region was clicked out: keep all unclicked superpixels
        keep[:] = True
    # regions clicked both ways: each superpixel goes with its nearest click
    for region in np.intersect1d(clicked_region[positive], clicked_region[~positive]):
        in_region = np.flatnonzero(seg.sp_region == region)
        clicks = np.flatnonzero(clicked_region == region)
        nearest = StarterPredictor._nearest_click(painting, in_region, clicked_sp[clicks])
        keep[in_region] = positive[clicks][nearest]
    keep[clicked_sp[~positive]] = False
    keep[clicked_sp[positive]] = True
    small_mask = keep[seg.superpixels]

    # superpixels clicked both ways: split their pixels between the nearest clicks
    for sp in np.intersect1d(clicked_sp[positive], clicked_sp[~positive]):
        rr, cc = np.nonzero(seg.superpixels == sp)
        clicks = np.flatnonzero(clicked_sp == sp)
        d = (rr[:, None] - small_points[clicks, 0]) ** 2 + (cc[:, None] - small_points[clicks, 1]) ** 2
        small_mask[rr, cc] = positive[clicks][np.argmin(d, axis=1)]

    if not small_mask.any():  # only negative clicks on a one-superpixel painting
        small_mask[:] = True
    return small_mask


def _with_clicked_pixels(mask: np.ndarray, points: np.ndarray, positive: np.ndarray) -> np.ndarray:
    """Two opposite clicks can share one working pixel: the painting's own pixels decide, later
    clicks winning; a mask left empty becomes everything but the negative clicks."""
    rows, cols = points[:, 0].astype(np.intp), points[:, 1].astype(np.intp)
    for r, c, is_positive in zip(rows, cols, positive, strict=True):
        mask[r, c] = is_positive
    if not mask.any():
        mask[:] = True
        for r, c, is_positive in zip(rows, cols, positive, strict=True):
            mask[r, c] = is_positive
    return mask

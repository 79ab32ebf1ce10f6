"""Affective image features of regions (or of any soft mask) of a painting.

The features are those the literature on colour and emotion measures, computed in perceptual
spaces as it does (CIE Lab / LCh; colourfulness on the opponent channels of sRGB):

- brightness and saturation: Valdez & Mehrabian (1994), "Effects of color on emotions",
  J. Exp. Psychol. General 123(4) — they use Munsell value and chroma; CIE L* and C*ab are their
  perceptual counterparts. Machajdik & Hanbury (2010), "Affective image classification using
  features inspired by psychology and art theory", ACM MM, use the same pair.
- warmth of hue: Machajdik & Hanbury (2010), after Itten's warm/cold contrast.
- colourfulness: Hasler & Süsstrunk (2003), "Measuring colourfulness in natural images", SPIE
  5007 — M = σ_rgyb + 0.3·μ_rgyb on rg = R − G, yb = (R + G)/2 − B.
- contrast within the region (RMS of L*) and against the rest of the painting (ΔE*ab),
  relative size, centrality and height (composition): Machajdik & Hanbury (2010).
- hue affinities (red, murky yellow-green/brown, green, blue) for the colour–emotion
  associations of Jonauskaite et al. (2020), Psychological Science 31(10): red–anger,
  brown/yellow-green–disgust, green–contentment, dark/blue–sadness and fear.

All features are weighted means over pixels, so a region (0/1 weights) and an annotator's mask
(coverage of each working pixel) are described by the same code.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: feature names, in the order of :func:`affective_features`' columns
FEATURES: tuple[str, ...] = (
    "brightness",
    "saturation",
    "warmth",
    "colourfulness",
    "contrast",
    "contrast_rest",
    "size",
    "centrality",
    "height",
    "red",
    "murky_yellow",
    "green",
    "blue",
)

# Lab hue angles (degrees) of the hue affinities, measured on sRGB references: red (220, 30, 30)
# is at 36°, orange 65°, olive 103°, green (40, 160, 60) 142°, a mid blue (40, 80, 200) 295°
# and a blue-grey 266°; warm/cold is the axis from orange-red (50°) to cyan-blue (230°).
_WARM_AXIS = np.deg2rad(50.0)
_RED = np.deg2rad(35.0)
_MURKY_YELLOW = np.deg2rad(90.0)
_GREEN = np.deg2rad(145.0)
_BLUE = np.deg2rad(265.0)

# A hue only counts as much as the colour is chromatic: C/(C + 15) is ½ at C*ab = 15 (a
# clearly tinted grey) and → 1 for strong colours.
_CHROMA_HALF = 15.0


@dataclass
class PixelTable:
    """Per-pixel values of the working copy that the features are weighted means of."""

    shape: tuple[int, int]
    L: np.ndarray = field(repr=False)
    a: np.ndarray = field(repr=False)
    b: np.ndarray = field(repr=False)
    chroma: np.ndarray = field(repr=False)
    hue: np.ndarray = field(repr=False)  # radians
    #: one column per per-pixel term whose weighted mean is needed (see _TERMS)
    terms: np.ndarray = field(repr=False)

    @classmethod
    def from_image(cls, small: np.ndarray, lab: np.ndarray) -> PixelTable:
        """Build from the working copy (RGB uint8) and its CIE Lab."""
        h, w = small.shape[:2]
        L, a, b = (lab[..., c].ravel().astype(np.float64) for c in range(3))
        chroma = np.hypot(a, b)
        hue = np.arctan2(b, a)
        tint = chroma / (chroma + _CHROMA_HALF)
        rgb = small.reshape(-1, 3).astype(np.float64)
        rg = rgb[:, 0] - rgb[:, 1]
        yb = 0.5 * (rgb[:, 0] + rgb[:, 1]) - rgb[:, 2]
        yy, xx = np.mgrid[0:h, 0:w]
        y = ((yy.ravel() + 0.5) / h).astype(np.float64)
        x = ((xx.ravel() + 0.5) / w).astype(np.float64)

        def affinity(centre: float, power: int) -> np.ndarray:
            return tint * np.maximum(0.0, np.cos(hue - centre)) ** power

        darkness = 1.0 - np.clip(L / 100.0, 0.0, 1.0)
        columns = {
            "L": L, "a": a, "b": b, "L2": L * L, "C": chroma,
            "warm": tint * np.cos(hue - _WARM_AXIS),
            "rg": rg, "yb": yb, "rg2": rg * rg, "yb2": yb * yb,
            "y": y, "x": x,
            "red": affinity(_RED, 4),
            # yellow-green to brown, only when darkish and not vivid: "murky"
            "murky_yellow": affinity(_MURKY_YELLOW, 2) * darkness * np.clip(1.0 - chroma / 60.0, 0.0, 1.0),
            "green": affinity(_GREEN, 4),
            "blue": affinity(_BLUE, 4),
        }
        terms = np.stack([columns[name] for name in _TERMS], axis=1)
        return cls((h, w), L, a, b, chroma, hue, terms)

    @property
    def n_pixels(self) -> int:
        return self.shape[0] * self.shape[1]


_TERMS = (
    "L", "a", "b", "L2", "C", "warm", "rg", "yb", "rg2", "yb2", "y", "x",
    "red", "murky_yellow", "green", "blue",
)
_T = {name: i for i, name in enumerate(_TERMS)}


def affective_features(table: PixelTable, weights: np.ndarray) -> np.ndarray:
    """float64 (K, len(FEATURES)): the features of K soft masks ``weights`` (K, h·w) in [0, 1].

    A mask with no weight gets NaN features.
    """
    weights = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    # Weighted sums row by row over each mask's own pixels, with no BLAS call: a matrix product
    # here is tiny, and a multi-threaded BLAS stalls badly when other processes share the cores.
    sums = np.empty((len(weights), table.terms.shape[1]))
    for k, row in enumerate(weights):
        inside = np.flatnonzero(row)
        sums[k] = (table.terms[inside] * row[inside, None]).sum(axis=0)
    total = weights.sum(axis=1)
    lab_columns = [_T["L"], _T["a"], _T["b"]]
    whole_lab = table.terms[:, lab_columns].sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = sums / total[:, None]
        rest_weight = table.n_pixels - total
        rest_lab = (whole_lab[None, :] - sums[:, lab_columns]) / rest_weight[:, None]
    m = {name: means[:, i] for name, i in _T.items()}

    lab = np.stack([m["L"], m["a"], m["b"]], axis=1)
    # a mask covering (nearly) everything has no "rest" to contrast with
    has_rest = rest_weight > 0.005 * table.n_pixels
    rest_lab = np.where(has_rest[:, None], rest_lab, lab)
    contrast_rest = np.linalg.norm(lab - rest_lab, axis=1)

    sd_rg = np.sqrt(np.maximum(m["rg2"] - m["rg"] ** 2, 0.0))
    sd_yb = np.sqrt(np.maximum(m["yb2"] - m["yb"] ** 2, 0.0))
    # Hasler & Süsstrunk (2003), eq. (3), on 0–255 sRGB; ~100 is "extremely colourful"
    colourfulness = np.hypot(sd_rg, sd_yb) + 0.3 * np.hypot(m["rg"], m["yb"])

    centre_distance = np.hypot(m["y"] - 0.5, m["x"] - 0.5) / np.sqrt(0.5)
    columns = {
        "brightness": m["L"] / 100.0,
        "saturation": m["C"] / 100.0,
        "warmth": m["warm"],
        "colourfulness": colourfulness / 100.0,
        "contrast": np.sqrt(np.maximum(m["L2"] - m["L"] ** 2, 0.0)) / 100.0,
        "contrast_rest": contrast_rest / 100.0,
        "size": total / table.n_pixels,
        "centrality": 1.0 - centre_distance,
        "height": 1.0 - m["y"],
        "red": m["red"],
        "murky_yellow": m["murky_yellow"],
        "green": m["green"],
        "blue": m["blue"],
    }
    return np.stack([columns[name] for name in FEATURES], axis=1)


def region_weights(regions: np.ndarray, n_regions: int) -> np.ndarray:
    """float32 (n_regions, h·w) one-hot weights of a region label map."""
    flat = regions.ravel()
    weights = np.zeros((n_regions, flat.size), dtype=np.float32)
    weights[flat, np.arange(flat.size)] = 1.0
    return weights


# Standardisation: how unusual a region is *for this painting*. Colour features are compared
# with the whole painting's value, in units of a typical spread between the parts of one
# painting (measured on the shared Cézanne reproductions: region-to-region SDs of L*/100 are
# 0.15–0.24, of C*/100 0.08–0.15, of warmth 0.13–0.28, of colourfulness 0.09–0.19).
_RELATIVE_SCALE = {
    "brightness": 0.15,
    "saturation": 0.10,
    "warmth": 0.20,
    "colourfulness": 0.12,
    "red": 0.10,
    "murky_yellow": 0.04,
    "green": 0.08,
    "blue": 0.06,
}
# Features that have a meaning of their own get fixed (centre, scale) anchors: a part is always
# less contrasted than the whole painting, so within-region contrast is not compared with it.
_ABSOLUTE = {
    "contrast": (0.10, 0.04),
    "contrast_rest": (0.15, 0.08),
    "centrality": (0.6, 0.2),
    "height": (0.5, 0.2),
}
# size on a log scale: 8% of the canvas is "average", ×e per unit
_SIZE_CENTRE = np.log(0.08)


def standardise(features: np.ndarray, painting: np.ndarray) -> np.ndarray:
    """z-scores (K, F) of ``features`` (K, F) against the whole painting's features (F,).

    Bounded to ±3 so one extreme feature cannot decide every emotion alone.
    """
    z = np.zeros_like(features)
    for i, name in enumerate(FEATURES):
        if name in _RELATIVE_SCALE:
            z[:, i] = (features[:, i] - painting[i]) / _RELATIVE_SCALE[name]
        elif name in _ABSOLUTE:
            centre, scale = _ABSOLUTE[name]
            z[:, i] = (features[:, i] - centre) / scale
        else:  # size
            z[:, i] = np.log(np.maximum(features[:, i], 1e-6)) - _SIZE_CENTRE
    return np.clip(np.nan_to_num(z), -3.0, 3.0)

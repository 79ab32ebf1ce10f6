"""Explanation drafts: what a masked region looks like, and why it may evoke an emotion.

A draft is made from the region's own description — its colour in a small palette of names
("dark, muted blue", "warm ochre", "pale grey-green"), where it is ("in the lower left",
"across the top"), how large it is ("a small patch", "a broad mass") — and from the feature that
most supports the emotion ("dark" for sadness → "heavy and still"). Several sentence templates
per emotion; which one is used is decided by a hash of the painting and the mask, never by a
random generator, so drafts are reproducible and still differ between emotions and paintings.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from .features import FEATURES

# Colour families --------------------------------------------------------------------------------
# Lab hue ranges (degrees), checked on sRGB references: red (220, 30, 30) 36°, orange 65°,
# yellow 97°, yellow-green 120°, green 142°, teal 196°, sky blue 235°, blue 295°, violet 315°,
# magenta 342°, pink 11°.
FAMILIES: tuple[str, ...] = (
    "grey", "red", "orange", "yellow", "yellow-green", "green", "blue-green", "blue", "violet",
    "purple",
)
_HUE_EDGES = np.array([50.0, 80.0, 110.0, 135.0, 185.0, 225.0, 300.0, 325.0, 345.0])
# family index of each hue bin: [345, 50) red, [50, 80) orange, ... [325, 345) purple
_HUE_BIN_FAMILY = np.array([1, 2, 3, 4, 5, 6, 7, 8, 9, 1])
#: below this chroma (C*ab) a colour reads as a grey
_GREY_CHROMA = 10.0


def colour_families(L: np.ndarray, chroma: np.ndarray, hue: np.ndarray) -> np.ndarray:
    """uint8 family index (into :data:`FAMILIES`) of each pixel; ``hue`` in radians."""
    degrees = np.degrees(hue) % 360.0
    family = _HUE_BIN_FAMILY[np.searchsorted(_HUE_EDGES, degrees, side="right")]
    family = np.where(chroma < _GREY_CHROMA, 0, family)
    return family.astype(np.uint8)


def colour_name(L: float, chroma: float, hue_degrees: float, family: int) -> str:
    """A short colour phrase, e.g. "dark, muted blue", "warm ochre", "pale grey-green"."""
    h = hue_degrees % 360.0
    if family == 0:
        if L < 20:
            return "blue-black" if chroma >= 5 and 200 <= h < 300 else "black"
        if L > 88:
            return "white"
        name, implies_lightness = _grey_name(chroma, h), False
    else:
        name, implies_lightness = _hue_name(L, chroma, h, family)
    adjectives = _colour_adjectives(L, chroma, family, name, implies_lightness)
    return " ".join([", ".join(adjectives), name]) if adjectives else name


def _grey_name(chroma: float, h: float) -> str:
    """A grey's name, tinted when it leans towards a hue."""
    if chroma >= 5:
        if 40 <= h < 110:
            return "warm grey"
        if 110 <= h < 200:
            return "grey-green"
        if 200 <= h < 300:
            return "blue-grey"
    return FAMILIES[0]


def _hue_name(L: float, chroma: float, h: float, family: int) -> tuple[str, bool]:
    """A chromatic family's name at this lightness and chroma, and whether the word already says
    how light the colour is (then it takes no lightness adjective)."""
    if family == 1:
        if L > 65 and chroma < 45:
            return "pink", True
        if chroma < 30 and L < 65:
            return ("rose" if L >= 40 else "maroon"), L < 40
    elif family == 2:
        if L < 45:
            return "brown", True
        if L > 72 and chroma < 45:
            return ("beige" if chroma < 25 else "peach"), True
        if chroma < 45:
            return "ochre", False
    elif family == 3:
        if L < 45:
            return ("olive" if h >= 95 else "dark ochre"), True
        if L > 78 and chroma < 35:
            return "cream", True
        if chroma < 45:
            return "ochre", False
    elif family == 4 and L < 45:
        return "olive", True
    elif family == 6 and L < 55 and chroma >= 15:
        return "teal", False
    return FAMILIES[family], False


def _colour_adjectives(L: float, chroma: float, family: int, name: str, implies_lightness: bool) -> list[str]:
    adjectives = []
    if not implies_lightness:
        if L < 32:
            adjectives.append("dark")
        elif L > 72:
            adjectives.append("pale")
    if family != 0:
        if chroma < 20 and name not in ("beige", "cream", "rose"):
            adjectives.append("muted")
        elif chroma > 55:
            adjectives.append("vivid")
    if adjectives == ["pale", "vivid"]:
        adjectives = ["bright"]
    # a bare hue name gets its temperature, as painters speak of colour ("warm ochre")
    if not adjectives and name in ("red", "orange", "yellow", "ochre"):
        adjectives.append("warm")
    elif not adjectives and name in ("blue", "blue-green"):
        adjectives.append("cool")
    return adjectives


# Where and how large --------------------------------------------------------------------------

_GRID = (
    ("in the upper left", "at the top", "in the upper right"),
    ("on the left", "at the centre", "on the right"),
    ("in the lower left", "at the bottom", "in the lower right"),
)


@dataclass(frozen=True)
class MaskDescription:
    """What a mask covers, in words, and the numbers the words came from."""

    #: "dark, muted blue" (or "dark, muted blue and ochre" for two main colours)
    colour: str
    #: "in the lower left", "across the top", "" (for most of the canvas)
    where: str
    #: the noun phrase a sentence starts from: "the dark, muted blue mass in the lower left"
    subject: str
    #: True when the subject is plural ("the scattered ochre touches")
    plural: bool
    #: share of the painting covered
    fraction: float
    #: centroid (row, col) as shares of the height and width
    centroid: tuple[float, float]


def describe_mask(
    weights: np.ndarray,
    shape: tuple[int, int],
    families: np.ndarray,
    lab: np.ndarray,
) -> MaskDescription:
    """Describe a soft mask ``weights`` (h·w, in [0, 1]) of the working copy.

    ``families`` is :func:`colour_families` of each pixel and ``lab`` (h·w, 3) its CIE Lab.
    The mask must have some weight.
    """
    h, w = shape
    weights = np.asarray(weights, dtype=np.float64).ravel()
    fraction = float(weights.sum() / weights.size)
    colour = _mask_colour(weights, families, lab)
    layout = _MaskLayout.of(weights.reshape(h, w))
    where, subject, plural = _subject(colour, fraction, layout)
    return MaskDescription(colour, where, subject, plural, fraction, (layout.cy, layout.cx))


def _mask_colour(weights: np.ndarray, families: np.ndarray, lab: np.ndarray) -> str:
    """The family holding most of the mask's weight, named from its own mean colour (and a second
    one, without adjectives, when it holds at least 30%)."""
    share = np.bincount(families, weights=weights, minlength=len(FAMILIES)) / weights.sum()
    order = np.argsort(-share, kind="stable")
    names = []
    for rank, family in enumerate(order[:2]):
        if rank == 1 and share[family] < 0.3:
            break
        pixels = np.flatnonzero((families == family) & (weights > 0))
        # an explicit weighted mean (no BLAS: see features.affective_features)
        L, a, b = (lab[pixels] * weights[pixels, None]).sum(axis=0) / weights[pixels].sum()
        name = colour_name(L, float(np.hypot(a, b)), float(np.degrees(np.arctan2(b, a))), int(family))
        if rank == 1:  # the second colour without adjectives, to keep the phrase short
            name = name.split(" ")[-1]
            if name in names[0].split(" ")[-1]:
                break
        names.append(name)
    return " and ".join(names)


@dataclass(frozen=True)
class _MaskLayout:
    """Where a soft mask lies, as fractions of the canvas: centre, extent, and whether it is
    scattered over several parts."""

    cy: float
    cx: float
    height: float
    width: float
    scattered: bool

    @classmethod
    def of(cls, grid: np.ndarray) -> _MaskLayout:
        from scipy import ndimage

        h, w = grid.shape
        total = grid.sum()
        rows, cols = grid.sum(axis=1), grid.sum(axis=0)
        top, bottom = _quantile_span(rows)
        left, right = _quantile_span(cols)
        labels, n = ndimage.label(grid > 0, structure=np.ones((3, 3)))
        parts = np.bincount(labels.ravel(), weights=grid.ravel())[1:] if n else np.zeros(1)
        return cls(
            cy=float((rows @ (np.arange(h) + 0.5)) / total / h),
            cx=float((cols @ (np.arange(w) + 0.5)) / total / w),
            height=bottom - top,
            width=right - left,
            scattered=n >= 2 and (parts.max() < 0.5 * total or (parts >= 0.05 * total).sum() >= 3),
        )


def _subject(colour: str, fraction: float, layout: _MaskLayout) -> tuple[str, str, bool]:
    """(where, the sentence's subject, whether it is plural) for a mask of this colour and layout."""
    row, column = min(int(layout.cy * 3), 2), min(int(layout.cx * 3), 2)
    grid_where = _GRID[row][column]
    if fraction >= 0.6:
        return "", f"the {colour} that fills most of the canvas", False
    if layout.scattered:
        where = "across the canvas" if layout.height > 0.6 and layout.width > 0.6 else grid_where
        noun = "touches" if fraction < 0.1 else "patches"
        return where, f"the scattered {colour} {noun} {where}", True
    if layout.width >= 0.7 and layout.height <= 0.35:
        where = ("across the top", "across the middle", "along the bottom")[row]
        return where, f"the {colour} band {where}", False
    if layout.height >= 0.7 and layout.width <= 0.35:
        where = ("down the left side", "down the middle", "down the right side")[column]
        return where, f"the {colour} band {where}", False
    noun = next(n for limit, n in _SIZE_NOUNS if fraction < limit)
    return grid_where, f"the {colour} {noun} {grid_where}", False


# (upper limit of the covered share, noun)
_SIZE_NOUNS = ((0.005, "touch"), (0.03, "patch"), (0.12, "shape"), (0.35, "mass"), (1.01, "expanse"))


def _quantile_span(marginal: np.ndarray, tail: float = 0.05) -> tuple[float, float]:
    """The 5–95 % extent of a weight profile, as shares of its length (stray pixels ignored)."""
    cumulative = np.cumsum(marginal) / marginal.sum()
    low = int(np.searchsorted(cumulative, tail))
    high = int(np.searchsorted(cumulative, 1.0 - tail))
    return low / len(marginal), (high + 1) / len(marginal)


# Sentences --------------------------------------------------------------------------------------

_VERBS = {
    "is": "are", "feels": "feel", "seems": "seem", "looks": "look", "makes": "make",
    "gives": "give", "brings": "bring", "opens": "open", "inspires": "inspire", "stirs": "stir",
    "fills": "fill",
}

TEMPLATES: dict[str, tuple[str, ...]] = {
    "amusement": (
        "{Subject} {feels} {quality}, which makes the scene amusing.",
        "{Subject} {is} {quality}; {it} {makes} me smile.",
        "There is something funny about {subject}: {it} {looks} {quality}.",
        "I am amused by {subject}, so {quality} against the rest of the picture.",
        "{Subject}, {quality}, {gives} the painting a light, amusing touch.",
    ),
    "awe": (
        "{Subject} {feels} {quality}, and that fills me with awe.",
        "I am in awe of {subject}; {it} {seems} {quality}.",
        "{Subject} {opens} the picture up: {quality}, {it} {inspires} awe.",
        "Awe comes from {subject}, which {seems} {quality}.",
    ),
    "contentment": (
        "{Subject} {feels} {quality}, which brings a sense of contentment.",
        "Looking at {subject}, I feel content: {it} {is} {quality}.",
        "{Subject} {is} {quality} and {makes} the scene feel at peace.",
        "There is a quiet contentment in {subject}, so {quality}.",
    ),
    "excitement": (
        "{Subject} {is} {quality}, and {it} {makes} the painting exciting.",
        "My eye jumps to {subject}; {it} {feels} {quality} and exciting.",
        "{Subject} {brings} excitement: {it} {is} {quality}.",
        "I feel excited by {subject}, so {quality}.",
    ),
    "anger": (
        "{Subject} {feels} {quality}, which makes me angry.",
        "There is anger in {subject}: {it} {is} {quality}.",
        "{Subject} {looks} {quality} and {stirs} up anger.",
        "I feel anger rising at {subject}, so {quality}.",
    ),
    "disgust": (
        "{Subject} {looks} {quality}, which is disgusting.",
        "I feel disgust at {subject}; {it} {seems} {quality}.",
        "{Subject} {is} {quality} and {makes} me recoil in disgust.",
        "Something about {subject} is repulsive: {it} {looks} {quality}.",
    ),
    "fear": (
        "{Subject} {feels} {quality}, which is frightening.",
        "I am afraid of {subject}; {it} {seems} {quality}.",
        "{Subject} {looks} {quality} and {fills} the scene with fear.",
        "Fear comes from {subject}, so {quality}.",
    ),
    "sadness": (
        "{Subject} {feels} {quality}, which brings sadness.",
        "I feel sad looking at {subject}; {it} {seems} {quality}.",
        "{Subject} {is} {quality}, and {it} {makes} the painting sad.",
        "There is a quiet sadness in {subject}, so {quality}.",
    ),
}

# Per emotion: (feature, direction, phrases) in order of preference. The phrase comes from the
# cue the mask shows most strongly (its standardised feature × direction, if above _CUE_MIN);
# otherwise from the emotion's default phrases.
QUALITIES: dict[str, tuple[tuple[str, int, tuple[str, ...]], ...]] = {
    "amusement": (
        ("colourfulness", 1, ("lively and colourful", "bright and cheerful")),
        ("warmth", 1, ("warm and playful", "cheerfully warm")),
        ("brightness", 1, ("light and playful", "sunny and light-hearted")),
        ("size", -1, ("quirky and unexpected", "small and whimsical")),
        ("", 0, ("playful", "light-hearted")),
    ),
    "awe": (
        ("size", 1, ("vast and open", "immense")),
        ("height", 1, ("lofty and far away", "high and distant")),
        ("brightness", 1, ("luminous", "radiant and calm")),
        ("", 0, ("grand and still", "majestic")),
    ),
    "contentment": (
        ("contrast", -1, ("smooth and calm", "soft and settled")),
        ("green", 1, ("fresh and restful", "green and peaceful")),
        ("brightness", 1, ("soft and light", "gentle and bright")),
        ("", 0, ("peaceful", "calm and gentle")),
    ),
    "excitement": (
        ("contrast_rest", 1, ("bold and striking", "sharply set off from the rest")),
        ("colourfulness", 1, ("vivid and full of colour", "vibrant")),
        ("warmth", 1, ("hot and energetic", "warm and lively")),
        ("saturation", 1, ("intense", "vivid and energetic")),
        ("", 0, ("energetic", "lively and dynamic")),
    ),
    "anger": (
        ("red", 1, ("fiery and aggressive", "blood-red and violent")),
        ("brightness", -1, ("dark and harsh", "heavy and hostile")),
        ("contrast_rest", 1, ("harsh and clashing", "jarring")),
        ("warmth", 1, ("hot and tense", "burning")),
        ("", 0, ("tense and harsh", "aggressive")),
    ),
    "disgust": (
        ("murky_yellow", 1, ("murky and sickly", "muddy and sour")),
        ("contrast", 1, ("smeared and messy", "rough and grimy")),
        ("saturation", -1, ("dull and dirty", "drab and grimy")),
        ("", 0, ("unpleasant", "grimy")),
    ),
    "fear": (
        ("brightness", -1, ("dark and threatening", "shadowy and menacing")),
        ("warmth", -1, ("cold and ominous", "chilly and eerie")),
        ("contrast_rest", 1, ("looming and sinister", "stark and unsettling")),
        ("centrality", -1, ("half-hidden and watchful", "lurking and uneasy")),
        ("", 0, ("ominous", "unsettling")),
    ),
    "sadness": (
        ("brightness", -1, ("heavy and still", "dark and heavy")),
        ("warmth", -1, ("cold and lonely", "cold and withdrawn")),
        ("saturation", -1, ("drained and quiet", "faded and tired")),
        ("blue", 1, ("blue and melancholic", "wistful and blue")),
        ("", 0, ("subdued", "quiet and mournful")),
    ),
}
_CUE_MIN = 0.5
_FEATURE_INDEX = {name: i for i, name in enumerate(FEATURES)}


def draft_explanation(emotion: str, description: MaskDescription, z: np.ndarray, key: str) -> str:
    """A sentence on why the described mask evokes ``emotion``.

    ``z`` holds the mask's standardised features (see features.standardise); ``key`` identifies
    the painting (its digest), so the same painting and mask always give the same sentence.
    """
    seed = _seed(emotion, description, key)
    templates = TEMPLATES[emotion]
    template = templates[seed % len(templates)]
    quality = _quality(emotion, z, seed // len(templates))
    subject = description.subject
    words = {
        "Subject": subject[0].upper() + subject[1:],
        "subject": subject,
        "quality": quality,
        "it": "they" if description.plural else "it",
    }
    for singular, plural in _VERBS.items():
        words[singular] = plural if description.plural else singular
    return template.format(**words)


def _quality(emotion: str, z: np.ndarray, seed: int) -> str:
    cues = QUALITIES[emotion]
    best, best_value = cues[-1], _CUE_MIN
    for cue in cues[:-1]:
        feature, direction, _ = cue
        value = direction * float(z[_FEATURE_INDEX[feature]])
        if value > best_value:
            best, best_value = cue, value
    phrases = best[2]
    return phrases[seed % len(phrases)]


def _seed(emotion: str, description: MaskDescription, key: str) -> int:
    text = "|".join(
        [
            emotion, key, description.subject, f"{description.fraction:.4f}",
            f"{description.centroid[0]:.3f}", f"{description.centroid[1]:.3f}",
        ]
    )
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")

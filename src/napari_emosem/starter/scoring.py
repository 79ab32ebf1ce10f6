"""Per-emotion scores of regions, from their standardised affective features.

No weight here is learned. Each emotion has a profile built from published findings:

1. Pleasure, arousal and dominance from brightness and saturation, Valdez & Mehrabian (1994),
   "Effects of color on emotions", J. Exp. Psychol. General 123(4), 394–409 (standardised
   regression weights, hence applied to standardised features):
       pleasure  =  .69·brightness + .22·saturation
       arousal   = −.31·brightness + .60·saturation
       dominance = −.76·brightness + .32·saturation
2. Each ArtEmis emotion placed on Russell's circumplex of affect, Russell (1980), "A circumplex
   model of affect", J. Pers. Soc. Psychol. 39(6), 1161–1178: the angle in the
   pleasure (0°) / arousal (90°) plane, read from his Fig. 2 and rounded. A region scores for an
   emotion by how far its (pleasure, arousal) points in that emotion's direction.
3. Cues beyond pleasure and arousal: warm/cold hue, colourfulness, contrast and composition
   (Machajdik & Hanbury 2010, ACM MM, "Affective image classification using features inspired
   by psychology and art theory"); colour–emotion associations across 30 nations (Jonauskaite et
   al. 2020, Psychological Science 31(10): red–anger, brown and yellow-green–disgust, green–
   contentment, dark colours–fear and sadness); awe as a response to vastness (Keltner & Haidt
   2003, Cognition and Emotion 17(2)). Their weights are our design choice (signs from the
   papers, sizes set by hand on the shared paintings), marked as such.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from .features import FEATURES

_INDEX = {name: i for i, name in enumerate(FEATURES)}

# Valdez & Mehrabian (1994), Table 6 summary equations (standardised β):
# rows pleasure, arousal, dominance; columns brightness, saturation.
VALDEZ_MEHRABIAN = np.array(
    [
        [0.69, 0.22],
        [-0.31, 0.60],
        [-0.76, 0.32],
    ]
)


@dataclass(frozen=True)
class EmotionProfile:
    """How one emotion reads from a region's standardised features."""

    #: direction on Russell's circumplex, degrees (0° pleasure, 90° arousal)
    angle: float
    #: weight of the circumplex term (pleasure/arousal from Valdez & Mehrabian)
    circumplex: float = 1.0
    #: weight of Valdez & Mehrabian's dominance (anger is dominant, fear submissive:
    #: Russell & Mehrabian 1977, J. Res. Personality 11)
    dominance: float = 0.0
    #: weights on standardised features (see features.FEATURES)
    cues: Mapping[str, float] = field(default_factory=dict)


PROFILES: dict[str, EmotionProfile] = {
    # Russell (1980): "happy" ≈ 8°, "delighted" ≈ 25°. Colourful, warm, light images read as
    # positive (Machajdik & Hanbury 2010); a playful detail rather than the whole ground
    # (smaller, nearer the centre) is our design choice.
    "amusement": EmotionProfile(
        angle=16.0,
        cues={"colourfulness": 0.6, "warmth": 0.5, "brightness": 0.3, "size": -0.3, "centrality": 0.2},
    ),
    # "astonished" ≈ 70°. Awe answers vastness (Keltner & Haidt 2003): large, high (sky, far
    # distance), bright and smooth; these cues outweigh the circumplex term.
    "awe": EmotionProfile(
        angle=70.0,
        circumplex=0.4,
        cues={"size": 0.8, "height": 0.7, "brightness": 0.6, "contrast": -0.3},
    ),
    # "content" ≈ 324°, "serene" ≈ 329°: pleasant and calm — light and not saturated; calm
    # means smooth and not standing out; green is associated with contentment and relief
    # (Jonauskaite et al. 2020).
    "contentment": EmotionProfile(
        angle=326.0,
        cues={"contrast": -0.5, "contrast_rest": -0.3, "green": 0.4, "size": 0.3},
    ),
    # "excited" ≈ 49°: saturated; stands out from its surroundings (contrast) and colourful
    # (Machajdik & Hanbury 2010); warm hues are arousing.
    "excitement": EmotionProfile(
        angle=49.0,
        cues={"contrast_rest": 0.6, "colourfulness": 0.5, "warmth": 0.3},
    ),
    # "angry" ≈ 99°: unpleasant and aroused, dominant; red, then black, are the colours most
    # associated with anger (Jonauskaite et al. 2020): red and darkish, warm and contrasting.
    "anger": EmotionProfile(
        angle=99.0,
        circumplex=0.8,
        dominance=0.4,
        cues={"red": 1.2, "brightness": -0.4, "warmth": 0.3, "contrast_rest": 0.3},
    ),
    # Disgust is not on Russell's circle; we place it between "annoyed" ≈ 123° and
    # "distressed" ≈ 138° (unpleasant, moderately aroused). Brown and yellow-green are its
    # colours (Jonauskaite et al. 2020): murky (darkish, not vivid), textured.
    "disgust": EmotionProfile(
        angle=130.0,
        circumplex=0.6,
        cues={"murky_yellow": 1.0, "saturation": -0.3, "contrast": 0.3},
    ),
    # "afraid" ≈ 116°: unpleasant, aroused, submissive. Darkness and cold hues (dark colours
    # go with fear, Jonauskaite et al. 2020), something that stands out, off-centre (lurking at
    # the edges: our design choice).
    "fear": EmotionProfile(
        angle=116.0,
        circumplex=0.8,
        dominance=-0.3,
        cues={"brightness": -0.6, "warmth": -0.4, "contrast_rest": 0.4, "centrality": -0.3},
    ),
    # "sad" ≈ 208°: unpleasant and calm — dark and desaturated; cold, bluish and smooth.
    "sadness": EmotionProfile(
        angle=208.0,
        cues={"warmth": -0.4, "blue": 0.4, "contrast": -0.2},
    ),
}


def pleasure_arousal_dominance(z: np.ndarray) -> np.ndarray:
    """(K, 3) pleasure, arousal, dominance of K regions from standardised features (K, F)."""
    bs = z[:, [_INDEX["brightness"], _INDEX["saturation"]]]
    return bs @ VALDEZ_MEHRABIAN.T


def emotion_scores(z: np.ndarray, emotions: Sequence[str]) -> np.ndarray:
    """(E, K) scores in (0, 1) of K regions (standardised features ``z``, K × F) per emotion.

    The weighted evidence is divided by the norm of the profile's weights, so every emotion's
    evidence has the same spread, then squashed with a logistic: 0.5 is "no evidence either way".
    """
    pad = pleasure_arousal_dominance(z)
    scores = np.empty((len(emotions), len(z)))
    for row, emotion in enumerate(emotions):
        profile = PROFILES[emotion]
        angle = np.deg2rad(profile.angle)
        evidence = profile.circumplex * (np.cos(angle) * pad[:, 0] + np.sin(angle) * pad[:, 1])
        evidence = evidence + profile.dominance * pad[:, 2]
        norm = profile.circumplex**2 + profile.dominance**2
        for name, weight in profile.cues.items():
            evidence = evidence + weight * z[:, _INDEX[name]]
            norm += weight**2
        scores[row] = 1.0 / (1.0 + np.exp(-evidence / np.sqrt(norm)))
    return scores


def choose_regions(scores: np.ndarray, *, margin: float, max_regions: int) -> np.ndarray:
    """Indices of the best-scoring region and of any within ``margin`` of it (at most
    ``max_regions``), best first. Never empty; ties go to the lower index (deterministic)."""
    order = np.argsort(-scores, kind="stable")
    best = scores[order[0]]
    chosen = [int(i) for i in order[:max_regions] if scores[i] >= best - margin]
    return np.array(chosen, dtype=np.int64)

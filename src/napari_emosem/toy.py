"""Generated toy paintings with a known answer, for tests and the learnability check.

In every toy painting each emotion's stimulus is its own coloured shape (fear is a dark purple
triangle, sadness a blue ellipse, ...), placed at random on a textured, muted background with two
to four other emotions' shapes. A model that has learned to condition on the emotion must find the
right shape, and its explanation must name it. Deterministic for a given seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .emotions import EMOTIONS


@dataclass(frozen=True)
class ToyStimulus:
    colour: str
    rgb: tuple[int, int, int]
    shape: str
    feeling: str


#: emotion -> its shape; the colours are far apart in hue so a small encoder can tell them apart
TOY_STIMULI: dict[str, ToyStimulus] = {
    "amusement": ToyStimulus("yellow", (250, 220, 40), "circle", "makes me smile"),
    "awe": ToyStimulus("white", (250, 250, 250), "tower", "feels vast and grand"),
    "contentment": ToyStimulus("green", (40, 170, 60), "square", "feels calm and settled"),
    "excitement": ToyStimulus("orange", (255, 130, 0), "star", "feels lively"),
    "anger": ToyStimulus("red", (220, 20, 30), "diamond", "feels aggressive"),
    "disgust": ToyStimulus("brown", (120, 80, 30), "cross", "looks repulsive"),
    "fear": ToyStimulus("purple", (90, 20, 120), "triangle", "feels threatening"),
    "sadness": ToyStimulus("blue", (30, 70, 200), "ellipse", "feels lonely"),
}


@dataclass
class ToyPainting:
    image: np.ndarray  # RGB uint8 (H, W, 3)
    masks: dict[str, np.ndarray]  # emotion -> bool (H, W)
    explanations: dict[str, str]  # emotion -> explanation naming the shape

    @property
    def emotions(self) -> tuple[str, ...]:
        return tuple(e for e in EMOTIONS if e in self.masks)


def toy_explanation(emotion: str) -> str:
    s = TOY_STIMULI[emotion]
    return f"the {s.colour} {s.shape} {s.feeling}"


def _shape_mask(shape: str, h: int, w: int, cy: float, cx: float, r: float) -> np.ndarray:
    from skimage import draw

    mask = np.zeros((h, w), bool)

    def poly(points):
        rr, cc = draw.polygon([cy + dy * r for dy, _ in points], [cx + dx * r for _, dx in points], (h, w))
        mask[rr, cc] = True

    if shape == "circle":
        rr, cc = draw.disk((cy, cx), r, shape=(h, w))
        mask[rr, cc] = True
    elif shape == "ellipse":
        rr, cc = draw.ellipse(cy, cx, r, 0.55 * r, shape=(h, w))
        mask[rr, cc] = True
    elif shape == "square":
        poly([(-0.8, -0.8), (-0.8, 0.8), (0.8, 0.8), (0.8, -0.8)])
    elif shape == "tower":
        poly([(-1.0, -0.35), (-1.0, 0.35), (1.0, 0.35), (1.0, -0.35)])
    elif shape == "diamond":
        poly([(-1.0, 0.0), (0.0, 0.85), (1.0, 0.0), (0.0, -0.85)])
    elif shape == "triangle":
        poly([(-0.95, 0.0), (0.8, 0.95), (0.8, -0.95)])
    elif shape == "cross":
        poly([(-1.0, -0.3), (-1.0, 0.3), (1.0, 0.3), (1.0, -0.3)])
        poly([(-0.3, -1.0), (-0.3, 1.0), (0.3, 1.0), (0.3, -1.0)])
    elif shape == "star":
        angles = np.linspace(-np.pi / 2, 1.5 * np.pi, 11)[:-1]
        radii = np.where(np.arange(10) % 2 == 0, 1.0, 0.45)
        poly(list(zip(np.sin(angles) * radii, np.cos(angles) * radii, strict=True)))
    else:  # pragma: no cover - TOY_STIMULI names only the shapes above
        raise ValueError(shape)
    return mask


def toy_painting(seed: int, *, size: tuple[int, int] | None = None, n_stimuli: tuple[int, int] = (2, 4)) -> ToyPainting:
    """One toy painting. ``size`` (H, W) defaults to a random size with a random aspect ratio."""
    rng = np.random.default_rng(seed)
    if size is None:
        long_side = int(rng.integers(160, 320))
        aspect = rng.uniform(0.7, 1.0)
        size = (long_side, int(long_side * aspect)) if rng.random() < 0.5 else (int(long_side * aspect), long_side)
    h, w = size
    # A muted, textured ground: low saturation so no shape colour hides in it
    base = rng.uniform(90, 170, size=3)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    gradient = (yy[..., None] * rng.uniform(-30, 30, 3) + xx[..., None] * rng.uniform(-30, 30, 3))
    grey = base.mean()
    image = 0.35 * base + 0.65 * grey + gradient + rng.normal(0, 6, (h, w, 3))
    chosen = rng.choice(EMOTIONS, size=int(rng.integers(n_stimuli[0], n_stimuli[1] + 1)), replace=False)
    masks, explanations = {}, {}
    occupied = np.zeros((h, w), bool)
    side = min(h, w)
    for emotion in chosen:
        stim = TOY_STIMULI[str(emotion)]
        for _ in range(50):  # rejection-sample a free spot
            r = rng.uniform(0.12, 0.2) * side
            cy, cx = rng.uniform(r, h - r), rng.uniform(r, w - r)
            mask = _shape_mask(stim.shape, h, w, cy, cx, r)
            if mask.any() and not (mask & occupied).any():
                break
        else:
            continue
        occupied |= mask
        colour = np.array(stim.rgb, float) + rng.normal(0, 8, 3)
        image[mask] = colour + rng.normal(0, 5, (int(mask.sum()), 3))
        masks[str(emotion)] = mask
        explanations[str(emotion)] = toy_explanation(str(emotion))
    return ToyPainting(np.clip(image, 0, 255).astype(np.uint8), masks, explanations)


def toy_paintings(n: int, seed: int = 0, **kwargs) -> list[ToyPainting]:
    return [toy_painting(seed * 100_003 + i, **kwargs) for i in range(n)]


def write_toy_dataset(root, n: int, seed: int = 0):
    """``n`` toy paintings with their true masks and explanations as a dataset folder at ``root``
    (what ``emosem train`` reads); returns the :class:`~napari_emosem.data.StimulusDataset`."""
    from .data import Stimulus, StimulusDataset

    dataset = StimulusDataset.open(root, create=True)
    for i, toy in enumerate(toy_paintings(n, seed=seed)):
        stimuli = [Stimulus(e, toy.masks[e], [toy.explanations[e]]) for e in toy.emotions]
        dataset.write_painting(toy.image, f"toy-{i:03d}.png", stimuli)
    return dataset

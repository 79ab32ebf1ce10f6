"""Paintings the project makes itself: procedural, deterministic, free of third-party art.

Two scenes with parts that plausibly carry different emotions, so every proposal has something
to find: :func:`landscape` (a warm sun over a calm valley, a figure on a path) and :func:`storm`
(a dark sea under a storm, a lighthouse, a small boat). Both are built from flat shapes
(``skimage.draw``) and then overpainted with thousands of short, colour-jittered brush strokes so
that they have texture, like a painting rather than a vector drawing.
"""

from __future__ import annotations

import numpy as np
from skimage.draw import line_aa, polygon

from .errors import EmoSEMError
from .image_io import MIN_SIDE

#: The scenes :func:`painting` knows, by name.
SCENES = ("landscape", "storm")


def painting(scene: str = "landscape", *, height: int = 600, width: int = 800, seed: int = 0) -> np.ndarray:
    """Return the named scene as RGB uint8 (``height`` × ``width`` × 3)."""
    if scene == "landscape":
        return landscape(height=height, width=width, seed=seed)
    if scene == "storm":
        return storm(height=height, width=width, seed=seed)
    raise EmoSEMError(f"unknown sample scene {scene!r}: choose from {', '.join(SCENES)}")


def landscape(*, height: int = 600, width: int = 800, seed: int = 0) -> np.ndarray:
    """A sunny valley: sky, sun, distant blue hills, green fields, a path and a red-coated figure."""
    _check_size(height, width)
    rng = np.random.default_rng(seed)
    h, w = height, width
    canvas = np.zeros((h, w, 3), np.float32)
    rows = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None]
    cols = np.linspace(0.0, 1.0, w, dtype=np.float32)[None, :]

    # Sky: deep blue at the top to a pale warm haze at the horizon.
    horizon = 0.55
    t = np.clip(rows / horizon, 0, 1)[..., None]
    canvas[:] = _mix((60, 110, 190), (250, 225, 180), t)

    # Sun with a soft glow.
    sun_r, sun_c, sun_rad = 0.22 * h, 0.72 * w, 0.07 * min(h, w)
    dist = np.hypot((np.arange(h)[:, None] - sun_r), (np.arange(w)[None, :] - sun_c))
    glow = np.clip(1.0 - dist / (sun_rad * 4.0), 0, 1)[..., None] ** 2
    canvas = canvas * (1 - 0.6 * glow) + np.array((255, 230, 150), np.float32) * 0.6 * glow
    canvas[dist <= sun_rad] = (255, 214, 90)

    # Distant hills (blue-violet), then nearer hills (greens), each a noisy sine ridge.
    for base, amp, colour, far in (
        (0.50, 0.08, (110, 120, 170), 1.0),
        (0.60, 0.06, (90, 150, 80), 0.5),
        (0.72, 0.05, (60, 125, 55), 0.0),
    ):
        phase = rng.uniform(0, 2 * np.pi)
        waves = 0.6 * np.sin(2 * np.pi * (1.3 * cols + phase / 6)) + 0.4 * np.sin(2 * np.pi * 3.1 * cols + phase)
        ridge = base - amp * waves
        below = rows >= ridge
        shade = _mix(colour, tuple(min(255, c + 40) for c in colour), (1.0 - rows) * far + 0.2)
        canvas = np.where(below[..., None], shade, canvas)

    # A winding ochre path from the foreground to the middle distance.
    centre = 0.45 + 0.12 * np.sin(np.linspace(0, np.pi, 60))
    ys = np.linspace(1.0, 0.66, 60)
    half = np.linspace(0.12, 0.01, 60)
    poly_r = np.concatenate([ys, ys[::-1]]) * h
    poly_c = np.concatenate([centre - half, (centre + half)[::-1]]) * w
    rr, cc = polygon(poly_r, poly_c, shape=(h, w))
    canvas[rr, cc] = (205, 170, 100)

    # A tree with a dark trunk and a round crown, left of the path.
    _ellipse(canvas, 0.60 * h, 0.20 * w, 0.05 * h, 0.012 * w, (70, 50, 35), rows_from=0.60 * h)
    _ellipse(canvas, 0.50 * h, 0.20 * w, 0.11 * h, 0.08 * w, (40, 95, 45))

    # A figure in a red coat walking on the path.
    fig_r, fig_c, unit = 0.80 * h, 0.50 * w, 0.018 * min(h, w)
    _ellipse(canvas, fig_r, fig_c, 3.2 * unit, 1.3 * unit, (190, 35, 30))  # coat
    _ellipse(canvas, fig_r - 4.0 * unit, fig_c, 1.0 * unit, 0.9 * unit, (235, 195, 160))  # head
    _ellipse(canvas, fig_r - 4.8 * unit, fig_c, 0.6 * unit, 1.4 * unit, (40, 30, 30))  # hat

    return _brushwork(canvas, rng)


def storm(*, height: int = 600, width: int = 800, seed: int = 0) -> np.ndarray:
    """A storm at sea: bruised clouds, a lightning bolt, dark waves, a lighthouse and a small boat."""
    _check_size(height, width)
    rng = np.random.default_rng(seed + 1)
    h, w = height, width
    rows = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None]
    cols = np.linspace(0.0, 1.0, w, dtype=np.float32)[None, :]
    horizon = 0.5

    sky = _mix((35, 35, 50), (95, 100, 110), np.clip(rows / horizon, 0, 1)[..., None])
    # Cloud masses: blobs of slate and bruised violet.
    canvas = np.broadcast_to(sky, (h, w, 3)).copy()
    for _ in range(14):
        r, c = rng.uniform(0.0, 0.4) * h, rng.uniform(0, 1) * w
        colour = rng.choice([(60, 60, 75), (80, 70, 95), (110, 110, 120)])
        _ellipse(canvas, r, c, rng.uniform(0.05, 0.12) * h, rng.uniform(0.1, 0.25) * w, tuple(colour), soft=True)

    _lightning(canvas, rng, horizon)

    # Sea: dark green-black waves with pale crests.
    wave = horizon + 0.01 * np.sin(2 * np.pi * 9 * cols)
    sea = rows >= wave
    water = _mix((30, 60, 60), (10, 25, 30), np.clip((rows - horizon) / (1 - horizon), 0, 1)[..., None])
    canvas = np.where(sea[..., None], water, canvas)
    for k in range(9):
        # Crests thicken and spread towards the viewer (perspective).
        base = horizon + (1 - horizon) * ((k + 1) / 10) ** 1.4
        crest = base + (0.006 + 0.002 * k) * np.sin(2 * np.pi * (7 - k % 3) * cols + 1.7 * k)
        band = sea & (np.abs(rows - crest) < 0.002 + 0.0025 * k / 9)
        canvas[np.broadcast_to(band, (h, w))] = (170, 190, 185)

    _lighthouse_and_boat(canvas)

    return _brushwork(canvas, rng)


# Helpers -----------------------------------------------------------------------------------------


def _lightning(canvas: np.ndarray, rng: np.random.Generator, horizon: float) -> None:
    """A jagged bright line from the clouds down to the sea."""
    h, w = canvas.shape[:2]
    r0, c0 = 0.08 * h, 0.3 * w
    for _ in range(7):
        r1, c1 = r0 + rng.uniform(0.04, 0.08) * h, c0 + rng.uniform(-0.04, 0.04) * w
        for off in range(-1, 2):
            rr, cc, val = line_aa(int(r0), int(c0) + off, int(min(r1, horizon * h)), int(c1) + off)
            keep = (rr >= 0) & (rr < h) & (cc >= 0) & (cc < w)
            canvas[rr[keep], cc[keep]] = canvas[rr[keep], cc[keep]] * (1 - val[keep, None]) + np.array(
                (250, 250, 210), np.float32
            ) * val[keep, None]
        r0, c0 = r1, c1
        if r0 >= horizon * h:
            break


def _lighthouse_and_boat(canvas: np.ndarray) -> None:
    """A lighthouse on a rock at the right; a small boat tossed on the waves, with a torn sail."""
    h, w = canvas.shape[:2]
    _ellipse(canvas, 0.62 * h, 0.85 * w, 0.06 * h, 0.12 * w, (45, 40, 35), rows_from=None)
    tower_r = np.array([0.58, 0.30, 0.30, 0.58]) * h
    tower_c = np.array([0.82, 0.835, 0.865, 0.88]) * w
    rr, cc = polygon(tower_r, tower_c, shape=(h, w))
    canvas[rr, cc] = (225, 220, 205)
    _ellipse(canvas, 0.29 * h, 0.85 * w, 0.025 * h, 0.03 * w, (255, 220, 120), soft=True)
    boat_r, boat_c = 0.74 * h, 0.35 * w
    hull_r = np.array([0.0, 0.0, 0.03, 0.03]) * h + boat_r
    hull_c = np.array([-0.06, 0.06, 0.04, -0.04]) * w + boat_c
    rr, cc = polygon(hull_r, hull_c, shape=(h, w))
    canvas[rr, cc] = (90, 45, 25)
    sail_r = np.array([0.0, -0.12, 0.0]) * h + boat_r
    sail_c = np.array([-0.03, 0.0, 0.035]) * w + boat_c
    rr, cc = polygon(sail_r, sail_c, shape=(h, w))
    canvas[rr, cc] = (200, 185, 150)


def _check_size(height: int, width: int) -> None:
    if min(height, width) < MIN_SIDE:
        raise EmoSEMError(f"a sample painting needs at least {MIN_SIDE} px per side, not {height} × {width}")


def _mix(a, b, t) -> np.ndarray:
    a = np.asarray(a, np.float32)
    b = np.asarray(b, np.float32)
    t = np.asarray(t, np.float32)
    if t.ndim == 2:
        t = t[..., None]
    return a * (1.0 - t) + b * t


def _ellipse(canvas, r, c, r_rad, c_rad, colour, *, soft: bool = False, rows_from=None) -> None:
    """Paint an ellipse (optionally with a soft edge; optionally only below ``rows_from``)."""
    h, w = canvas.shape[:2]
    r0, r1 = max(0, int(r - r_rad) - 1), min(h, int(r + r_rad) + 2)
    c0, c1 = max(0, int(c - c_rad) - 1), min(w, int(c + c_rad) + 2)
    if r0 >= r1 or c0 >= c1:
        return
    yy = (np.arange(r0, r1)[:, None] - r) / max(r_rad, 1e-6)
    xx = (np.arange(c0, c1)[None, :] - c) / max(c_rad, 1e-6)
    d = yy**2 + xx**2
    alpha = np.clip((1.0 - d) * 2.0, 0, 1) if soft else (d <= 1.0).astype(np.float32)
    if rows_from is not None:
        alpha = alpha * (np.arange(r0, r1)[:, None] >= rows_from)
    patch = canvas[r0:r1, c0:c1]
    canvas[r0:r1, c0:c1] = patch * (1 - alpha[..., None]) + np.asarray(colour, np.float32) * alpha[..., None]


def _brushwork(canvas: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Overpaint with short strokes that take the colour underneath, jittered: visible brushwork."""
    h, w = canvas.shape[:2]
    out = canvas.copy()
    # Stroke count scales with the area so texture looks the same at any size.
    n = int(1.2 * h * w / 100)
    length = max(4.0, 0.025 * min(h, w))
    thick = max(1.0, 0.004 * min(h, w))
    rs = rng.uniform(0, h, n)
    cs = rng.uniform(0, w, n)
    # Strokes follow the scene: near-horizontal in the lower half, more varied above.
    angles = rng.normal(0.0, 0.35, n) + np.where(rs < h / 2, rng.normal(0, 0.6, n), 0.0)
    jitter = rng.normal(0, 9, (n, 3)).astype(np.float32)
    lengths = rng.uniform(0.6, 1.4, n) * length
    half = int(np.ceil(length * 1.4)) + 1
    for r, c, a, j, ln in zip(rs, cs, angles, jitter, lengths, strict=True):
        colour = canvas[int(r), int(c)] + j
        ca, sa = np.cos(a), np.sin(a)
        r0, r1 = max(0, int(r) - half), min(h, int(r) + half + 1)
        c0, c1 = max(0, int(c) - half), min(w, int(c) + half + 1)
        yy = (np.arange(r0, r1) - r)[:, None]
        xx = (np.arange(c0, c1) - c)[None, :]
        along = xx * ca + yy * sa
        across = -xx * sa + yy * ca
        inside = (np.abs(along) <= ln / 2) & (np.abs(across) <= thick)
        out[r0:r1, c0:c1][inside] = out[r0:r1, c0:c1][inside] * 0.35 + colour * 0.65
    # A faint canvas weave.
    weave = (np.sin(np.arange(h)[:, None] * 1.9) * np.sin(np.arange(w)[None, :] * 1.7)).astype(np.float32)
    out += 3.0 * weave[..., None]
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)

"""Between a painting's pixels and the encoder's square frame, in both directions (as SAM does).

The painting is resized so its longest side is the encoder's ``img_size``, then padded at the
bottom and right. Masks go into that frame at low resolution (the mask decoder's 4× grid) and
logits come back out at the painting's own resolution.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F


@dataclass(frozen=True)
class Geometry:
    """Where a painting sits in the encoder's square input."""

    original_size: tuple[int, int]  # (H, W) of the painting
    input_size: tuple[int, int]  # (h, w) after resizing the longest side to img_size
    img_size: int

    @property
    def scale(self) -> float:
        """Painting pixels -> input pixels."""
        return self.input_size[0] / self.original_size[0]

    @property
    def extent(self) -> tuple[float, float]:
        """Share of the square frame the painting covers (height, width)."""
        return self.input_size[0] / self.img_size, self.input_size[1] / self.img_size

    def points_to_input(self, points_rc: np.ndarray) -> np.ndarray:
        """(N, 2) napari (row, col) painting pixels -> SAM's (x, y) input pixels."""
        h, w = self.original_size
        sy, sx = self.input_size[0] / h, self.input_size[1] / w
        pts = np.asarray(points_rc, dtype=np.float64).reshape(-1, 2)
        return np.stack([(pts[:, 1] + 0.5) * sx, (pts[:, 0] + 0.5) * sy], axis=1)


def resized_shape(height: int, width: int, longest: int) -> tuple[int, int]:
    # segment_anything.utils.transforms.ResizeLongestSide.get_preprocess_shape
    scale = longest / max(height, width)
    return int(height * scale + 0.5), int(width * scale + 0.5)


def geometry_for(height: int, width: int, img_size: int) -> Geometry:
    return Geometry((height, width), resized_shape(height, width, img_size), img_size)


def _resize_uint8(array: np.ndarray, size_hw: tuple[int, int], resample) -> np.ndarray:
    from PIL import Image

    if array.shape[:2] == tuple(size_hw):
        return array
    # reducing_gap: box-reduce first, then resample: fast and alias-free for big downscales
    img = Image.fromarray(array).resize((size_hw[1], size_hw[0]), resample, reducing_gap=3.0)
    return np.asarray(img)


def preprocess_image(rgb: np.ndarray, img_size: int, mean: torch.Tensor, std: torch.Tensor):
    """RGB uint8 (H, W, 3) -> normalised, padded (3, S, S) float tensor and its Geometry.

    Resizing happens on uint8 with PIL, so even a 100-megapixel painting costs little memory.
    """
    from PIL import Image

    geometry = geometry_for(rgb.shape[0], rgb.shape[1], img_size)
    h, w = geometry.input_size
    small = _resize_uint8(rgb, (h, w), Image.BICUBIC)
    x = torch.from_numpy(np.array(small, dtype=np.float32)).permute(2, 0, 1)
    x = (x - mean.view(-1, 1, 1)) / std.view(-1, 1, 1)
    return F.pad(x, (0, img_size - w, 0, img_size - h)), geometry


def mask_to_lowres(mask: np.ndarray, geometry: Geometry, lowres: int) -> torch.Tensor:
    """(H, W) painting mask -> soft (lowres, lowres) float mask in the padded frame.

    ``mask`` is bool, or a float map in [0, 1] (a consensus map: the fraction of annotators who
    marked each pixel), resized as 8-bit levels (steps of 1/255).
    """
    from PIL import Image

    h, w = geometry.input_size
    mask = np.asarray(mask)
    if mask.dtype == bool:
        levels = mask.astype(np.uint8) * 255
    else:
        levels = (np.clip(mask, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    m = _resize_uint8(levels, (h, w), Image.BILINEAR)
    t = torch.from_numpy(np.array(m, dtype=np.float32)).div_(255.0)
    t = F.pad(t, (0, geometry.img_size - w, 0, geometry.img_size - h))
    return F.adaptive_avg_pool2d(t[None, None], (lowres, lowres))[0, 0]


def lowres_to_painting(logits: torch.Tensor, geometry: Geometry) -> torch.Tensor:
    """SAM's postprocess_masks: (N, 1, 4h, 4w) low-res logits -> (N, 1, H, W) at the painting's size.

    SAM upsamples the whole padded frame, crops the painting and resizes it to its own size. Here
    only the low-res rows and columns the painting's part of the frame reads are upsampled (the
    same source pixels and weights, so the same values), and the resize is skipped when the
    painting already has the input's size (a bilinear resize to the same size is a copy).
    """
    s = geometry.img_size
    h, w = geometry.input_size
    lowres_h, lowres_w = logits.shape[-2:]
    # every output row y < h reads low-res rows floor((y + 0.5)·lowres/s - 0.5) and the one after
    rows = min(lowres_h, math.ceil(h * lowres_h / s) + 1)
    cols = min(lowres_w, math.ceil(w * lowres_w / s) + 1)
    x = F.interpolate(
        logits[..., :rows, :cols],
        scale_factor=(s / lowres_h, s / lowres_w),
        mode="bilinear",
        align_corners=False,
        recompute_scale_factor=False,
    )[..., :h, :w]
    if (h, w) == tuple(geometry.original_size):
        return x
    return F.interpolate(x, tuple(geometry.original_size), mode="bilinear", align_corners=False)

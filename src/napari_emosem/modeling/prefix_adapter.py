"""The prefix adapter: (image embedding, soft emotion mask, emotion) -> prefix tokens for the LM.

In the spirit of ClipCap's MLP mapping. The visual input is mask-weighted pooling of the image
embedding (what is inside the stimulus) beside global pooling (the whole painting); a few shape
statistics of the mask (area, centroid, spread) let the LM say where and how large the stimulus is;
the emotion enters as its pooled prompt embedding.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

N_SHAPE_FEATURES = 5


def mask_shape_features(mask: torch.Tensor, extent: torch.Tensor) -> torch.Tensor:
    """Area fraction, centroid (y, x) and spread (y, x), relative to the painting.

    mask: (N, h, w) soft, in the encoder's padded square frame; extent: (N, 2) the share of the
    frame's height and width the painting covers (the rest is padding). Returns (N, 5).
    """
    n, h, w = mask.shape
    total = mask.sum((1, 2)).clamp_min(1e-6)
    ys = (torch.arange(h, device=mask.device, dtype=mask.dtype) + 0.5).view(1, h, 1) / h
    xs = (torch.arange(w, device=mask.device, dtype=mask.dtype) + 0.5).view(1, 1, w) / w
    ey, ex = extent[:, 0].to(mask.dtype), extent[:, 1].to(mask.dtype)
    cy = (mask * ys).sum((1, 2)) / total
    cx = (mask * xs).sum((1, 2)) / total
    sy = ((mask * (ys - cy.view(n, 1, 1)) ** 2).sum((1, 2)) / total).clamp_min(0).sqrt()
    sx = ((mask * (xs - cx.view(n, 1, 1)) ** 2).sum((1, 2)) / total).clamp_min(0).sqrt()
    area = total / (h * w * ey * ex)
    return torch.stack([area, cy / ey, cx / ex, sy / ey, sx / ex], dim=1)


class PrefixAdapter(nn.Module):
    def __init__(self, visual_width: int, lm_width: int, prefix_length: int, hidden: int):
        super().__init__()
        self.prefix_length = prefix_length
        self.lm_width = lm_width
        in_width = 2 * visual_width + N_SHAPE_FEATURES + lm_width
        self.net = nn.Sequential(
            nn.Linear(in_width, hidden),
            nn.GELU(),
            nn.Linear(hidden, prefix_length * lm_width),
        )
        self.norm = nn.LayerNorm(visual_width)
        self.emotion_norm = nn.LayerNorm(lm_width)  # word embeddings are small; see EmotionProjector

    def forward(
        self, embeddings: torch.Tensor, mask: torch.Tensor, extent: torch.Tensor, emotion: torch.Tensor
    ) -> torch.Tensor:
        """embeddings (N, C, h, w) per pair; mask (N, H', W') soft in [0, 1] in the same padded frame;
        extent (N, 2) see :func:`mask_shape_features`; emotion (N, LM width).

        Returns (N, prefix_length, LM width).
        """
        n, c, h, w = embeddings.shape
        shape = mask_shape_features(mask, extent)
        m = F.adaptive_avg_pool2d(mask.unsqueeze(1), (h, w)).view(n, 1, h * w)
        flat = embeddings.reshape(n, c, h * w)
        inside = (flat * m).sum(-1) / m.sum(-1).clamp_min(1e-6)
        overall = flat.mean(-1)
        x = torch.cat([self.norm(inside), self.norm(overall), shape, self.emotion_norm(emotion)], dim=1)
        return self.net(x).view(n, self.prefix_length, self.lm_width)

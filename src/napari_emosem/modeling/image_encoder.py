"""SAM's ViT image encoder, with SAM's own preprocessing (resize longest side, normalise, pad)."""

from __future__ import annotations

from functools import partial

import numpy as np
import torch
from torch import nn

from ..config import EncoderConfig
from .transforms import Geometry, geometry_for, preprocess_image

# SAM's pixel statistics (segment_anything/modeling/sam.py)
PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)


class ImageEncoder(nn.Module):
    """Painting (RGB uint8) -> embedding (C × S/patch × S/patch); SAM's ``ImageEncoderViT`` inside."""

    def __init__(self, config: EncoderConfig):
        super().__init__()
        from segment_anything.modeling import ImageEncoderViT

        self.config = config
        self.vit = ImageEncoderViT(
            depth=config.depth,
            embed_dim=config.embed_dim,
            img_size=config.img_size,
            mlp_ratio=4,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            num_heads=config.num_heads,
            patch_size=config.patch_size,
            qkv_bias=True,
            use_rel_pos=True,
            global_attn_indexes=config.global_attn_indexes,
            window_size=config.window_size,
            out_chans=config.out_chans,
        )

    @property
    def img_size(self) -> int:
        return self.config.img_size

    @property
    def lowres(self) -> int:
        """Side of the mask decoder's low-resolution masks (4× the embedding grid)."""
        return 4 * self.config.embedding_size

    def geometry(self, height: int, width: int) -> Geometry:
        return geometry_for(height, width, self.img_size)

    def preprocess(self, rgb: np.ndarray) -> tuple[torch.Tensor, Geometry]:
        """RGB uint8 (H, W, 3) -> (3, S, S) normalised, padded tensor (on the CPU) and its Geometry."""
        return preprocess_image(rgb, self.img_size, torch.tensor(PIXEL_MEAN), torch.tensor(PIXEL_STD))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``images``: preprocessed (B, 3, S, S) -> embeddings (B, C, S/patch, S/patch)."""
        return self.vit(images)

"""The emotion projector: prompt embeddings (LM width) -> SAM's sparse prompt tokens."""

from __future__ import annotations

import torch
from torch import nn


class EmotionProjector(nn.Module):
    """A two-layer MLP applied to every prompt token (as LISA projects its [SEG] token).

    Word embeddings are small (GPT-2 initialises them with std 0.02): the LayerNorm puts every LM's
    embeddings on one scale, so the emotion is not drowned by the MLP's biases.
    """

    def __init__(self, lm_width: int, prompt_width: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.LayerNorm(lm_width),
            nn.Linear(lm_width, lm_width),
            nn.GELU(),
            nn.Linear(lm_width, prompt_width),
        )

    def forward(self, prompt: torch.Tensor) -> torch.Tensor:
        return self.net(prompt)

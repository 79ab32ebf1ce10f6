"""The emotional prompt: "generate the mask for the emotion <e>" plus a learnable mask token.

The prompt is embedded with the language model's own word embeddings (so the emotion words mean
what the LM thinks they mean); a learnable mask token joins it. The mask token first reads the
prompt through one attention layer (a learned query, as in a Q-Former): most prompt words are the
same for every emotion, and this gives the decoder one token that carries what differs.
Every emotion's prompt is padded to the same length with a learnable pad vector, so that decoding
any subset of emotions in one call gives exactly what decoding them one by one gives.
"""

from __future__ import annotations

import torch
from torch import nn


class EmotionalPrompt(nn.Module):
    def __init__(self, emotions: tuple[str, ...], template: str, tokenizer, width: int):
        super().__init__()
        self.emotions = tuple(emotions)
        ids, valid = _padded_ids(tokenizer, [template.format(emotion=e) for e in emotions])
        self.register_buffer("token_ids", ids, persistent=False)
        self.register_buffer("valid", valid, persistent=False)
        # the emotion word alone (leading space: how it appears mid-sentence for BPE tokenizers)
        ids, valid = _padded_ids(tokenizer, [" " + e for e in emotions])
        self.register_buffer("word_ids", ids, persistent=False)
        self.register_buffer("word_valid", valid, persistent=False)
        self.mask_token = nn.Parameter(torch.randn(1, 1, width) * 0.02)
        self.pad_token = nn.Parameter(torch.zeros(1, 1, width))
        heads = next(h for h in (8, 4, 2, 1) if width % h == 0)
        self.norm = nn.LayerNorm(width)  # word embeddings are small (GPT-2: std 0.02)
        self.read = nn.MultiheadAttention(width, heads, batch_first=True)

    @property
    def length(self) -> int:
        """Tokens per emotion: the padded prompt plus the mask token."""
        return self.token_ids.shape[1] + 1

    def index(self, emotion: str) -> int:
        return self.emotions.index(emotion)

    # The LM's word embeddings are passed in, not held: they belong to the LM (and are often tied
    # to its output layer), and a second reference would duplicate them in checkpoints.

    def forward(self, emotion_ids: torch.Tensor, word_embeddings: nn.Embedding) -> torch.Tensor:
        """``emotion_ids`` (N,) -> prompt embeddings (N, length, LM width)."""
        words = word_embeddings(self.token_ids[emotion_ids])
        valid = self.valid[emotion_ids].unsqueeze(-1)
        words = torch.where(valid, words, self.pad_token.to(words.dtype))
        query = self.mask_token.to(words.dtype).expand(words.shape[0], -1, -1)
        keys = self.norm(words)
        read, _ = self.read(query, keys, keys, key_padding_mask=~valid[..., 0], need_weights=False)
        return torch.cat([words, query + read], dim=1)

    def pooled(self, emotion_ids: torch.Tensor, word_embeddings: nn.Embedding) -> torch.Tensor:
        """One vector per emotion (mean of the emotion word's embeddings): what the prefix adapter fuses."""
        words = word_embeddings(self.word_ids[emotion_ids])
        valid = self.word_valid[emotion_ids].unsqueeze(-1).to(words.dtype)
        return (words * valid).sum(1) / valid.sum(1)


def _padded_ids(tokenizer, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    seqs = [tokenizer(t, add_special_tokens=False).input_ids for t in texts]
    length = max(len(s) for s in seqs)
    ids = torch.zeros(len(seqs), length, dtype=torch.long)
    valid = torch.zeros(len(seqs), length, dtype=torch.bool)
    for row, seq in enumerate(seqs):
        ids[row, : len(seq)] = torch.tensor(seq)
        valid[row, : len(seq)] = True
    return ids, valid

"""SAM's two-way transformer for many prompt sets on one image, for inference.

EmoSEM decodes every emotion as its own prompt set (the paper's per-emotion decoding), and
segment_anything's ``TwoWayTransformer`` would take one copy of the 4,096 image tokens per prompt
set. Run on one painting without a mask input, the same arithmetic can be ordered so that less
of it is repeated, with no change beyond float rounding (tested against segment_anything's own):

- Layer 0 sees the same image tokens for every prompt set (the embedding plus SAM's no-mask
  embedding; the positional encoding is the image's): the keys and values that the tokens read
  and the queries with which the image reads the tokens are projected once for all emotions.
- Everywhere else the image-side projections are folded into the few tokens' side. Tokens reading
  the image: ``softmax(q·(x W_k + b_k)) (x W_v + b_v) = softmax((q W_k)·x) x W_v + b_v`` (a key
  bias is constant along that softmax, and the weights sum to 1). The image reading the tokens:
  ``(x W_q + b_q)·k = x·(k W_q) + b_q·k``, and the output projection goes onto the token values
  before the sum over tokens, ``A (V W_o) = (A V) W_o``. With SAM's 8 heads and EmoSEM's ≈ 14
  tokens that is as many multiply-adds as projecting the 4,096 image tokens, but no projected
  (4,096 × 128) copies and no head-transposing copies are written.
- The final attention is computed for the IoU token and the first mask token only: single-mask
  decoding reads nothing else.

The tokens' own self-attention, MLPs and LayerNorms are segment_anything's modules. Prompt sets
are decoded a few at a time so that a set's (4,096 × 256) image tokens stay in the CPU's cache
between the steps that reuse them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F


@dataclass
class SharedImage:
    """What layer 0 computes from the image alone, once for all prompt sets."""

    tokens: torch.Tensor  # (HW, C) image tokens (embedding + dense no-mask embedding)
    pe: torch.Tensor  # (HW, C) positional encoding of the image grid
    keys: torch.Tensor  # (1, heads, HW, d) token-to-image keys
    values: torch.Tensor  # (1, heads, HW, d) token-to-image values
    queries: torch.Tensor  # (heads, d, HW) image-to-token queries, transposed, pre-scaled by 1/sqrt(d)


def _heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(..., L, D) -> (..., heads, L, D / heads)."""
    *lead, length, dim = x.shape
    return x.reshape(*lead, length, heads, dim // heads).transpose(-3, -2)


def shared_image(transformer: nn.Module, image_tokens: torch.Tensor, pe: torch.Tensor) -> SharedImage:
    """``image_tokens`` and ``pe`` as (HW, C) -> layer 0's prompt-independent projections."""
    layer = transformer.layers[0]
    read, write = layer.cross_attn_token_to_image, layer.cross_attn_image_to_token
    with_pe = image_tokens + pe
    keys = _heads(read.k_proj(with_pe), read.num_heads).unsqueeze(0)
    values = _heads(read.v_proj(image_tokens), read.num_heads).unsqueeze(0)
    scale = (write.internal_dim // write.num_heads) ** -0.5
    queries = (_heads(write.q_proj(with_pe), write.num_heads) * scale).transpose(1, 2).contiguous()
    return SharedImage(image_tokens, pe, keys, values, queries)


def decode_prompt_sets(transformer: nn.Module, image: SharedImage, tokens: torch.Tensor):
    """``tokens`` (N, T, C) output + prompt tokens of N prompt sets on ``image``.

    Returns ``(first two tokens (N, 2, C), image tokens (N, HW, C))``: what SAM's transformer
    returns, cut to the IoU token and the first mask token that single-mask decoding reads.
    """
    first = transformer.layers[0]
    assert first.skip_first_layer_pe, "layer 0 of SAM's two-way transformer adds no positional encoding"
    n, t, c = tokens.shape

    # Layer 0: token self-attention (no positional encoding, no residual: SAM's first layer)
    queries = first.norm1(first.self_attn(q=tokens, k=tokens, v=tokens))
    # tokens read the image: every prompt set's queries against the one set of keys and values
    read = first.cross_attn_token_to_image
    q = _heads(read.q_proj(queries + tokens).reshape(1, n * t, -1), read.num_heads)
    out = F.scaled_dot_product_attention(q, image.keys, image.values)
    out = read.out_proj(out.transpose(1, 2).reshape(n, t, -1))
    queries = first.norm2(queries + out)
    queries = first.norm3(queries + first.mlp(queries))
    # the image reads the tokens with its shared queries
    write = first.cross_attn_image_to_token
    h = write.num_heads
    k = _heads(write.k_proj(queries + tokens), h)  # (N, h, T, d)
    scores = k.transpose(0, 1).reshape(h, n * t, -1) @ image.queries  # (h, N·T, HW)
    weights = torch.softmax(scores.view(h, n, t, -1), dim=2).transpose(0, 1).reshape(n, h * t, -1)
    keys = first.norm4(_read_tokens(write, weights, queries, image.tokens))

    # Later layers: SAM's TwoWayAttentionBlock, with the image-side projections folded away
    for layer in transformer.layers[1:]:
        q = queries + tokens
        queries = layer.norm1(queries + layer.self_attn(q=q, k=q, v=queries))
        with_pe = keys + image.pe
        queries = layer.norm2(
            queries + _tokens_read_image(layer.cross_attn_token_to_image, queries + tokens, with_pe, keys)
        )
        queries = layer.norm3(queries + layer.mlp(queries))
        keys = layer.norm4(
            _image_reads_tokens(layer.cross_attn_image_to_token, with_pe, queries + tokens, queries, keys)
        )

    # Final attention of the IoU token and the first mask token to the image
    final = transformer.final_attn_token_to_image
    out = _tokens_read_image(final, (queries + tokens)[:, :2], keys + image.pe, keys)
    return transformer.norm_final_attn(queries[:, :2] + out), keys


# SAM's Attention with C-wide inputs, D = heads·d internal width and T tokens against HW image
# tokens. Projecting the image tokens costs HW·C·D per projection; folding a projection into the
# tokens' side costs HW·C·(heads·T) and writes no (HW, D) copy. With SAM's heads = 8 and EmoSEM's
# T ≈ 14 tokens, heads·T ≈ D: the same arithmetic, in fewer passes over memory.


def _tokens_read_image(attn: nn.Module, queries: torch.Tensor, image_with_pe: torch.Tensor, image: torch.Tensor):
    """``attn(q=queries, k=image_with_pe, v=image)`` with the key and value projections folded into
    the queries. queries (N, T, C); image tokens (N, HW, C). Returns (N, T, C)."""
    n, t, c = queries.shape
    h = attn.num_heads
    d = attn.internal_dim // h
    q = _heads(attn.q_proj(queries), h) * d**-0.5  # (N, h, T, d)
    # q·(x W_kᵀ + b_k) = (q W_k)·x + const: the key bias does not change a softmax over x
    qk = (q @ attn.k_proj.weight.reshape(h, d, c)).reshape(n, h * t, c)
    weights = torch.softmax(qk @ image_with_pe.transpose(1, 2), dim=-1)  # (N, h·T, HW)
    context = (weights @ image.to(weights.dtype)).reshape(n, h, t, c)
    # Σ a (x W_vᵀ + b_v) = (Σ a x) W_vᵀ + b_v, since the weights sum to 1
    values = context @ attn.v_proj.weight.reshape(h, d, c).transpose(1, 2) + attn.v_proj.bias.reshape(h, 1, d)
    return attn.out_proj(values.transpose(1, 2).reshape(n, t, h * d))


def _image_reads_tokens(attn, image_with_pe, queries_with_pe, queries, residual):
    """``residual + attn(q=image_with_pe, k=queries_with_pe, v=queries)`` with the image's query
    projection folded into the tokens' keys. Image tokens (N, HW, C), tokens (N, T, C)."""
    n, t, c = queries.shape
    h = attn.num_heads
    d = attn.internal_dim // h
    k = _heads(attn.k_proj(queries_with_pe), h) * d**-0.5  # (N, h, T, d)
    # (x W_qᵀ + b_q)·k = x·(k W_q) + b_q·k: here the softmax runs over the tokens, so b_q·k stays
    kq = (k @ attn.q_proj.weight.reshape(h, d, c)).reshape(n, h * t, c)
    kb = (k @ attn.q_proj.bias.reshape(h, d, 1)).reshape(n, h * t, 1)
    scores = torch.baddbmm(kb, kq, image_with_pe.transpose(1, 2).to(kq.dtype))  # (N, h·T, HW)
    weights = torch.softmax(scores.view(n, h, t, -1), dim=2).view(n, h * t, -1)
    return _read_tokens(attn, weights, queries, residual)


def _read_tokens(attn, weights: torch.Tensor, queries: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
    """``residual + out_proj(Σ_tokens weights · v_proj(queries))``, per head, with the output
    projection applied to the T token values before the HW-long sum (``A (V W_o) = (A V) W_o``).
    weights (N, h·T, HW) sum to 1 over each head's T tokens."""
    n, t, c = queries.shape
    h = attn.num_heads
    v = _heads(attn.v_proj(queries), h)  # (N, h, T, d)
    projected = (v @ attn.out_proj.weight.t().reshape(h, -1, c)).reshape(n, h * t, c)
    return torch.baddbmm(residual + attn.out_proj.bias, weights.transpose(1, 2), projected.to(weights.dtype))

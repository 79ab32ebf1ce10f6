"""SAM's prompt encoder and mask decoder, conditioned on the emotional prompt.

segment_anything's ``MaskDecoder.forward`` repeats one image embedding for every prompt set. Here
each prompt set names its image (``image_index``), so one call decodes every emotion of one
painting, or every (painting, emotion) pair of a training batch. At inference the emotions of a
painting share its image-side work (:mod:`.shared_image_decoding`); every emotion is still its
own prompt set, decoded as SAM decodes one. The parameters and their names are SAM's, so SAM
checkpoints load unchanged.
"""

from __future__ import annotations

import types
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from ..config import DecoderConfig, EncoderConfig


@dataclass
class MaskPrediction:
    #: (N, 1, 4h, 4w) low-resolution mask logits in the encoder's padded input frame
    logits: torch.Tensor
    #: (N,) predicted IoU of each mask (SAM's IoU head): the score shown to annotators
    iou: torch.Tensor


class EmotionMaskDecoder(nn.Module):
    def __init__(self, encoder: EncoderConfig, decoder: DecoderConfig):
        super().__init__()
        from segment_anything.modeling import MaskDecoder, PromptEncoder, TwoWayTransformer

        dim = encoder.out_chans
        grid = encoder.embedding_size
        self.prompt_encoder = PromptEncoder(
            embed_dim=dim,
            image_embedding_size=(grid, grid),
            input_image_size=(encoder.img_size, encoder.img_size),
            mask_in_chans=decoder.mask_in_chans,
        )
        self.mask_decoder = MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(
                depth=decoder.transformer_depth,
                embedding_dim=dim,
                mlp_dim=decoder.mlp_dim,
                num_heads=decoder.num_heads,
            ),
            transformer_dim=dim,
            iou_head_depth=3,
            iou_head_hidden_dim=decoder.iou_head_hidden_dim,
        )
        from segment_anything.modeling.transformer import Attention

        for module in self.mask_decoder.modules():
            if isinstance(module, Attention):  # this instance only; segment_anything is untouched
                module.forward = types.MethodType(_fused_attention, module)
        #: prompt sets decoded together when they share a painting (inference; see
        #: shared_image_decoding): 8 emotions at ViT-B size on a 2-core AMD EPYC took 188 / 177 /
        #: 215 / 267 ms (fp32) and 130 / 109 / 118 / 135 ms (bf16) at 1 / 2 / 4 / 8 per pass
        self.prompt_sets_per_pass = 2

    def prompt_tokens(self, points: tuple[torch.Tensor, torch.Tensor] | None, n: int, device) -> torch.Tensor:
        """Sparse tokens for clicks ``(coords (N, K, 2) as x, y in input pixels, labels (N, K))``."""
        if points is None:
            return torch.zeros(n, 0, self.prompt_encoder.embed_dim, device=device)
        sparse, _ = self.prompt_encoder(points=points, boxes=None, masks=None)
        return sparse

    def dense(self, n: int, mask_input: torch.Tensor | None) -> torch.Tensor:
        pe = self.prompt_encoder
        if mask_input is not None:
            return pe.mask_downscaling(mask_input)
        h, w = pe.image_embedding_size
        return pe.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(n, -1, h, w)

    def forward(
        self,
        image_embeddings: torch.Tensor,
        sparse: torch.Tensor,
        image_index: torch.Tensor,
        *,
        mask_input: torch.Tensor | None = None,
    ) -> MaskPrediction:
        """Decode one mask per prompt set.

        image_embeddings: (B, C, h, w); sparse: (N, T, C) prompt tokens; image_index: (N,) in [0, B);
        mask_input: optional (N, 1, 4h, 4w) logits of a previous mask (refinement, as in SAM).
        Without gradients and mask inputs, each painting's prompt sets share its image-side work
        (:mod:`.shared_image_decoding`); otherwise, and in :meth:`decode_reference`, every prompt
        set gets its own copy of the image tokens, as in segment_anything.
        """
        if torch.is_grad_enabled() or mask_input is not None:
            return self.decode_reference(image_embeddings, sparse, image_index, mask_input=mask_input)
        return self._decode_per_painting(image_embeddings, sparse, image_index)

    def decode_reference(
        self,
        image_embeddings: torch.Tensor,
        sparse: torch.Tensor,
        image_index: torch.Tensor,
        *,
        mask_input: torch.Tensor | None = None,
    ) -> MaskPrediction:
        """segment_anything's ``predict_masks`` (single mask), every prompt set on its own image copy."""
        md = self.mask_decoder
        n = sparse.shape[0]
        tokens = self._tokens(sparse)
        src = image_embeddings[image_index] + self.dense(n, mask_input)
        # one positional map for all prompt sets: the transformer adds it by broadcasting
        pos = self.prompt_encoder.get_dense_pe()
        h, w = src.shape[-2:]
        hs, src = md.transformer(src, pos, tokens)
        return self._masks(hs[:, :2], src, h, w)

    def _tokens(self, sparse: torch.Tensor) -> torch.Tensor:
        md = self.mask_decoder
        output_tokens = torch.cat([md.iou_token.weight, md.mask_tokens.weight], dim=0)
        return torch.cat([output_tokens.unsqueeze(0).expand(sparse.shape[0], -1, -1), sparse], dim=1)

    def _masks(self, first_tokens: torch.Tensor, image_tokens: torch.Tensor, h: int, w: int) -> MaskPrediction:
        """IoU token and first mask token (N, 2, C) + image tokens (N, h·w, C) -> masks and scores."""
        md = self.mask_decoder
        # single-mask output: SAM's first mask token (multimask_output=False)
        hyper = md.output_hypernetworks_mlps[0](first_tokens[:, 1, :])
        logits = upscaled_logits(md.output_upscaling, image_tokens, hyper, h, w)
        iou = md.iou_prediction_head(first_tokens[:, 0, :])[:, 0]
        return MaskPrediction(logits=logits, iou=iou)

    def _decode_per_painting(self, image_embeddings, sparse, image_index) -> MaskPrediction:
        from .shared_image_decoding import decode_prompt_sets, shared_image

        tokens = self._tokens(sparse)
        h, w = image_embeddings.shape[-2:]
        pe = self.prompt_encoder.get_dense_pe()[0].flatten(1).t().contiguous()
        no_mask = self.prompt_encoder.no_mask_embed.weight
        logits = iou = None
        for b in image_index.unique().tolist():
            rows = (image_index == b).nonzero()[:, 0]
            image = shared_image(
                self.mask_decoder.transformer,
                (image_embeddings[b].flatten(1).t() + no_mask).contiguous(),
                pe,
            )
            for chunk in rows.split(self.prompt_sets_per_pass):
                first, image_tokens = decode_prompt_sets(self.mask_decoder.transformer, image, tokens[chunk])
                pred = self._masks(first, image_tokens, h, w)
                if logits is None:
                    logits = pred.logits.new_empty((len(image_index), *pred.logits.shape[1:]))
                    iou = pred.iou.new_empty(len(image_index))
                logits[chunk], iou[chunk] = pred.logits, pred.iou
        return MaskPrediction(logits=logits, iou=iou)


def upscaled_logits(
    upscaling: nn.Sequential, tokens: torch.Tensor, hyper: torch.Tensor, h: int, w: int
) -> torch.Tensor:
    """SAM's ``output_upscaling`` followed by the hypernetwork's dot product, on image tokens.

    SAM's upscaling is two ``ConvTranspose2d(kernel_size=2, stride=2)``; such a convolution does
    not overlap, so it is one matrix product per input pixel giving a 2 × 2 block. Done that way on
    the (N, h·w, C) tokens the transformer returns, the channel LayerNorm is torch's fused one, and
    the mask is assembled from its sub-pixel blocks only after the dot product with the
    hypernetwork's vector (one channel instead of C/8): the same arithmetic without the NCHW copies.
    Returns (N, 1, 4h, 4w) logits.
    """
    conv1, norm, act1, conv2, act2 = upscaling
    n, _, c = tokens.shape
    c1, c2 = conv1.out_channels, conv2.out_channels
    # (in, out, 2, 2) -> (in, 2·2·out): each input pixel's 2 × 2 block, channels last
    w1 = conv1.weight.permute(0, 2, 3, 1).reshape(c, 4 * c1)
    x = torch.addmm(conv1.bias.repeat(4), tokens.reshape(-1, c), w1).view(n, h * w, 4, c1)
    x = act1(F.layer_norm(x, (c1,), norm.weight, norm.bias, norm.eps))
    w2 = conv2.weight.permute(0, 2, 3, 1).reshape(c1, 4 * c2)
    y = act2(torch.addmm(conv2.bias.repeat(4), x.reshape(-1, c1), w2)).view(n, h * w * 16, c2)
    logits = (y @ hyper.unsqueeze(-1)).view(n, h, w, 2, 2, 2, 2)  # (i, j, a, b, a', b')
    # pixel (4i + 2a + a', 4j + 2b + b')
    return logits.permute(0, 1, 3, 5, 2, 4, 6).reshape(n, 1, 4 * h, 4 * w)


def _fused_attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """segment_anything's ``Attention.forward`` with torch's fused scaled-dot-product attention.

    Same weights, same result (to float rounding); it skips the explicit score matrix and two
    head-transposing copies: 12% faster for 8 emotions on a 2-core CPU, and flash/memory-efficient
    kernels on GPUs.
    """
    q, k, v = self.q_proj(q), self.k_proj(k), self.v_proj(v)
    b, nq, c = q.shape
    h = self.num_heads
    q = q.view(b, nq, h, c // h).transpose(1, 2)
    k = k.view(b, k.shape[1], h, c // h).transpose(1, 2)
    v = v.view(b, v.shape[1], h, c // h).transpose(1, 2)
    out = F.scaled_dot_product_attention(q, k, v)
    return self.out_proj(out.transpose(1, 2).reshape(b, nq, c))

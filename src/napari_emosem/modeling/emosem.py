"""EmoSEM: emotion-stimulus segmentation and explanation (Zhang et al., 2025).

image encoder -> (emotional prompt + mask token -> emotion projector) -> SAM mask decoder
              -> prefix adapter (mask ⊗ emotion) -> language model -> explanation

Tensors in, tensors out; painting-level convenience (resizing, caching, full-resolution masks) is
in :class:`napari_emosem.emosem_predictor.EmoSEMPredictor`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from ..config import EmoSEMConfig
from .emotion_projector import EmotionProjector
from .emotional_prompt import EmotionalPrompt
from .image_encoder import ImageEncoder
from .language_model import load_language_model
from .mask_decoder import EmotionMaskDecoder, MaskPrediction
from .prefix_adapter import PrefixAdapter

#: the modules that always learn; the encoder and LM learn only when their config says so
ALWAYS_TRAINABLE = ("emotional_prompt", "emotion_projector", "mask_decoder", "prefix_adapter")


@dataclass
class PairBatch:
    """(painting, emotion) pairs for the loss. Low-resolution tensors live in the padded input frame."""

    #: (B, C, h, w) cached embeddings, or None when ``images`` must be encoded (trainable encoder)
    embeddings: torch.Tensor | None
    #: (B, 3, S, S) preprocessed paintings, or None
    images: torch.Tensor | None
    #: (N,) which painting each pair belongs to
    image_index: torch.Tensor
    #: (N,) index into config.emotions
    emotion_ids: torch.Tensor
    #: (N, 4h, 4w) targets in [0, 1]: masks area-downsampled, or consensus maps of several annotators
    masks: torch.Tensor
    #: (N, 2) share of the frame the painting covers (height, width)
    extent: torch.Tensor
    #: (N, L) explanation token ids, padded; -100 where there is no token
    text_ids: torch.Tensor
    #: optional clicks: ((N, K, 2) x, y in input pixels, (N, K) labels; -1 = padding)
    points: tuple[torch.Tensor, torch.Tensor] | None = None

    def to(self, device) -> PairBatch:
        def move(x):
            return None if x is None else x.to(device)

        points = None if self.points is None else (move(self.points[0]), move(self.points[1]))
        return PairBatch(
            move(self.embeddings),
            move(self.images),
            move(self.image_index),
            move(self.emotion_ids),
            move(self.masks),
            move(self.extent),
            move(self.text_ids),
            points,
        )


class EmoSEM(nn.Module):
    """``language_model``: an already built ``(causal LM, tokenizer)`` pair to use instead of
    loading ``config.language`` (benchmarks and notebooks that hold one in memory)."""

    def __init__(self, config: EmoSEMConfig, *, language_model=None):
        super().__init__()
        self.config = config
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            if language_model is None:
                lm, tokenizer = load_language_model(config.language, seed=config.seed)
            else:
                lm, tokenizer = language_model
            lm_width = lm.get_input_embeddings().embedding_dim
            prompt_width = config.encoder.out_chans
            self.image_encoder = ImageEncoder(config.encoder)
            self.emotional_prompt = EmotionalPrompt(
                config.emotions, config.prompt_template, tokenizer, lm_width
            )
            self.emotion_projector = EmotionProjector(lm_width, prompt_width)
            self.mask_decoder = EmotionMaskDecoder(config.encoder, config.decoder)
            self.prefix_adapter = PrefixAdapter(
                prompt_width, lm_width, config.prefix_length, config.prefix_hidden
            )
        self.language_model = lm
        self.tokenizer = tokenizer
        self.set_trainable()

    # Which parts learn -----------------------------------------------------------------------

    def trainable_modules(self) -> tuple[str, ...]:
        names = list(ALWAYS_TRAINABLE)
        if not self.config.encoder.frozen:
            names.insert(0, "image_encoder")
        if self.config.language.train:
            names.append("language_model")
        return tuple(names)

    def set_trainable(self) -> None:
        trainable = set(self.trainable_modules())
        for name, module in self.named_children():
            module.requires_grad_(name in trainable)

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """The parameters a checkpoint holds (frozen pretrained parts are referenced, not copied)."""
        prefixes = tuple(f"{name}." for name in self.trainable_modules())
        state, seen = {}, set()
        for key, value in self.state_dict().items():
            if not key.startswith(prefixes):
                continue
            ptr = (value.data_ptr(), value.shape)
            if ptr in seen:  # tied weights (GPT-2's lm_head is wte): store once
                continue
            seen.add(ptr)
            state[key] = value
        return state

    def train(self, mode: bool = True) -> EmoSEM:
        super().train(mode)
        # frozen parts stay in eval mode (no dropout) even while the rest trains
        trainable = set(self.trainable_modules())
        for name, module in self.named_children():
            if name not in trainable:
                module.eval()
        return self

    # Forward pieces --------------------------------------------------------------------------

    @property
    def word_embeddings(self) -> nn.Embedding:
        return self.language_model.get_input_embeddings()

    def emotion_index(self, emotions) -> torch.Tensor:
        device = self.emotional_prompt.token_ids.device
        return torch.tensor([self.config.emotions.index(e) for e in emotions], device=device)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) preprocessed paintings -> (B, C, h, w) embeddings."""
        return self.image_encoder(images)

    def emotion_tokens(self, emotion_ids: torch.Tensor) -> torch.Tensor:
        """(N,) -> (N, T, C) sparse prompt tokens for the mask decoder."""
        return self.emotion_projector(self.emotional_prompt(emotion_ids, self.word_embeddings))

    def propose(
        self,
        embeddings: torch.Tensor,
        emotion_ids: torch.Tensor,
        image_index: torch.Tensor | None = None,
        *,
        points: tuple[torch.Tensor, torch.Tensor] | None = None,
        mask_input: torch.Tensor | None = None,
    ) -> MaskPrediction:
        """Decode one mask per (painting, emotion) pair in a single mask-decoder call.

        Each pair is its own prompt set (as segment_anything decodes prompts), so an emotion's
        mask never depends on which other emotions were asked for. ``image_index`` defaults to
        all pairs on painting 0: every emotion of one painting at once.
        ``points``: optional clicks as ((N, K, 2) x, y in input pixels, (N, K) labels 1/0/-1 pad).
        """
        if image_index is None:
            image_index = torch.zeros_like(emotion_ids)
        sparse = self.emotion_tokens(emotion_ids)
        if points is not None:
            clicks = self.mask_decoder.prompt_tokens(points, len(emotion_ids), sparse.device)
            sparse = torch.cat([sparse, clicks.to(sparse.dtype)], dim=1)
        return self.mask_decoder(embeddings, sparse, image_index, mask_input=mask_input)

    def prefix(
        self,
        embeddings: torch.Tensor,
        emotion_ids: torch.Tensor,
        masks: torch.Tensor,
        extent: torch.Tensor,
        image_index: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Prefix tokens (N, P, LM width) from soft masks (N, h', w') in the padded frame."""
        if image_index is None:
            image_index = torch.zeros_like(emotion_ids)
        emotion = self.emotional_prompt.pooled(emotion_ids, self.word_embeddings)
        prefix = self.prefix_adapter(embeddings[image_index], masks, extent, emotion)
        return prefix.to(self.word_embeddings.weight.dtype)

    @torch.no_grad()
    def explain(
        self,
        embeddings: torch.Tensor,
        emotion_ids: torch.Tensor,
        masks: torch.Tensor,
        extent: torch.Tensor,
        image_index: torch.Tensor | None = None,
        *,
        max_new_tokens: int | None = None,
        num_beams: int = 1,
        no_repeat_ngram_size: int | None = None,
        min_new_tokens: int = 0,
        language_model: nn.Module | None = None,
    ) -> list[str]:
        """Write one explanation per pair: greedy (num_beams=1) or beam search, with the KV cache.

        All pairs are drafted in one batched ``generate`` call. ``language_model``: a drafting
        copy of the LM to generate with (e.g. its int8 form on a CPU); the prefix still comes
        from this model's own word embeddings.
        """
        prefix = self.prefix(embeddings, emotion_ids, masks, extent, image_index)
        tok = self.tokenizer
        limit = max_new_tokens or self.config.language.max_new_tokens
        if no_repeat_ngram_size is None:
            no_repeat_ngram_size = self.config.language.no_repeat_ngram_size
        with warnings.catch_warnings():
            # generate() notes that n-gram blocking ignores the prompt: here the prompt is the
            # prefix (embeddings, no tokens), so that is exactly what we want
            warnings.filterwarnings("ignore", message=".*no_repeat_ngram_size.*")
            out = self._generate(language_model or self.language_model, prefix, limit, num_beams,
                                 no_repeat_ngram_size, min_new_tokens)
        return [_clean(t) for t in tok.batch_decode(out, skip_special_tokens=True)]

    def _generate(self, lm, prefix, limit, num_beams, no_repeat_ngram_size, min_new_tokens):
        tok = self.tokenizer
        return lm.generate(
            min_new_tokens=min_new_tokens,
            inputs_embeds=prefix,
            attention_mask=torch.ones(prefix.shape[:2], dtype=torch.long, device=prefix.device),
            max_new_tokens=limit,
            num_beams=num_beams,
            do_sample=False,
            no_repeat_ngram_size=no_repeat_ngram_size or 0,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
            use_cache=True,
        )

    # Training --------------------------------------------------------------------------------

    def tokenize_explanations(self, texts: list[str | None]) -> torch.Tensor:
        """Token ids + end-of-text, padded with -100 (no text -> all -100). Truncated to fit the LM."""
        tok = self.tokenizer
        room = getattr(self.language_model.config, "n_positions", 1024) - self.config.prefix_length - 1
        room = min(room, 2 * self.config.language.max_new_tokens)
        seqs = []
        for text in texts:
            ids = tok(text, add_special_tokens=False).input_ids[:room] if text else []
            seqs.append(ids + [tok.eos_token_id] if ids else [])
        width = max(1, max(len(s) for s in seqs))
        out = torch.full((len(seqs), width), -100, dtype=torch.long)
        for row, seq in enumerate(seqs):
            out[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        return out

    def forward(self, batch: PairBatch) -> dict[str, torch.Tensor]:
        """The training loss (``forward`` so that DistributedDataParallel can wrap the model)."""
        return self.loss(batch)

    def loss(self, batch: PairBatch) -> dict[str, torch.Tensor]:
        """Mask BCE + Dice, IoU-head MSE and text cross-entropy on explanation tokens only.

        Targets may be soft (a consensus map of several annotators, and the anti-aliased edge of
        any mask at low resolution): both mask terms are smallest where the prediction equals the
        target (see :func:`soft_dice_loss`)."""
        weights = self.config.loss
        embeddings = batch.embeddings if batch.embeddings is not None else self.encode(batch.images)
        pred = self.propose(embeddings, batch.emotion_ids, batch.image_index, points=batch.points)
        logits = pred.logits[:, 0]
        target = batch.masks.to(logits.dtype)
        bce = F.binary_cross_entropy_with_logits(logits, target)
        prob = logits.sigmoid()
        dice = soft_dice_loss(prob, target)
        with torch.no_grad():
            hard, truth = prob > 0.5, target > 0.5
            union = (hard | truth).sum((1, 2)).clamp_min(1)
            actual_iou = (hard & truth).sum((1, 2)) / union
        iou = F.mse_loss(pred.iou, actual_iou.to(pred.iou.dtype))
        text = self._text_loss(embeddings, batch)
        total = weights.mask_bce * bce + weights.mask_dice * dice + weights.iou * iou + weights.text * text
        return {"loss": total, "mask_bce": bce, "mask_dice": dice, "iou": iou, "text": text}

    def _text_loss(self, embeddings: torch.Tensor, batch: PairBatch) -> torch.Tensor:
        has_text = (batch.text_ids != -100).any(1)
        if not has_text.any():
            return embeddings.new_zeros(())
        sel = has_text.nonzero()[:, 0]
        # Teacher forcing with the ground-truth mask: explain() conditions on the mask it is given
        prefix = self.prefix(
            embeddings, batch.emotion_ids[sel], batch.masks[sel], batch.extent[sel], batch.image_index[sel]
        )
        ids = batch.text_ids[sel]
        words = self.word_embeddings(ids.clamp_min(0))
        inputs = torch.cat([prefix, words], dim=1)
        ignore = torch.full(prefix.shape[:2], -100, dtype=torch.long, device=ids.device)
        labels = torch.cat([ignore, ids], dim=1)
        attention = torch.cat([torch.ones_like(ignore), (ids != -100).long()], dim=1)
        out = self.language_model(inputs_embeds=inputs, attention_mask=attention, labels=labels)
        return out.loss


def soft_dice_loss(prob: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Dice loss of (N, H, W) probabilities against targets in [0, 1], mean over the N maps.

    The usual soft Dice, 1 - (2 Σ p·t + 1) / (Σ p + Σ t + 1), is right for 0/1 targets only: against
    a target of 0.5 it is smallest at p = 1, so it would turn a consensus map into a hard mask.
    This is the Dice semimetric loss (Wang & Blaschko, MICCAI 2023): 2 Σ p·t becomes
    Σ p + Σ t - Σ |p - t|, equal for 0/1 targets and zero exactly when p = t for soft ones.
    """
    dims = (1, 2)
    total = prob.sum(dims) + target.sum(dims)
    overlap = total - (prob - target).abs().sum(dims)
    return (1 - (overlap + 1) / (total + 1)).mean()


def _clean(text: str) -> str:
    # Byte-level models can emit control bytes or broken UTF-8 before they are trained
    text = "".join(ch for ch in text if ch.isprintable() and ch != "\ufffd")
    return " ".join(text.split())

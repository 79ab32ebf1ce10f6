"""EmoSEM on whole paintings: cached embeddings, one decoder call for all emotions, full-size masks,
in the precision the machine runs fastest without changing the proposals (:mod:`.precision`)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import torch

from .build import BaseIdentity
from .checkpoint import CheckpointInfo
from .embedding_cache import CachedEmbedding, EmbeddingCache
from .emotions import normalise_emotion
from .image_io import image_digest
from .modeling.transforms import Geometry, lowres_to_painting, mask_to_lowres
from .predictor import Predictor, Proposal, check_points


def encoder_key(model, identity: BaseIdentity, precision: str = "fp32") -> str:
    """Names the embedding an encoder produces: pretrained weights by hash, trained ones by content,
    and the precision it ran in (a bf16 embedding is not the float32 one; fp32 keys carry no suffix,
    so they are the keys training uses)."""
    enc = model.config.encoder
    suffix = "" if precision == "fp32" else f"-{precision}"
    if enc.frozen and identity.encoder_sha256:
        return f"{enc.kind}-{enc.img_size}-{identity.encoder_sha256[:16]}{suffix}"
    h = hashlib.blake2b(digest_size=8)
    for key, tensor in sorted(model.image_encoder.state_dict().items()):
        h.update(key.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return f"{enc.kind}-{enc.img_size}-w{h.hexdigest()}{suffix}"


class EmoSEMPredictor(Predictor):
    """One painting at a time: ``set_image`` encodes (or reads the cache), the rest is cheap.

    ``precision`` (``auto``/``fp32``/``bf16``, see :mod:`napari_emosem.precision`) applies on the
    CPU only; the default is the float32 reference, as for :func:`~napari_emosem.loading.load_predictor`;
    ``emosem propose`` and the annotator's setting default to ``auto``.
    """

    def __init__(
        self,
        model,
        identity: BaseIdentity,
        *,
        checkpoint: CheckpointInfo | None = None,
        device: str = "cpu",
        cache: EmbeddingCache | None = None,
        num_beams: int = 1,
        max_new_tokens: int | None = None,
        precision: str = "fp32",
    ):
        from .precision import resolve_precision

        self.model = model.to(device).eval()
        self.identity = identity
        self.checkpoint = checkpoint
        self.device = device
        self.cache = cache if cache is not None else EmbeddingCache()
        self.num_beams = num_beams
        self.max_new_tokens = max_new_tokens
        self.name = checkpoint.id if checkpoint else model.config.name
        self.cold_start = checkpoint is None
        #: what ``precision`` resolved to here (encoder/decoder arithmetic, int8 drafting LM)
        self.plan = resolve_precision(precision, device)
        self.encoder_key = encoder_key(model, identity, self.plan.precision)
        self._drafting_lm = None
        self._image: np.ndarray | None = None
        self._embedding: torch.Tensor | None = None
        self._geometry: Geometry | None = None
        #: whether the last set_image was served from the cache
        self.from_cache = False

    @property
    def description(self) -> str:
        if self.checkpoint is not None:
            return f"EmoSEM checkpoint {self.checkpoint.label}"
        return (
            f"EmoSEM '{self.name}' preset (untrained prompt, decoder head and adapter: "
            "drafts are not meaningful until fine-tuned)"
        )

    # Per painting ----------------------------------------------------------------------------

    @torch.no_grad()
    def set_image(self, image: np.ndarray) -> None:
        digest = image_digest(image)
        cached = self.cache.get(self.encoder_key, digest)
        self.from_cache = cached is not None
        if cached is None:
            (cached,) = self._embeddings([image], digests=[digest], known=[None])
        self._image = image
        self._geometry = self._geometry_of(cached)
        self._embedding = cached.embedding.to(self.device)[None]

    @torch.no_grad()
    def propose_batch(
        self,
        images: Sequence[np.ndarray],
        emotions: Sequence[str],
        *,
        explain: bool = True,
        preprocessed: Sequence[tuple[torch.Tensor, Geometry] | None] | None = None,
        digests: Sequence[str | None] | None = None,
    ) -> list[list[Proposal]]:
        """``propose`` for several paintings at once: what a GPU needs to be kept busy.

        The paintings not in the cache are encoded in one encoder call, each painting's emotions are
        decoded as ``propose`` decodes them, and the drafts of every (painting, emotion) pair are
        written in one batched ``generate`` call. ``preprocessed`` and ``digests`` (per painting,
        from :func:`~napari_emosem.modeling.transforms.preprocess_image` and
        :func:`~napari_emosem.image_io.image_digest`) may come from DataLoader workers.
        The painting given to ``set_image`` stays the current one.
        """
        emotions = [normalise_emotion(e) for e in emotions]
        cached = self._embeddings(images, preprocessed, digests)
        if not images or not emotions:
            return [[] for _ in images]
        ids = self.model.emotion_index(emotions)
        embeddings = [c.embedding.to(self.device)[None] for c in cached]
        preds = [self._decode(ids, embedding=e) for e in embeddings]
        texts = [[""] * len(emotions) for _ in images]
        if explain:
            n = len(ids)
            flat = self.model.explain(
                torch.cat(embeddings),
                ids.repeat(len(images)),
                torch.cat([p.logits[:, 0].sigmoid() for p in preds]),
                torch.tensor([self._geometry_of(c).extent for c in cached for _ in ids], device=self.device),
                torch.arange(len(images), device=self.device).repeat_interleave(n),
                num_beams=self.num_beams,
                max_new_tokens=self.max_new_tokens,
                language_model=self.drafting_language_model(),
            )
            texts = [flat[i * n : (i + 1) * n] for i in range(len(images))]
        return [
            self._full_size(emotions, pred, t, self._geometry_of(c), False)
            for pred, t, c in zip(preds, texts, cached, strict=True)
        ]

    def _geometry_of(self, cached: CachedEmbedding) -> Geometry:
        return Geometry(cached.original_size, cached.input_size, self.model.config.encoder.img_size)

    def _embeddings(self, images, preprocessed=None, digests=None, known=None) -> list[CachedEmbedding]:
        """Each painting's embedding, from the cache (``known``: already looked up) or encoded, all
        misses in one encoder call."""
        digests = [d or image_digest(im) for d, im in zip(digests or [None] * len(images), images, strict=True)]
        found = list(known) if known is not None else [self.cache.get(self.encoder_key, d) for d in digests]
        misses = [i for i, c in enumerate(found) if c is None]
        if misses:
            ready = [
                (preprocessed[i] if preprocessed else None) or self.model.image_encoder.preprocess(images[i])
                for i in misses
            ]
            x = torch.stack([t for t, _ in ready]).to(self.device)
            with self.plan.autocast():
                encoded = self.model.encode(x).float().cpu()
            for i, (_, geometry), embedding in zip(misses, ready, encoded, strict=True):
                found[i] = CachedEmbedding(embedding.clone(), geometry.input_size, geometry.original_size)
                self.cache.put(self.encoder_key, digests[i], found[i])
        return found

    def _extent(self, n: int) -> torch.Tensor:
        return torch.tensor([self._geometry.extent] * n, device=self.device)

    @torch.no_grad()
    def propose(
        self,
        emotions: Sequence[str],
        *,
        explain: bool = True,
        with_probability: bool = False,
    ) -> list[Proposal]:
        self._require_image()
        emotions = [normalise_emotion(e) for e in emotions]
        if not emotions:
            return []
        ids = self.model.emotion_index(emotions)
        return self._proposals(emotions, ids, self._decode(ids), explain, with_probability)

    @torch.no_grad()
    def refine(self, emotion: str, points, labels, *, explain: bool = False) -> Proposal:
        self._require_image()
        emotion = normalise_emotion(emotion)
        points, labels = check_points(points, labels, self._geometry.original_size)
        ids = self.model.emotion_index([emotion])
        clicks = None
        if len(points):
            xy = torch.as_tensor(self._geometry.points_to_input(points), dtype=torch.float32, device=self.device)
            clicks = (xy[None], torch.as_tensor(labels, device=self.device)[None])
        return self._proposals([emotion], ids, self._decode(ids, clicks), explain, False)[0]

    @torch.no_grad()
    def explain(self, emotion: str, mask: np.ndarray) -> str:
        self._require_image()
        emotion = normalise_emotion(emotion)
        mask = np.asarray(mask).astype(bool)
        if mask.shape != tuple(self._geometry.original_size):
            raise ValueError(f"mask shape {mask.shape} != painting shape {self._geometry.original_size}")
        soft = mask_to_lowres(mask, self._geometry, self.model.image_encoder.lowres).to(self.device)
        return self._explain(self.model.emotion_index([emotion]), soft[None])[0]

    # Internals -------------------------------------------------------------------------------

    def _decode(self, ids: torch.Tensor, clicks=None, *, embedding: torch.Tensor | None = None):
        with self.plan.autocast():
            pred = self.model.propose(self._embedding if embedding is None else embedding, ids, points=clicks)
        return type(pred)(logits=pred.logits.float(), iou=pred.iou.float())

    def drafting_language_model(self):
        """The LM that writes drafts: the model's own, or its int8 copy when the plan says so."""
        if not self.plan.int8_language_model:
            return self.model.language_model
        if self._drafting_lm is None:
            from .modeling.language_model import int8_language_model

            self._drafting_lm = int8_language_model(self.model.language_model)
        return self._drafting_lm

    def _explain(self, ids: torch.Tensor, soft_masks: torch.Tensor) -> list[str]:
        return self.model.explain(
            self._embedding,
            ids,
            soft_masks.float(),
            self._extent(len(ids)),
            num_beams=self.num_beams,
            max_new_tokens=self.max_new_tokens,
            language_model=self.drafting_language_model(),
        )

    def _proposals(self, emotions, ids, pred, explain: bool, with_probability: bool) -> list[Proposal]:
        texts = self._explain(ids, pred.logits[:, 0].sigmoid()) if explain else [""] * len(emotions)
        return self._full_size(emotions, pred, texts, self._geometry, with_probability)

    def _full_size(self, emotions, pred, texts, geometry: Geometry, with_probability: bool) -> list[Proposal]:
        scores = pred.iou.clamp(0, 1).tolist()
        out = []
        for i, emotion in enumerate(emotions):
            # one emotion at a time: full-resolution float maps of a huge painting are large
            logits = lowres_to_painting(pred.logits[i : i + 1].float(), geometry)[0, 0]
            mask = (logits > 0).cpu().numpy()
            prob = logits.sigmoid_().cpu().numpy().astype(np.float32) if with_probability else None
            out.append(Proposal(emotion, mask, float(scores[i]), texts[i], prob))
        return out

    @torch.no_grad()
    def image_features(self) -> np.ndarray:
        """The image embedding, mean-pooled over the painting's part of the encoder's square frame
        (not the padding) and L2-normalised: what the model itself sees of the painting."""
        self._require_image()
        embedding = self._embedding[0].float()  # (C, h, w)
        share_h, share_w = self._geometry.extent
        rows = max(1, int(np.ceil(share_h * embedding.shape[1])))
        cols = max(1, int(np.ceil(share_w * embedding.shape[2])))
        pooled = embedding[:, :rows, :cols].mean(dim=(1, 2))
        return (pooled / pooled.norm().clamp_min(1e-12)).cpu().numpy().astype(np.float64)

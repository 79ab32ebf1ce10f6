"""EmoSEM on whole paintings: cached embeddings, one decoder call for all emotions, full-size masks."""

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


def encoder_key(model, identity: BaseIdentity) -> str:
    """Names the embedding an encoder produces: pretrained weights by hash, trained ones by content."""
    enc = model.config.encoder
    if enc.frozen and identity.encoder_sha256:
        return f"{enc.kind}-{enc.img_size}-{identity.encoder_sha256[:16]}"
    h = hashlib.blake2b(digest_size=8)
    for key, tensor in sorted(model.image_encoder.state_dict().items()):
        h.update(key.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return f"{enc.kind}-{enc.img_size}-w{h.hexdigest()}"


class EmoSEMPredictor(Predictor):
    """One painting at a time: ``set_image`` encodes (or reads the cache), the rest is cheap."""

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
    ):
        self.model = model.to(device).eval()
        self.identity = identity
        self.checkpoint = checkpoint
        self.device = device
        self.cache = cache if cache is not None else EmbeddingCache()
        self.num_beams = num_beams
        self.max_new_tokens = max_new_tokens
        self.name = checkpoint.id if checkpoint else model.config.name
        self.cold_start = checkpoint is None
        self.encoder_key = encoder_key(model, identity)
        self._image: np.ndarray | None = None
        self._embedding: torch.Tensor | None = None
        self._geometry: Geometry | None = None
        #: whether the last set_image was served from the cache
        self.from_cache = False

    @property
    def description(self) -> str:
        if self.checkpoint is not None:
            return f"EmoSEM checkpoint {self.checkpoint.label}"
        return f"EmoSEM '{self.name}' preset (untrained prompt, decoder head and adapter: drafts are not meaningful until fine-tuned)"

    # Per painting ----------------------------------------------------------------------------

    @torch.no_grad()
    def set_image(self, image: np.ndarray) -> None:
        digest = image_digest(image)
        cached = self.cache.get(self.encoder_key, digest)
        self.from_cache = cached is not None
        if cached is None:
            x, geometry = self.model.image_encoder.preprocess(image)
            embedding = self.model.encode(x[None].to(self.device))[0].float().cpu()
            cached = CachedEmbedding(embedding, geometry.input_size, geometry.original_size)
            self.cache.put(self.encoder_key, digest, cached)
        self._image = image
        self._geometry = Geometry(cached.original_size, cached.input_size, self.model.config.encoder.img_size)
        self._embedding = cached.embedding.to(self.device)[None]

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
        pred = self.model.propose(self._embedding, ids)
        return self._proposals(emotions, ids, pred, explain, with_probability)

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
        pred = self.model.propose(self._embedding, ids, points=clicks)
        return self._proposals([emotion], ids, pred, explain, False)[0]

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

    def _explain(self, ids: torch.Tensor, soft_masks: torch.Tensor) -> list[str]:
        return self.model.explain(
            self._embedding,
            ids,
            soft_masks,
            self._extent(len(ids)),
            num_beams=self.num_beams,
            max_new_tokens=self.max_new_tokens,
        )

    def _proposals(self, emotions, ids, pred, explain: bool, with_probability: bool) -> list[Proposal]:
        texts = self._explain(ids, pred.logits[:, 0].sigmoid()) if explain else [""] * len(emotions)
        scores = pred.iou.clamp(0, 1).tolist()
        out = []
        for i, emotion in enumerate(emotions):
            # one emotion at a time: full-resolution float maps of a huge painting are large
            logits = lowres_to_painting(pred.logits[i : i + 1].float(), self._geometry)[0, 0]
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

"""The EmoSEM model, one module per part as the paper names them (torch; no Qt, no napari)."""

from .emosem import EmoSEM, PairBatch
from .emotion_projector import EmotionProjector
from .emotional_prompt import EmotionalPrompt
from .image_encoder import ImageEncoder
from .mask_decoder import EmotionMaskDecoder, MaskPrediction
from .prefix_adapter import PrefixAdapter
from .transforms import Geometry

__all__ = [
    "EmoSEM",
    "EmotionMaskDecoder",
    "EmotionProjector",
    "EmotionalPrompt",
    "Geometry",
    "ImageEncoder",
    "MaskPrediction",
    "PairBatch",
    "PrefixAdapter",
]

"""The cold-start ``starter`` model: first drafts with no learned weights and no download.

Regions from scikit-image superpixels (or SAM's automatic masks when a SAM model is given),
per-emotion scores from affective colour and composition features documented in the literature,
explanations drafted from each region's own description. See :class:`StarterPredictor`.
"""

from .config import StarterConfig
from .predictor import StarterPredictor, load_sam
from .regions import SOURCE_SAM, SOURCE_SUPERPIXELS

__all__ = ["SOURCE_SAM", "SOURCE_SUPERPIXELS", "StarterConfig", "StarterPredictor", "load_sam"]

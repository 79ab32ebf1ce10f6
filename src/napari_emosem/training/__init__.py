"""Fine-tuning EmoSEM on annotations (no Qt): data, per-painting features, batches, the loop, DDP."""

from .examples import TrainingData, TrainingPainting, TrainingPair, from_datasets, from_toy, split_by_painting
from .trainer import TrainConfig, Trainer, TrainEvent, TrainResult

__all__ = [
    "TrainConfig",
    "TrainEvent",
    "TrainResult",
    "Trainer",
    "TrainingData",
    "TrainingPainting",
    "TrainingPair",
    "from_datasets",
    "from_toy",
    "split_by_painting",
]

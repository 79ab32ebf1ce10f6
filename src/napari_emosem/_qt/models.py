"""Which models the annotator offers, and which one it starts with (no Qt here)."""

from __future__ import annotations

from pathlib import Path

from ..checkpoint import CheckpointInfo, list_checkpoints, resolve_checkpoint_dir
from ..config import DEFAULT_BASE, MODEL_CHOICES, model_label
from ..errors import EmoSEMError

#: the presets the Model list offers after the user's checkpoints (the core's one list)
MODEL_PRESETS = MODEL_CHOICES
#: presets Fine-tune offers (starter has no trainable weights): the core's default base first, the
#: one that learns real paintings, and tiny for toy data (the larger ViTs: by checkpoint folder)
FINETUNE_BASES = (DEFAULT_BASE, "tiny")
#: the Fine-tune epochs box's initial value (``TrainConfig``'s default; early stopping ends sooner)
FINETUNE_EPOCHS = 20


def preset_label(preset: str) -> str:
    """``tiny (for tests and toy data)``: a preset with what it is for, where there is a note."""
    return model_label(preset)


def user_checkpoints() -> list[CheckpointInfo]:
    """The user's fine-tuned checkpoints, newest first ([] when the folder cannot be read)."""
    try:
        return list_checkpoints()
    except (OSError, EmoSEMError):
        return []


def default_model(remembered: str, checkpoints: list[CheckpointInfo]) -> str:
    """The model to open with: the one chosen last, else the newest fine-tuned checkpoint, else
    the cold-start starter. A remembered checkpoint that was deleted since does not count."""
    remembered = (remembered or "").strip()
    if remembered and (remembered in MODEL_PRESETS or Path(remembered).expanduser().exists()):
        return remembered
    return str(checkpoints[0].path) if checkpoints else "starter"


def same_checkpoint(spec: str, other: str) -> bool:
    """Do two specs name the same checkpoint folder (written another way: relative, "~", a run
    folder for its best/)?"""
    if spec in MODEL_PRESETS or other in MODEL_PRESETS:
        return spec == other
    return resolve_checkpoint_dir(spec).resolve() == Path(other).expanduser().resolve()

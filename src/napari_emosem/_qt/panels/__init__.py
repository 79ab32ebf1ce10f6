"""The annotator's panels: one job each, observing the controller and calling its actions."""

from .autosave_banner import AutosaveBanner
from .dataset import DatasetPanel
from .emotion_table import EmotionTablePanel
from .finetune import FineTunePanel
from .navigator import NavigatorPanel
from .painting_model import PaintingModelPanel
from .selected_emotion import SelectedEmotionPanel

__all__ = [
    "AutosaveBanner",
    "DatasetPanel",
    "EmotionTablePanel",
    "FineTunePanel",
    "NavigatorPanel",
    "PaintingModelPanel",
    "SelectedEmotionPanel",
]

"""What a campaign asks for, beside the dataset: ``campaign.json`` in the dataset folder.

Optional: without it a campaign annotates all eight emotions. It holds only what no record can
say (the emotions a painting needs before it is *done*), so two annotators' copies of a campaign
agree on what "done" means.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from .._io import atomic_write_json
from ..emotions import EMOTIONS, parse_emotions
from ..errors import DatasetError, EmoSEMError

SETTINGS_FILE = "campaign.json"


@dataclass(frozen=True)
class CampaignSettings:
    #: every one of these must be reviewed (or marked no stimulus) for a painting to be done
    emotions: tuple[str, ...] = EMOTIONS

    def to_json(self) -> dict:
        return {"emotions": list(self.emotions)}


def read_settings(root: str | os.PathLike) -> CampaignSettings:
    """The campaign's settings (defaults when the folder has no ``campaign.json``)."""
    path = Path(root) / SETTINGS_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return CampaignSettings()
    except OSError as exc:
        raise DatasetError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    try:
        obj = json.loads(text)
        emotions = parse_emotions(obj.get("emotions", "all")) if isinstance(obj, dict) else None
    except (ValueError, TypeError, RecursionError, EmoSEMError) as exc:
        raise DatasetError(
            f"{path}: not a campaign file ({exc}); fix it or delete it to annotate all emotions"
        ) from None
    if not emotions:
        raise DatasetError(f"{path}: expected {{\"emotions\": [...]}}; fix it or delete it to annotate all emotions")
    return CampaignSettings(emotions=tuple(emotions))


def write_settings(root: str | os.PathLike, settings: CampaignSettings) -> Path:
    path = Path(root) / SETTINGS_FILE
    atomic_write_json(path, settings.to_json())
    return path

"""Annotation campaigns: a dataset folder worked through painting by painting.

A campaign *is* a stimulus dataset folder (plus an optional ``campaign.json`` naming the emotions
to annotate). Nothing about progress is stored twice: a painting's status is derived from its
records each time (:mod:`.status`); the only campaign facts written are the ones no record can
hold — a painting skipped with the annotator's reason, and the active time spent (:mod:`.timing`).
"""

from .paintings import AddReport, add_paintings, skip_painting, unskip_painting
from .settings import CampaignSettings, read_settings, write_settings
from .status import CampaignProgress, PaintingProgress, PaintingStatus, campaign_progress, painting_status
from .timing import ActivityClock

__all__ = [
    "ActivityClock",
    "AddReport",
    "CampaignProgress",
    "CampaignSettings",
    "PaintingProgress",
    "PaintingStatus",
    "add_paintings",
    "campaign_progress",
    "painting_status",
    "read_settings",
    "skip_painting",
    "unskip_painting",
    "write_settings",
]

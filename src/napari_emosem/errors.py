"""Errors a user can cause. Each message says what is wrong and what to do about it.

The CLI prints ``str(error)`` on one line and exits non-zero; the widget shows it in the status
line. Anything that is not an :class:`EmoSEMError` is a bug and keeps its traceback.
"""

from __future__ import annotations


class EmoSEMError(Exception):
    """Base class for every error caused by input, files or settings (not by a bug)."""


class UnknownEmotionError(EmoSEMError, ValueError):
    """An emotion name outside the eight ArtEmis emotions."""


class ImageError(EmoSEMError, ValueError):
    """A file or array that cannot be used as a painting."""


class WeightsError(EmoSEMError):
    """Pretrained weights that are missing, unreachable or corrupt."""


class CheckpointError(EmoSEMError):
    """An EmoSEM checkpoint that is missing, malformed or made for another model."""


class DatasetError(EmoSEMError):
    """A stimulus dataset that cannot be read or written.

    ``problems`` lists every bad record found, so that one run reports all of them.
    """

    def __init__(self, message: str, problems: list[str] | None = None):
        self.problems = list(problems or [])
        if self.problems:
            shown = self.problems[:20]
            more = len(self.problems) - len(shown)
            message = message + "\n  - " + "\n  - ".join(shown)
            if more:
                message += f"\n  … and {more} more"
        super().__init__(message)


class TrainingError(EmoSEMError):
    """Training cannot start or continue (empty data, incompatible base, …)."""

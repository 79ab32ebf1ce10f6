"""The emotion vocabulary of ArtEmis, as APOLO segments it."""

from __future__ import annotations

from collections.abc import Iterable

from .errors import UnknownEmotionError

#: The eight ArtEmis emotions, in ArtEmis order (positive first). APOLO segments these.
EMOTIONS: tuple[str, ...] = (
    "amusement",
    "awe",
    "contentment",
    "excitement",
    "anger",
    "disgust",
    "fear",
    "sadness",
)
#: ArtEmis's ninth label. It may carry explanations (imported from ArtEmis) but never a mask.
SOMETHING_ELSE = "something else"

POSITIVE = frozenset(EMOTIONS[:4])
NEGATIVE = frozenset(EMOTIONS[4:])


def normalise_emotion(name: str) -> str:
    """Return the canonical spelling of ``name`` (case, spaces, ``something_else``)."""
    key = " ".join(str(name).strip().lower().replace("_", " ").split())
    if key in EMOTIONS or key == SOMETHING_ELSE:
        return key
    raise UnknownEmotionError(
        f"unknown emotion {name!r}: choose from {', '.join(EMOTIONS)} (or 'all')"
    )


def parse_emotions(spec: str | Iterable[str] | None) -> tuple[str, ...]:
    """Parse ``"all"``, ``"fear,awe"`` or a list of names into canonical emotions, in EMOTIONS order.

    Raises :class:`UnknownEmotionError` naming every unknown entry at once.
    """
    if spec is None:
        return EMOTIONS
    items = [s for s in spec.split(",")] if isinstance(spec, str) else list(spec)
    items = [s.strip() for s in items if s and s.strip()]
    if not items or any(s.lower() == "all" for s in items):
        return EMOTIONS
    chosen, unknown = set(), []
    for item in items:
        try:
            emotion = normalise_emotion(item)
        except UnknownEmotionError:
            unknown.append(item)
            continue
        if emotion == SOMETHING_ELSE:
            unknown.append(item)
        else:
            chosen.add(emotion)
    if unknown:
        names = ", ".join(repr(u) for u in unknown)
        raise UnknownEmotionError(
            f"unknown emotion{'s' if len(unknown) > 1 else ''} {names}: "
            f"choose from {', '.join(EMOTIONS)} (or 'all')"
        )
    return tuple(e for e in EMOTIONS if e in chosen)

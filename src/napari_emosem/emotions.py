"""The emotion vocabulary of ArtEmis, as APOLO segments it."""

from __future__ import annotations

import difflib
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


def _key(name: str) -> str:
    return " ".join(str(name).strip().lower().replace("_", " ").split())


def closest_emotion(name: str) -> str | None:
    """The emotion ``name`` was most likely meant to be (a typo: "faer", "sadnes"), or None."""
    # 0.7: typos ("faer" 0.75, "sadnes" 0.92) qualify, other words ("happiness"/sadness 0.62) not
    found = difflib.get_close_matches(_key(name), EMOTIONS, n=1, cutoff=0.7)
    return found[0] if found else None


def _suggestions(names: list[str]) -> str:
    guesses = {name: guess for name in names if (guess := closest_emotion(name))}
    if not guesses:
        return ""
    if len(names) == 1:
        return f" (did you mean {guesses[names[0]]}?)"
    return " (did you mean " + ", ".join(f"{g} for {n!r}" for n, g in guesses.items()) + "?)"


def normalise_emotion(name: str) -> str:
    """Return the canonical spelling of ``name`` (case, spaces, ``something_else``)."""
    key = _key(name)
    if key in EMOTIONS or key == SOMETHING_ELSE:
        return key
    raise UnknownEmotionError(
        f"unknown emotion {name!r}{_suggestions([name])}: choose from {', '.join(EMOTIONS)} (or 'all')"
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
            f"unknown emotion{'s' if len(unknown) > 1 else ''} {names}{_suggestions(unknown)}: "
            f"choose from {', '.join(EMOTIONS)} (or 'all')"
        )
    return tuple(e for e in EMOTIONS if e in chosen)

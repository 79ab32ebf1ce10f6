"""Keyboard first: the annotator's actions as napari key bindings.

napari lists in Preferences > Shortcuts, and lets the user change, the actions registered with its
action manager (``napari.utils.action_manager``) under a keymap provider; a plugin registers its
own there, with the viewer (:class:`napari.components.ViewerModel`) as the provider, as napari's
"action manager" example does. The npe2 manifest's ``keybindings`` contribution would be the
declarative way, but napari 0.9 does not read it (its actions from a manifest get no key bindings).

Each action finds the annotator docked in the viewer the key was pressed in and calls its
controller, so several viewers each drive their own annotator. A default key is bound only when the
user's napari settings have no keys of their own for the action (napari binds those at start-up,
before any plugin is loaded, and keeps them for actions that come later).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..annotation import Status

if TYPE_CHECKING:
    from .controller import AnnotatorController

PREFIX = "napari-emosem:"


@dataclass(frozen=True)
class KeyAction:
    """One action of the annotator: its napari action name, what Preferences calls it, its default
    key (napari's key syntax), and what it does."""

    name: str
    description: str
    default: str
    run: Callable[[AnnotatorController], object]

    @property
    def action(self) -> str:
        return PREFIX + self.name


#: the annotator's key bindings (the README's table lists them). Keys napari uses for Labels,
#: Points and Image layers (1-7, A, B, C, E, F, L, M, O, P, S, V, X, Y, Z, brackets) are left
#: alone: the layer in use takes its keys first.
ACTIONS: tuple[KeyAction, ...] = (
    KeyAction("accept", "EmoSEM: accept the selected emotion (again: undo)", "K",
              lambda c: c.decide(Status.ACCEPTED)),
    KeyAction("reject", "EmoSEM: reject the selected emotion's proposal (again: undo)", "R",
              lambda c: c.decide(Status.REJECTED)),
    KeyAction("no_stimulus", "EmoSEM: no stimulus for the selected emotion (again: undo)", "N",
              lambda c: c.decide(Status.NO_STIMULUS)),
    KeyAction("next_emotion", "EmoSEM: next emotion", "W", lambda c: c.step_emotion(1)),
    KeyAction("previous_emotion", "EmoSEM: previous emotion", "Q", lambda c: c.step_emotion(-1)),
    KeyAction("next_painting", "EmoSEM: save and go to the next painting", "Shift-Right",
              lambda c: c.campaign.next()),
    KeyAction("previous_painting", "EmoSEM: save and go to the previous painting", "Shift-Left",
              lambda c: c.campaign.previous()),
    KeyAction("propose", "EmoSEM: propose the ticked emotions", "G", lambda c: c.propose()),
    KeyAction("refine_with_clicks", "EmoSEM: refine with clicks on/off", "I", lambda c: c.toggle_clicking()),
    KeyAction("toggle_other_emotions", "EmoSEM: show/hide the other emotions' layers", "H",
              lambda c: c.toggle_others()),
)  # fmt: skip


def register_key_bindings() -> None:
    """Register the actions with napari (again: nothing changes), each with its default key
    unless the user's settings bind it already."""
    from napari.components import ViewerModel
    from napari.settings import get_settings
    from napari.utils.action_manager import action_manager

    custom = get_settings().shortcuts.shortcuts
    for key_action in ACTIONS:
        action_manager.register_action(
            key_action.action, _command(key_action), key_action.description, ViewerModel
        )
        if key_action.action not in custom:
            action_manager.bind_shortcut(key_action.action, key_action.default)


def _command(key_action: KeyAction) -> Callable:
    def command(viewer) -> None:
        controller = controller_of(viewer)
        if controller is not None:
            key_action.run(controller)

    # napari tells actions apart by their function's name (its shortcut list shows the active ones)
    command.__name__ = command.__qualname__ = f"emosem_{key_action.name}"
    return command


def controller_of(viewer) -> AnnotatorController | None:
    """The controller of the EmoSEM annotator docked in ``viewer`` (None: none is)."""
    from .annotator import EmoSEMAnnotator

    window = getattr(viewer, "window", None)
    if window is None:
        return None
    for widget in window.dock_widgets.values():
        if isinstance(widget, EmoSEMAnnotator):
            return widget.controller
    return None

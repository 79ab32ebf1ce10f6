"""The current painting's layers in the viewer, kept in step with its :class:`AnnotationSession`.

Session -> layers: the binder observes the session's ``changed`` events and writes each changed
emotion's mask and metadata into its Labels layer ("<emotion> stimulus"), making the layer when
there is none (from a spare layer when one is ready: :mod:`.spares`). One change is written at
once; several (a proposal of eight masks) are written one per event-loop turn, since each costs
napari tens of ms (hundreds to make a layer) and a repaint, and the viewer must keep taking input.

Layers -> session: brush, eraser and fill strokes reach the session when :meth:`LayerBinder.flush`
runs (napari reports a stroke before it writes it, so the binder flushes on the next turn, and the
controller flushes before every action). Labels layers the annotator adds or opens are adopted.

The binder reports what happens to the viewer's other layers (Image layers come and go, the
annotator selects a layer) as events, for the controller to act on.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from napari.layers import Image, Labels
from psygnal import Signal, SignalGroup
from qtpy.QtCore import QTimer

from .._layers import (
    METADATA_KEY,
    OPACITY,
    REJECTED_OPACITY,
    annotation_from_layer,
    emotion_of_layer,
    layer_metadata,
    mask_to_labels,
    painting_of,
    stimulus_layer_kwargs,
)
from ..annotation import AnnotationSession, Status
from ..errors import EmoSEMError
from .clicks import ClicksLayer
from .spares import SparePool, dress

#: pause between writing two masks: a real timer, so that napari repaints and the event loop takes
#: input in between (a 0 ms timer is a posted event, run in the same pass as the next)
MASK_SPACING_MS = 15
#: pause between two spare layers (each takes napari a few hundred ms on software OpenGL)
SPARE_DELAY_MS = 50


class BinderEvents(SignalGroup):
    #: an Image layer was added, removed or renamed
    images_changed = Signal()
    #: this Image layer left the viewer
    image_removed = Signal(object)
    #: the annotator selected this Image layer in the layer list
    image_activated = Signal(object)
    #: the annotator selected the layer of this emotion
    emotion_activated = Signal(str)
    #: the annotator deleted the layer of this emotion
    emotion_layer_removed = Signal(str)
    error = Signal(str)


@dataclass
class _Bound:
    layer: Any
    #: connected to the layer's paint and data events
    on_paint: Callable[..., None]


class LayerBinder:
    """Adopts, binds and fills the current painting's stimulus layers; spare and clicks layers.

    ``spares_for()``: the emotions the next proposal will likely need a layer for (the ticked
    ones); spare layers are made ahead for those without one.
    """

    def __init__(self, viewer, *, synchronous: bool, spares_for: Callable[[], Iterable[str]] = tuple):
        self.viewer = viewer
        self.synchronous = synchronous
        self.events = BinderEvents()
        self.clicks = ClicksLayer(viewer)
        self.spares = SparePool(viewer)
        self._spares_for = spares_for
        #: no spare layers while a job's masks are on their way (they are about to use them)
        self.hold_spares = False
        self._image = None
        self._session: AnnotationSession | None = None
        self._bound: dict[str, _Bound] = {}
        self._painted: set[str] = set()
        self._queue: list[str] = []
        self._hidden = None  # a filled spare, shown on the next turn
        self._when_shown: list[Callable[[], None]] = []
        #: the one emotion whose layer is shown while the others are hidden (None: all shown)
        self.solo: str | None = None
        self._mask_timer = _single_shot(MASK_SPACING_MS, self._show_next)
        self._spare_timer = _single_shot(SPARE_DELAY_MS, self._top_up_spares)
        layers = viewer.layers
        layers.events.inserted.connect(self._on_inserted)
        layers.events.removed.connect(self._on_removed)
        layers.selection.events.active.connect(self._on_active)
        for layer in layers:
            if isinstance(layer, Image):
                layer.events.name.connect(self._on_image_renamed)

    # The current painting -----------------------------------------------------------------------

    def attach(self, image_layer, session: AnnotationSession | None) -> None:
        """Bind the layers of ``session``'s painting (shown in ``image_layer``); None: no painting."""
        for emotion in list(self._bound):
            self._unbind(emotion)
        self._watch(session)
        self._image = image_layer
        self._painted.clear()
        self._queue.clear()
        self._run_when_shown()
        self.clicks.show(np.zeros((0, 2)), np.zeros((0,), np.int64))
        self.clicks.place(image_layer)
        if session is not None:
            for layer in list(self.viewer.layers):
                self.adopt(layer)
            self._show_unbound()
            self.schedule_spares()

    def repaint(self, session: AnnotationSession) -> None:
        """Another painting in the same Image layer (a campaign's next one): its stimulus layers
        carry over, an emotion's layer showing the new painting's mask of that emotion, since
        filling a layer costs napari a fraction of making one; those it has no annotation of go
        back to the spares."""
        carried = {emotion: bound.layer for emotion, bound in self._bound.items()}
        for emotion in carried:
            self._unbind(emotion)
        self._reveal_hidden()
        self._watch(session)
        self._painted.clear()
        self._queue.clear()
        self._run_when_shown()
        self.clicks.show(np.zeros((0, 2)), np.zeros((0,), np.int64))
        with self.quiet():
            for emotion, layer in carried.items():
                if layer not in self.viewer.layers:
                    continue
                if emotion in session:
                    self._bind(emotion, layer)
                    self.show_now(emotion)
                else:
                    self.spares.put_back(layer)
        self._show_unbound()
        self.schedule_spares()

    def _show_unbound(self) -> None:
        """Show the session's annotations that have no layer yet (one per event-loop turn)."""
        session = self._session
        missing = tuple(e for e in session.emotions() if e not in self._bound) if session is not None else ()
        if missing:
            self._on_changed(missing)

    def _reveal_hidden(self) -> None:
        layer, self._hidden = self._hidden, None
        if layer is not None and layer in self.viewer.layers:
            layer.visible = self._shows(self.emotion_of(layer))

    def replace(self, session: AnnotationSession) -> None:
        """The same painting, another session (an autosave restored): its layers show it now."""
        self._watch(session)
        self._painted.clear()
        for emotion in [e for e in self._bound if e not in session]:
            stale = self._unbind(emotion)
            self.viewer.layers.remove(stale)
        for emotion in session.emotions():
            self.show_now(emotion)

    def _watch(self, session: AnnotationSession | None) -> None:
        if self._session is not None:
            self._session.events.changed.disconnect(self._on_changed)
        self._session = session
        if session is not None:
            session.events.changed.connect(self._on_changed)

    def layer(self, emotion: str):
        """The Labels layer of ``emotion`` for the current painting (None if there is none)."""
        bound = self._bound.get(emotion)
        return bound.layer if bound else None

    def emotion_of(self, layer) -> str | None:
        return next((e for e, bound in self._bound.items() if bound.layer is layer), None)

    def set_solo(self, emotion: str | None) -> None:
        """Show only ``emotion``'s layer, the other emotions' hidden (None: show them all)."""
        self.solo = emotion
        with self.quiet():
            for bound_emotion, bound in self._bound.items():
                visible = self._shows(bound_emotion)
                if bound.layer.visible != visible and bound.layer is not self._hidden:
                    bound.layer.visible = visible

    def _shows(self, emotion: str | None) -> bool:
        return self.solo is None or emotion == self.solo

    def activate(self, emotion: str) -> None:
        """Select ``emotion``'s layer in the layer list (if it has one)."""
        layer = self.layer(emotion)
        if layer is not None:
            with self.quiet():
                self.viewer.layers.selection.active = layer

    # Layers -> session --------------------------------------------------------------------------

    def adopt(self, layer) -> None:
        """Bind a Labels layer of the current painting ("<emotion> stimulus") to its emotion."""
        session = self._session
        if session is None or not isinstance(layer, Labels) or layer.ndim != 2 or self.emotion_of(layer):
            return
        metadata = layer.metadata if isinstance(layer.metadata, dict) else {}
        emotion = emotion_of_layer(layer.name, metadata)
        owner = painting_of(metadata)
        if emotion is None or emotion in self._bound or owner not in (None, session.digest):
            return  # not a stimulus layer, one we have, or another painting's
        if tuple(layer.data.shape) != session.shape:
            return
        self._bind(emotion, layer)
        if owner == session.digest and emotion in session:
            self._write_metadata(emotion)  # this session's own layer, back (after switching paintings)
        elif owner == session.digest or METADATA_KEY in metadata:
            session.load(annotation_from_layer(layer.name, layer.data, metadata, session.shape))  # as saved
        else:
            session.set_mask(emotion, np.asarray(layer.data))  # a layer the annotator made

    def flush(self) -> None:
        """Store the masks the annotator painted since the last flush into the session."""
        painted, self._painted = self._painted, set()
        session = self._session
        if session is None:
            return
        for emotion in sorted(painted):
            layer = self.layer(emotion)
            if layer is None:
                continue
            try:
                session.set_mask(emotion, np.asarray(layer.data))
            except EmoSEMError as exc:
                self.events.error.emit(str(exc))

    def _on_paint(self, emotion: str, event=None) -> None:
        # napari may report a stroke before it writes the new values into the array: the mask is
        # read a moment later (coalescing a burst of strokes), or at once by flush()
        if self._session is None:
            return
        if not self._painted:
            QTimer.singleShot(0, self.flush)
        self._painted.add(emotion)

    def _bind(self, emotion: str, layer) -> None:
        if emotion in self._bound:
            if self._bound[emotion].layer is layer:
                return
            self._unbind(emotion)
        on_paint = functools.partial(self._on_paint, emotion)
        layer.events.paint.connect(on_paint)
        layer.events.data.connect(on_paint)
        self._bound[emotion] = _Bound(layer, on_paint)

    def _unbind(self, emotion: str):
        bound = self._bound.pop(emotion, None)
        if bound is None:
            return None
        for emitter in (bound.layer.events.paint, bound.layer.events.data):
            with contextlib.suppress(TypeError, ValueError, RuntimeError):
                emitter.disconnect(bound.on_paint)
        return bound.layer

    # Session -> layers --------------------------------------------------------------------------

    def _on_changed(self, emotions: tuple[str, ...]) -> None:
        if self.synchronous or (len(emotions) == 1 and not self._queue and self._hidden is None):
            for emotion in emotions:
                self.show_now(emotion)
            return
        self._queue.extend(e for e in emotions if e not in self._queue)
        if not self._mask_timer.isActive():
            self._mask_timer.start()

    def when_shown(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once the session's changes are all on screen (now, if they are)."""
        self._when_shown.append(callback)
        if not self._queue and self._hidden is None:
            self._run_when_shown()

    def _run_when_shown(self) -> None:
        callbacks, self._when_shown = self._when_shown, []
        for callback in callbacks:
            callback()

    def _show_next(self) -> None:
        """One step of writing queued masks: reveal a filled spare, or fill the next layer."""
        if self._hidden is not None:
            # even if the annotator moved on: it is that emotion's layer
            self._reveal_hidden()
            self._mask_timer.start()
        elif self._queue:
            self._hidden = self.show_now(self._queue.pop(0), reveal=False)
            self._mask_timer.start()
        else:
            self._run_when_shown()

    def show_now(self, emotion: str, *, reveal: bool = True):
        """Make the layer of ``emotion`` show the session's annotation, making the layer if needed.

        ``reveal=False``: a spare layer it fills stays hidden and is returned, for the caller to
        show on the next event-loop turn (napari's work, then a repaint); otherwise None.
        """
        session = self._session
        item = session.get(emotion) if session is not None else None
        if item is None:
            return None
        layer, hidden = self.layer(emotion), None
        with self.quiet():
            if layer is None:
                layer, hidden = self._new_layer(emotion, reveal=reveal)
            else:
                # only real changes: each one repaints the canvas (slow with software OpenGL)
                if not np.array_equal(np.asarray(layer.data) > 0, item.mask):
                    with layer.events.data.blocker(self._bound[emotion].on_paint):
                        layer.data = mask_to_labels(item.mask)
                # rejected proposals are shown faint; otherwise the annotator's own opacity stays
                rejected = item.status == Status.REJECTED
                if rejected and not np.isclose(layer.opacity, REJECTED_OPACITY):
                    layer.opacity = REJECTED_OPACITY
                elif not rejected and np.isclose(layer.opacity, REJECTED_OPACITY):
                    layer.opacity = OPACITY
            self._write_metadata(emotion)
        return hidden

    def _new_layer(self, emotion: str, *, reveal: bool):
        item, session = self._session[emotion], self._session
        kwargs = stimulus_layer_kwargs(item, painting=session.digest, image_layer=self._image)
        layer = self.spares.take()
        shown = self._shows(emotion)
        if layer is not None:  # a few times quicker than napari making a new layer
            layers = self.viewer.layers
            reveal = reveal and shown
            dress(layer, mask_to_labels(item.mask), kwargs, layers=layers, above=self._image, reveal=reveal)
            hidden = None if (reveal or not shown) else layer
        else:
            layer = self.viewer.add_labels(mask_to_labels(item.mask), visible=shown, **kwargs)
            layer.selected_label = 1  # paint draws the stimulus, erase (0) removes it
            hidden = None
        self._bind(emotion, layer)
        return layer, hidden

    def _write_metadata(self, emotion: str) -> None:
        layer, session = self.layer(emotion), self._session
        if layer is not None and session is not None and emotion in session:
            layer.metadata = {**(layer.metadata or {}), **layer_metadata(session[emotion], painting=session.digest)}

    # Spare layers -------------------------------------------------------------------------------

    def schedule_spares(self) -> None:
        """Make spare layers for the next proposal, one per event-loop turn, from the next turn on."""
        self._spare_timer.start()

    def _spares_wanted(self) -> int:
        if self._session is None:
            return 0
        return sum(1 for e in self._spares_for() if e not in self._bound)

    def _top_up_spares(self) -> None:
        if self.hold_spares or self._spares_wanted() <= len(self.spares):
            return
        image = self._image
        with self.quiet():
            self.spares.make_one(
                scale=image.scale[-2:] if image is not None else None,
                translate=image.translate[-2:] if image is not None else None,
            )
        if self._spares_wanted() > len(self.spares):
            self._spare_timer.start()

    def close(self) -> None:
        """Stop listening to the viewer and its layers (the annotator is closing)."""
        self._mask_timer.stop()
        self._spare_timer.stop()
        for emotion in list(self._bound):
            self._unbind(emotion)
        self._watch(None)
        layers = self.viewer.layers
        for emitter, callback in (
            (layers.events.inserted, self._on_inserted),
            (layers.events.removed, self._on_removed),
            (layers.selection.events.active, self._on_active),
        ):
            with contextlib.suppress(TypeError, ValueError, RuntimeError):
                emitter.disconnect(callback)

    # Viewer events ------------------------------------------------------------------------------

    @contextlib.contextmanager
    def quiet(self) -> Iterator[None]:
        """While the binder itself changes the layer selection: not the annotator's choice."""
        with self.viewer.layers.selection.events.active.blocker(self._on_active):
            yield

    def _on_inserted(self, event) -> None:
        layer = event.value
        if isinstance(layer, Image):
            layer.events.name.connect(self._on_image_renamed)
            self.events.images_changed.emit()
        else:
            self.adopt(layer)

    def _on_removed(self, event) -> None:
        layer = event.value
        if self.spares.forget(layer) or self.clicks.forget(layer):
            return
        emotion = self.emotion_of(layer)
        if emotion is not None:
            self._unbind(emotion)
            self.events.emotion_layer_removed.emit(emotion)
        if isinstance(layer, Image):
            if layer is self._image:
                self.attach(None, None)
            self.events.image_removed.emit(layer)
            self.events.images_changed.emit()

    def _on_image_renamed(self, event=None) -> None:
        self.events.images_changed.emit()

    def _on_active(self, event=None) -> None:
        layer = self.viewer.layers.selection.active
        if layer is None or layer is self.clicks.layer:
            return
        emotion = self.emotion_of(layer)
        if emotion is not None:
            self.events.emotion_activated.emit(emotion)
        elif isinstance(layer, Image) and layer is not self._image:
            self.events.image_activated.emit(layer)


def _single_shot(interval_ms: int, slot: Callable[[], None]) -> QTimer:
    timer = QTimer()
    timer.setSingleShot(True)
    timer.setInterval(interval_ms)
    timer.timeout.connect(slot)
    return timer

"""Propose a mask and an explanation draft for each chosen emotion of the current painting."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence

from ...errors import EmoSEMError
from .base import Done, Failed, Step
from .model import ModelJob

#: the longest the worker waits for the GUI to show the masks before drafting explanations
MASKS_SHOWN_TIMEOUT_S = 30.0


class ProposeJob(ModelJob):
    """Load the model, encode the painting, decode a mask per emotion, then draft each explanation.

    Yields ``3 + len(emotions)`` steps when ``explain`` (3 otherwise). Masks arrive in one step (one
    decoder call) and go into the session at once (what a person reviewed is kept unless
    ``replace_protected``); explanations come one per step, so Cancel stops between two. Threaded,
    the worker waits after the masks until the GUI has put them on screen, so that drafting does
    not compete with napari's layer work for the interpreter (the GIL) meanwhile.
    """

    name = "propose"
    fills_layers = True

    def __init__(self, controller, cache, session, emotions: Sequence[str], *, replace_protected: bool, explain: bool):
        super().__init__(controller, cache, session)
        self.emotions = list(emotions)
        self.replace_protected, self.explain = replace_protected, explain
        self.steps = 3 + (len(self.emotions) if explain else 0)
        self.masks_shown = None if controller.synchronous else threading.Event()
        self.source = self.model = ""
        self.applied: list[str] = []

    def work(self) -> Iterator[Step]:
        try:
            predictor, loaded, _ = self.predictor(with_painting=False)
            yield Step(
                f"{'loaded' if loaded else 'using'} {predictor.description}",
                kind="loaded",
                source=predictor.source,
                model=predictor.description,
            )
            t0 = time.perf_counter()
            encoded = self.cache.set_image(predictor, self.session.image, self.session.digest)
            cached = getattr(predictor, "from_cache", False)
            how = "from the embedding cache" if (encoded and cached) else ("encoded" if encoded else "already encoded")
            yield Step(f"painting {how} ({time.perf_counter() - t0:.1f} s)", kind="encoded")
            proposals = tuple(predictor.propose(self.emotions, explain=False))
            yield Step(f"{len(proposals)} masks proposed", kind="masks", proposals=proposals)
            if self.masks_shown is not None:
                # bounded: a GUI that never answers must not hang the worker for good
                self.masks_shown.wait(timeout=MASKS_SHOWN_TIMEOUT_S)
            texts: dict[str, str] = {}
            if self.explain:
                for proposal in proposals:
                    text = predictor.explain(proposal.emotion, proposal.mask)
                    texts[proposal.emotion] = text
                    yield Step(f"explained {proposal.emotion}", kind="explanation", emotion=proposal.emotion, text=text)
        except EmoSEMError as exc:
            return Failed(str(exc))
        message = f"proposed {', '.join(p.emotion for p in proposals)}"
        return self.done(predictor, message, proposals=proposals, texts=texts)

    def on_step(self, step: Step) -> None:
        if step.kind == "loaded":
            self.source, self.model = step.source, step.model
        if not self.for_current_painting:
            return
        if step.kind == "masks":
            self.applied = self.session.apply_proposals(
                step.proposals, source=self.source, model=self.model, replace_protected=self.replace_protected
            )
            # the layers show the masks one per event-loop turn: drafting waits for them
            self.controller.binder.when_shown(self._masks_on_screen)
        elif step.kind == "explanation" and step.emotion in self.applied:
            item = self.session.get(step.emotion)
            if item is not None and not item.text_edited:
                self.session.set_explanation(step.emotion, step.text, from_model=True)

    def _masks_on_screen(self) -> None:
        selected = self.controller.selected_emotion
        if self.applied and self.for_current_painting and selected not in self.applied:
            self.controller.select_emotion(self.applied[0])
        self._let_worker_go_on()

    def on_cancel(self) -> None:
        self._let_worker_go_on()  # to its next step, where the cancel takes effect

    def _let_worker_go_on(self) -> None:
        if self.masks_shown is not None:
            self.masks_shown.set()

    def on_done(self, result: Done) -> None:
        if not self.for_current_painting:
            return
        self.session.autosave(force=True)
        kept = [p.emotion for p in result.proposals if p.emotion not in self.applied]
        note = f"; kept your work on {', '.join(kept)}" if kept else ""
        self.controller.status(f"{result.model}: {result.message} in {result.seconds:.1f} s{note}")

    def on_cancelled(self) -> None:
        kept = f"kept the masks of {', '.join(self.applied)}" if self.applied else "nothing was changed"
        self.controller.status(f"cancelled; {kept}")

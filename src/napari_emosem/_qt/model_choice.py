"""The model the annotator chose: which one, on which device, at which precision, loaded ahead.

:class:`ModelChoice` (the controller's ``model``) holds the choice, remembers it in the settings,
announces it on the controller's ``events.model`` / ``device`` / ``precision``, and loads the
chosen model in a worker as soon as it changes, so that the first Propose does not wait for it.
A job takes the choice in force when it starts (:class:`~napari_emosem._qt.jobs.model.ModelJob`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..devices import DEVICES
from ..precision import check_precision
from .jobs import LoadJob
from .models import default_model, user_checkpoints

if TYPE_CHECKING:
    from .controller import AnnotatorController


class ModelChoice:
    """The model spec, device and precision in use; see the module docstring."""

    def __init__(self, controller: AnnotatorController):
        self.controller = controller
        settings = controller.settings
        #: a preset or a checkpoint folder
        self.spec = default_model(settings.model, user_checkpoints())
        self.device = settings.device if settings.device in DEVICES else "auto"
        self.precision = settings.precision

    def set_model(self, spec: str) -> None:
        """Use ``spec`` (a preset or a checkpoint folder) for the next proposals, from now on."""
        self.spec = str(spec).strip() or "starter"
        self.controller.settings.model = self.spec  # an explicit choice (even "starter") wins over the newest
        self.controller.events.model.emit(self.spec)
        self.preload()

    def set_device(self, device: str) -> None:
        self.device = self.controller.settings.device = device
        self.controller.events.device.emit(device)
        self.preload()

    def set_precision(self, precision: str) -> None:
        """Load the model with ``precision`` (``precision.PRECISIONS``) from now on."""
        self.precision = self.controller.settings.precision = check_precision(precision)
        self.controller.events.precision.emit(self.precision)
        self.preload()

    def preload(self) -> None:
        """Load the chosen model in a worker now (when the annotator opens or the model changes).

        Threaded mode only: tests that run synchronously load on first use.
        """
        controller = self.controller
        if controller.synchronous:
            return
        if controller.jobs.busy:
            controller.waiting.wait("load", lambda ended: self.preload())  # a waiting proposal waits for it too
            return
        controller.run(LoadJob(controller, controller.cache, None))

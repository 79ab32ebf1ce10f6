"""The dataset folder of an annotator: where Export writes, Open reads and Fine-tune trains."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .._layers import add_layer_data, painting_info
from .._reader import read_dataset
from ..annotation import ExportResult
from ..data import StimulusDataset
from ..errors import EmoSEMError

if TYPE_CHECKING:
    from .controller import AnnotatorController


class DatasetFolder:
    """The folder in use (remembered in the settings once exported to), and what is done with it."""

    def __init__(self, controller: AnnotatorController):
        self.controller = controller
        #: the folder chosen (typed, browsed, or the painting's own dataset)
        self.path = controller.settings.dataset_folder
        self.last_export: ExportResult | None = None

    def folder(self) -> str:
        """The dataset folder (the remembered one when none is chosen; "" when there is none)."""
        return self.path.strip() or self.controller.settings.dataset_folder or ""

    def set(self, folder: str | Path) -> None:
        """The dataset folder Export writes to, Open reads from and Fine-tune trains on."""
        self.path = str(folder)
        self.controller.events.dataset_folder.emit(self.path)

    def export(self, folder: str | Path | None = None) -> ExportResult | None:
        """Write the current painting and its annotations into ``folder`` (default: the dataset
        folder; remembered). Exporting again updates the painting in place, another is appended."""
        controller = self.controller
        session = controller.require_session()
        if session is None:
            return None
        campaign = controller.campaign
        if campaign.owns(session) and folder in (None, "", str(campaign.campaign.root)):
            # a campaign's painting goes into the campaign (saving it is what leaving it does)
            return campaign.last_export if campaign.save(force=True) else None
        folder = str(folder or self.folder())
        if not folder:
            controller.error("choose the dataset folder first")
            return None
        try:
            result = session.export(folder)
        except EmoSEMError as exc:
            controller.error(str(exc))
            return None
        self.set(folder)
        self.exported(result)
        return result

    def exported(self, result: ExportResult) -> None:
        """A painting was written into the dataset folder: remembered, and said so."""
        folder = str(result.dataset_root)
        self.controller.settings.dataset_folder = folder
        self.last_export = result
        self.controller.events.autosave_offer.emit(None)
        skipped = "; ".join(f"{e}: {why}" for e, why in result.skipped.items())
        n = len(result.written)
        self.controller.status(
            f"saved {result.file_name} into {folder} ({n} emotion{'s' if n != 1 else ''}"
            f"{'; not written — ' + skipped if skipped else ''})"
        )

    def export_unexported(self, folder: str | Path | None = None) -> bool:
        """Export every painting with unexported edits into ``folder``; False if one failed."""
        paintings, set_painting = self.controller.paintings, self.controller.set_painting
        current, exported = paintings.image_layer, True
        for layer, session in paintings.sessions():
            if session.dirty:
                set_painting(layer)
                if self.export(folder) is None:
                    exported = False
                    break
        set_painting(current)
        return exported

    def open(self, folder: str | Path | None = None, painting: str | None = None):
        """Open ``painting`` (file name; None: the one annotated last) of the dataset ``folder``
        (default: the dataset folder) with its annotations, and annotate it. A painting already
        open is made current rather than opened twice. Returns its Image layer, or None."""
        controller = self.controller
        navigation = controller.campaign
        campaign = navigation.campaign
        same = campaign is not None and Path(folder or self.folder()).expanduser().resolve() == campaign.root.resolve()
        if same and painting in campaign.index:
            # the campaign's painting: shown in its layer (the current one saved first), not opened twice
            return navigation.layer if navigation.go(painting) else None
        dataset = self._open(folder)
        if dataset is None:
            return None
        for layer in controller.paintings.image_layers():
            info = painting_info(layer.metadata)
            if painting is not None and (info.file_name, info.dataset) == (painting, str(dataset.root)):
                controller.set_painting(layer)
                return layer
        try:
            layer_data = read_dataset(dataset.root, painting)
        except EmoSEMError as exc:
            controller.error(str(exc))
            return None
        image_layer = add_layer_data(controller.viewer, layer_data)
        self.set(dataset.root)
        controller.set_painting(image_layer)
        return image_layer

    def paintings(self, folder: str | Path | None = None) -> dict[str, int]:
        """The paintings of the dataset ``folder`` and how many records each holds ({}: none)."""
        dataset = self._open(folder)
        if dataset is None:
            return {}
        if not dataset.paintings:
            self.controller.error(f"{dataset.root} holds no paintings yet")
        return {p.file_name: len(dataset.stimuli(p)) for p in dataset.paintings}

    def _open(self, folder: str | Path | None) -> StimulusDataset | None:
        folder = str(folder or self.folder())
        if not folder:
            self.controller.error("choose the dataset folder first")
            return None
        try:
            return StimulusDataset.open(Path(folder).expanduser())
        except EmoSEMError as exc:
            self.controller.error(str(exc))
            return None

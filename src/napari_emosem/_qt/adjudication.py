"""Several annotators on the current campaign painting: compare their masks, and adjudicate.

For one emotion at a time (the selected one) :class:`Adjudication` shows each annotator's mask as
a contour (a Labels layer ``"<emotion> · <annotator>"``, a colour each) and the consensus map (an
Image layer ``"<emotion> · consensus"``, ``PairRecords.consensus_map``), and an editable Labels
layer ``"<emotion> · adjudicated"``. One emotion at a time, not every pair of the painting: eight
emotions × N annotators would swamp the layer list, and a reviewer decides one pair at a time;
showing another emotion replaces the layers, leaving the painting removes them.

The reviewer picks one annotator's mask, combines them (majority, union) or edits the
adjudicated layer; the result is stored as the pair's adjudicated record (``adjudicated=True``,
``annotator`` = the reviewer, written in "merge" mode: the annotators' records stay), which
becomes the pair's effective record and training target (``docs/annotators.md``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .._layers import OVERLAY_KEY
from ..annotators import agreement, majority_mask
from ..data import Stimulus
from ..data.records import PairRecords
from ..errors import EmoSEMError

if TYPE_CHECKING:
    from .controller import AnnotatorController

#: how a reviewer decides: one annotator's mask, a combination, or the adjudicated layer as edited
CHOICES = ("pick", "majority", "union", "edit")
#: contour colours of the annotators, in name order (distinct from one another on a painting)
COLOURS = ("#ff1f5b", "#00cd6c", "#009ade", "#ffc61e", "#af58ba", "#f28522", "#a0b1ba", "#a6761d")
SEPARATOR = " · "
#: marks the layers this module adds, with their role (the binder ignores them: no painting's and no
#: emotion's layer of the session)
ROLE = OVERLAY_KEY


@dataclass(frozen=True)
class PairAgreement:
    """How far the annotators of a pair agree: mean mask IoU (None: fewer than two masks to
    compare) and the percentage agreeing on presence (None: fewer than two votes)."""

    annotators: tuple[str, ...]
    mask_iou: float | None
    presence_percent: float | None

    def line(self) -> str:
        if len(self.annotators) < 2:
            return f"{len(self.annotators)} annotator{'s' if len(self.annotators) != 1 else ''}: nothing to compare"
        iou = "–" if self.mask_iou is None else f"{self.mask_iou:.2f}"
        presence = "–" if self.presence_percent is None else f"{self.presence_percent:.0f} %"
        return f"{', '.join(self.annotators)}: mask IoU {iou}, agree on presence {presence}"


def pair_agreement(pair: PairRecords) -> PairAgreement:
    report = agreement([pair.pair_votes()])
    return PairAgreement(tuple(pair.annotators), report.mask_iou_mean, report.presence_percent)


def decided_mask(pair: PairRecords, how: str, annotator: str | None = None) -> np.ndarray:
    """The mask ``how`` decides from the pair's votes: ``pick`` (``annotator``'s), ``majority``
    (consensus ≥ 0.5) or ``union`` (any annotator's pixels)."""
    votes = {v.slot.label: v for v in pair.votes}
    if how == "pick":
        if annotator not in votes:
            names = ", ".join(votes) or "none"
            raise EmoSEMError(f"{pair.emotion}: {annotator!r} has no mask here; pick one of {names}")
        return np.asarray(votes[annotator].mask, bool).copy()
    consensus = pair.consensus_map()
    if consensus is None:
        raise EmoSEMError(f"{pair.emotion}: no annotator has a mask here to combine")
    if how == "majority":
        return majority_mask(consensus)
    if how == "union":
        return consensus > 0
    raise EmoSEMError(f"unknown way to adjudicate {how!r}: choose one of {', '.join(CHOICES)}")


def decided_explanations(pair: PairRecords, how: str, annotator: str | None = None) -> list[str]:
    """The adjudicated record's explanations: the picked annotator's (when they wrote any), else
    every annotator's, each once (an earlier adjudication's are not carried over)."""
    if how == "pick":
        picked = next((r.explanations for r in pair.reviewed if r.slot.label == annotator), [])
        if picked:
            return list(picked)
    out: list[str] = []
    for record in pair.reviewed:
        out.extend(e for e in record.explanations if e not in out)
    return out


class Adjudication:
    """The current campaign painting's annotators for the selected emotion, and the reviewer's
    decision (see the module docstring)."""

    def __init__(self, controller: AnnotatorController):
        self.controller = controller
        self.emotion: str | None = None
        self.pair: PairRecords | None = None
        self.layers: list = []

    # Reading ------------------------------------------------------------------------------------

    def current_pair(self, emotion: str) -> PairRecords | None:
        navigation = self.controller.campaign
        session = navigation.session
        if navigation.campaign is None or session is None:
            return None
        return navigation.campaign.dataset.pair(session.file_name, emotion)

    def agreement(self, emotion: str) -> PairAgreement | None:
        pair = self.current_pair(emotion)
        return None if pair is None else pair_agreement(pair)

    # Layers -------------------------------------------------------------------------------------

    def show(self, emotion: str | None = None) -> list:
        """Show ``emotion``'s (default: the selected one's) annotators, consensus and adjudicated
        layers on the current campaign painting; returns the layers (none: no votes)."""
        controller = self.controller
        emotion = emotion or controller.selected_emotion
        self.hide()
        pair = self.current_pair(emotion) if emotion else None
        if pair is None or not pair.votes:
            controller.status(f"{emotion}: no annotator's mask to compare on this painting")
            return []
        self.emotion, self.pair = emotion, pair
        viewer, image = controller.viewer, controller.campaign.layer
        where = {"scale": tuple(image.scale[-2:]), "translate": tuple(image.translate[-2:])} if image else {}
        consensus = pair.consensus_map()
        self._add(viewer.add_image(
            consensus, name=f"{emotion}{SEPARATOR}consensus", colormap="magma", contrast_limits=(0.0, 1.0),
            opacity=0.45, blending="additive", metadata={ROLE: "consensus"}, **where,
        ))  # fmt: skip
        from napari.utils.colormaps import DirectLabelColormap

        for i, vote in enumerate(pair.votes):
            colour = COLOURS[i % len(COLOURS)]
            mask = np.zeros(pair.painting.shape, np.uint8) if vote.no_stimulus else vote.mask.astype(np.uint8)
            layer = viewer.add_labels(
                mask, name=f"{emotion}{SEPARATOR}{vote.slot.label}", opacity=1.0,
                colormap=DirectLabelColormap(color_dict={None: "transparent", 0: "transparent", 1: colour}),
                metadata={ROLE: "annotator", "annotator": vote.slot.label}, **where,
            )  # fmt: skip
            layer.contour = 2
            layer.editable = False
            self._add(layer)
        start = pair.adjudicated.mask if pair.adjudicated is not None and pair.adjudicated.has_mask else None
        start = majority_mask(consensus) if start is None else start
        self._add(viewer.add_labels(
            start.astype(np.uint8), name=f"{emotion}{SEPARATOR}adjudicated", opacity=0.5,
            metadata={ROLE: "adjudicated"}, **where,
        ))  # fmt: skip
        controller.status(pair_agreement(pair).line())
        return list(self.layers)

    def _add(self, layer) -> None:
        self.layers.append(layer)

    @property
    def adjudicated_layer(self):
        return next((layer for layer in self.layers if layer.metadata.get(ROLE) == "adjudicated"), None)

    def hide(self) -> None:
        """Remove the layers (the painting or the emotion changes)."""
        layers, self.layers, self.emotion, self.pair = self.layers, [], None, None
        for layer in layers:
            if layer in self.controller.viewer.layers:
                self.controller.viewer.layers.remove(layer)

    # Deciding -----------------------------------------------------------------------------------

    def adjudicate(self, how: str, annotator: str | None = None, emotion: str | None = None) -> Stimulus | None:
        """Store the reviewer's decision on ``emotion`` (default: the one shown): ``pick``
        ``annotator``'s mask, ``majority``, ``union``, or ``edit`` (the adjudicated layer as the
        reviewer painted it). Returns the adjudicated record (None, and why, if it failed)."""
        controller = self.controller
        emotion = emotion or self.emotion
        if emotion != self.emotion:
            self.show(emotion)
        pair, layer = self.pair, self.adjudicated_layer
        if pair is None or layer is None:
            controller.error(f"{emotion}: show the annotators' masks of a campaign painting first")
            return None
        try:
            if how == "edit":
                mask = np.asarray(layer.data) > 0
            else:
                mask = decided_mask(pair, how, annotator)
                layer.data = mask.astype(np.uint8)
            record = Stimulus(
                emotion, mask, decided_explanations(pair, how, annotator),
                no_stimulus=not mask.any(), source="human", annotator=controller.annotator_name(),
                adjudicated=True, extra={"adjudication": how if how != "pick" else f"pick:{annotator}"},
            )  # fmt: skip
            navigation = controller.campaign
            navigation.campaign.dataset.write_painting(None, pair.painting.file_name, [record], records="merge")
        except EmoSEMError as exc:
            controller.error(str(exc))
            return None
        navigation.written(pair.painting.file_name)
        self.pair = navigation.campaign.dataset.pair(pair.painting.file_name, emotion)
        who = f" ({annotator}'s)" if how == "pick" else ""
        controller.status(f"{pair.painting.file_name}, {emotion}: adjudicated by {how}{who}")
        return record

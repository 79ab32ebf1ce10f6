"""Panel: several annotators on the selected pair of a campaign painting; compare, adjudicate."""

from __future__ import annotations

from qtpy.QtWidgets import QComboBox, QGroupBox, QHBoxLayout, QLabel, QPushButton, QVBoxLayout

from ..adjudication import PairAgreement
from ..controller import AnnotatorController

#: the combo's entries besides "pick <annotator>": what each stores
COMBINE = {
    "majority": "majority of the annotators",
    "union": "union of the annotators",
    "edit": "the adjudicated layer as edited",
}


class AnnotatorsPanel(QGroupBox):
    """Agreement at a glance for the selected emotion; Compare shows each annotator's contour and
    the consensus map; Adjudicate stores the reviewer's choice. Shown while a campaign is open."""

    def __init__(self, controller: AnnotatorController):
        super().__init__("Annotators")
        self.controller = controller
        layout = QVBoxLayout(self)
        self.agreement_label = QLabel("")
        self.agreement_label.setWordWrap(True)
        row = QHBoxLayout()
        self.compare_button = QPushButton("Compare")
        self.compare_button.setToolTip("Show each annotator's mask (contours) and the consensus map of this emotion")
        self.compare_button.clicked.connect(lambda: self.compare())
        self.choice_combo = QComboBox()
        self.choice_combo.setToolTip(
            "Pick one annotator's mask, combine them, or store the adjudicated layer as edited"
        )
        # "majority of the annotators" must not widen the whole dock: it shows in full when opened
        self.choice_combo.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
        self.choice_combo.setMinimumContentsLength(10)
        self.adjudicate_button = QPushButton("Adjudicate")
        self.adjudicate_button.setToolTip("Store the choice as the pair's adjudicated record, under your name")
        self.adjudicate_button.clicked.connect(lambda: self.adjudicate())
        row.addWidget(self.compare_button)
        row.addWidget(self.choice_combo, 1)
        row.addWidget(self.adjudicate_button)
        layout.addWidget(self.agreement_label)
        layout.addLayout(row)
        controller.events.selection.connect(lambda _: self.refresh())
        controller.campaign.events.current.connect(lambda _: self.refresh())
        self.refresh()

    def refresh(self) -> None:
        """What the selected pair's annotators say (the panel hides without a campaign)."""
        controller = self.controller
        emotion = controller.selected_emotion
        agreement: PairAgreement | None = None
        if controller.campaign.campaign is not None and emotion:
            agreement = controller.adjudication.agreement(emotion)
        self.setVisible(controller.campaign.campaign is not None)
        self.agreement_label.setText(agreement.line() if agreement else "no annotator's record of this pair yet")
        self.choice_combo.clear()
        for name in agreement.annotators if agreement else ():
            self.choice_combo.addItem(f"pick {name}", ("pick", name))
        for how, text in COMBINE.items():
            self.choice_combo.addItem(text, (how, None))
        enabled = agreement is not None and bool(agreement.annotators)
        self.compare_button.setEnabled(enabled)
        self.adjudicate_button.setEnabled(enabled)

    def compare(self) -> list:
        return self.controller.adjudication.show()

    def adjudicate(self):
        how, annotator = self.choice_combo.currentData() or ("majority", None)
        record = self.controller.adjudication.adjudicate(how, annotator, emotion=self.controller.selected_emotion)
        self.refresh()
        return record

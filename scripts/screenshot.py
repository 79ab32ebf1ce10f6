"""Make the README's screenshot: napari with the EmoSEM annotator after a real propose.

Opens one of the public-domain Cézannes shipped in ``napari_emosem/paintings``, proposes masks and
explanation drafts with the chosen model (default: the cold-start ``starter``), selects one
emotion so its explanation shows in the text box, and saves the whole window to
``docs/images/screenshot.png``.

Needs a display; on a headless machine: ``xvfb-run -a -s "-screen 0 1920x1200x24" python scripts/screenshot.py``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from _window import save_window, settle  # scripts/_window.py (scripts/ is on the path when run)

REPO = Path(__file__).resolve().parents[1]
PAINTINGS = REPO / "src" / "napari_emosem" / "paintings"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--painting", default=str(PAINTINGS / "a-painter-at-work-1875.jpg"))
    parser.add_argument("--model", default="starter")
    parser.add_argument("--emotions", default="contentment,awe,sadness,excitement")
    parser.add_argument("--select", default="excitement", help="the emotion whose text is shown")
    parser.add_argument("--size", default="1600x980", help="window size, WIDTHxHEIGHT")
    parser.add_argument("--out", default=str(REPO / "docs" / "images" / "screenshot.png"))
    args = parser.parse_args(argv)

    if sys.platform.startswith("linux") and not os.environ.get("DISPLAY"):
        print(
            'no display: run under `xvfb-run -a -s "-screen 0 1920x1200x24" python scripts/screenshot.py`',
            file=sys.stderr,
        )
        return 2
    # keep the user's cache, autosaves and napari settings out of it
    scratch = tempfile.mkdtemp(prefix="emosem-screenshot-")
    os.environ["EMOSEM_CACHE_DIR"] = os.path.join(scratch, "cache")
    os.environ["EMOSEM_DATA_DIR"] = os.path.join(scratch, "data")
    os.environ["NAPARI_CONFIG"] = os.path.join(scratch, "napari", "settings.yaml")

    import napari

    from napari_emosem._qt.annotator import EmoSEMAnnotator
    from napari_emosem._qt.settings import Settings
    from napari_emosem.emotions import parse_emotions
    from napari_emosem.image_io import load_image

    painting = Path(args.painting)
    emotions = parse_emotions(args.emotions)
    width, height = (int(v) for v in args.size.lower().split("x"))

    from napari.settings import get_settings

    # only errors as toasts (a notice, such as napari's about a deprecated Qt binding, would sit over the painting);
    # these settings live in the scratch folder
    get_settings().application.gui_notification_level = "error"
    viewer = napari.Viewer(title="napari-emosem — EmoSEM annotator", show=True)
    widget = EmoSEMAnnotator(viewer, settings=Settings(backend=False), synchronous=False)
    viewer.window.add_dock_widget(widget, name="EmoSEM annotator", area="right")
    # ticked before the painting opens: the annotator makes spare layers for exactly these
    widget.set_emotions(emotions)
    viewer.add_image(
        load_image(painting), name=painting.stem, rgb=True, metadata={"emosem": {"source_path": str(painting)}}
    )
    widget.set_model(args.model)
    widget.set_device("cpu")
    widget.set_dataset_folder("~/emosem-dataset")

    def wait_idle(limit: float = 600) -> None:
        settle(limit, until=lambda: not widget.busy)

    window = widget.window()
    window.resize(width, height)
    settle(1.0)
    wait_idle()
    widget.propose(list(emotions), replace_protected=True)
    wait_idle()
    if widget.last_error:
        print(f"propose failed: {widget.last_error}", file=sys.stderr)
        return 1
    status = widget.status_label.text()
    widget.select_emotion(args.select)
    # the annotator's decision on the selected emotion shows in the table
    widget.accept(args.select)
    widget.status_label.setText(status)
    # readability: the selected emotion filled, the others as outlines over the painting
    for emotion in emotions:
        layer = widget.stimulus_layer(emotion)
        if layer is not None and emotion != args.select:
            layer.contour = 3
            layer.opacity = 0.9
        elif layer is not None:
            layer.opacity = 0.7
    viewer.reset_view()
    settle(1.5)

    out = save_window(viewer, args.out)
    print(f"wrote {out} ({status})")
    # nothing here is worth keeping: into the scratch folder, so that closing does not ask about it
    widget.controller.dataset.export_unexported(os.path.join(scratch, "dataset"))
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

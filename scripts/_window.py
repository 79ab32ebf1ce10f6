"""What the screenshot scripts share: letting napari's event loop run, and saving its window."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path


def settle(seconds: float, until: Callable[[], bool] = lambda: False) -> None:
    """Run the Qt event loop for ``seconds``, or until ``until()`` is true."""
    from qtpy.QtWidgets import QApplication

    app = QApplication.instance()
    end = time.perf_counter() + seconds
    while time.perf_counter() < end and not until():
        app.processEvents()
        time.sleep(0.01)


def save_window(viewer, out: str | Path) -> Path:
    """The whole napari window (docks included) as a PNG at ``out``."""
    from PIL import Image

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    pixels = viewer.screenshot(canvas_only=False, flash=False)
    Image.fromarray(pixels[..., :3]).save(out, optimize=True)
    return out

"""``emosem view``: open napari with the EmoSEM annotator docked and paintings or datasets loaded."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ..config import models_help
from ..devices import DEVICES
from ..errors import EmoSEMError


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "view",
        help="open napari with the EmoSEM annotator and the given paintings or datasets",
        description=(
            "Open napari with the EmoSEM annotator docked. Each PATH is an image file (opened as a "
            "painting to annotate) or a stimulus dataset folder / its annotations.json (opened as a "
            "campaign: the navigator lists its paintings, and the first that is not done opens with "
            "its masks and explanations; --painting picks another). Needs a display; on a headless "
            "machine run it under `xvfb-run -a`."
        ),
    )
    parser.add_argument("paths", nargs="*", metavar="DATASET_OR_IMAGE", help="image files or dataset folders")
    parser.add_argument(
        "--model",
        default=None,
        help=models_help() + " (default: the annotator's setting)",
    )
    parser.add_argument("--device", default=None, choices=DEVICES, help="where the model runs")
    parser.add_argument(
        "--painting", default=None, help="which painting of a dataset to open (file name; default: the first not done)"
    )
    parser.add_argument("--dataset", default=None, help="dataset folder the annotator exports to")
    parser.set_defaults(func=run)


def check_display() -> None:
    """Raise a clear EmoSEMError when no display is available (Linux without X11/Wayland)."""
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        if os.environ.get("QT_QPA_PLATFORM", "") not in ("", "xcb", "wayland"):
            return  # the user chose another Qt platform on purpose
        raise EmoSEMError(
            "no display available (DISPLAY and WAYLAND_DISPLAY are not set): run `emosem view` on a "
            "desktop session, over `ssh -X`, or under a virtual display: `xvfb-run -a emosem view ...`"
        )


def open_viewer(
    paths: list[str],
    *,
    model: str | None = None,
    device: str | None = None,
    painting: str | None = None,
    dataset: str | None = None,
    show: bool = True,
    viewer=None,
):
    """Dock the annotator in ``viewer`` (default: a new one) and load ``paths``; returns ``(viewer, widget)``."""
    if viewer is None:
        check_display()
    for path in paths:
        if not Path(path).exists():
            raise EmoSEMError(f"{path}: no such file or folder")
    # only now: every `emosem` command registers this one, and napari and Qt take seconds to import
    import napari

    from .._layers import image_metadata
    from .._reader import dataset_root
    from ..image_io import load_image

    own_viewer = viewer is None
    if own_viewer:
        viewer = napari.Viewer(title="EmoSEM annotator", show=show)
    try:
        _, widget = viewer.window.add_plugin_dock_widget("napari-emosem", "EmoSEM annotator")
        if model:
            widget.set_model(model)
        if device:
            widget.set_device(device)
        for path in paths:
            root = dataset_root(path)
            if root is not None:
                if widget.open_dataset(root, painting) is None:
                    raise EmoSEMError(widget.last_error or f"{root}: cannot open this dataset")
            else:
                viewer.add_image(
                    load_image(path),
                    name=Path(path).stem,
                    rgb=True,
                    metadata=image_metadata(source_path=str(Path(path).resolve())),
                )
        if dataset:
            widget.set_dataset_folder(dataset)
    except BaseException:
        if own_viewer:
            viewer.close()
        raise
    return viewer, widget


def run(args: argparse.Namespace) -> int:
    viewer, _ = open_viewer(
        list(args.paths), model=args.model, device=args.device, painting=args.painting, dataset=args.dataset
    )
    import napari

    napari.run()
    return 0

"""Make the README's campaign screenshot: the navigator over a campaign part-way done.

Builds a campaign in a scratch folder from the four public-domain Cézannes shipped in
``napari_emosem/paintings`` and generated scenes (``napari_emosem.samples``): two paintings done
(reviewed by an annotator, with their active time), one in progress, one skipped with a reason,
the cold-start ``starter`` model's drafts on a few, the rest not started. Opens it as
``emosem view`` does (at the first painting not done), lets the prefetch make the next one ready,
selects an emotion, and saves the whole window to ``docs/images/campaign.png``.

Needs a display; on a headless machine:
``xvfb-run -a -s "-screen 0 1920x1200x24" python scripts/screenshot_campaign.py``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from _window import save_window, settle  # scripts/_window.py (scripts/ is on the path when run)

REPO = Path(__file__).resolve().parents[1]
EMOTIONS = ("contentment", "awe", "sadness", "excitement")
CEZANNES = {
    "a-painter-at-work-1875.jpg": "A Painter at Work",
    "boy-in-a-red-vest-1888.jpg": "Boy in a Red Vest",
    "fortune-mation.jpg": "Fortuné Marion",
    "madame-cezanne-in-blue-1890.jpg": "Madame Cézanne in Blue",
}


def build(root: Path, scratch: Path) -> None:
    """The campaign: Cézannes and generated scenes, in several states."""
    from PIL import Image

    from napari_emosem.campaign import CampaignSettings, add_paintings, skip_painting, write_settings
    from napari_emosem.data import PaintingUpdate, Stimulus, StimulusDataset
    from napari_emosem.paintings import FOLDER
    from napari_emosem.samples import landscape, storm
    from napari_emosem.starter import StarterPredictor

    generated = scratch / "generated"
    generated.mkdir()
    paths = [FOLDER / name for name in CEZANNES]
    for i in range(8):
        scene = (landscape if i % 2 == 0 else storm)(height=480, width=640, seed=10 + i)
        path = generated / f"{'valley' if i % 2 == 0 else 'storm'}-{i // 2 + 1}.png"
        Image.fromarray(scene).save(path)
        paths.append(path)
    dataset = StimulusDataset.open(root, create=True)
    write_settings(root, CampaignSettings(emotions=EMOTIONS))
    add_paintings(dataset, paths)
    titles = {**CEZANNES, **{p.name: p.stem.replace("-", " ").capitalize() for p in paths[4:]}}
    for name, title in titles.items():
        artist = "Paul Cézanne" if name in CEZANNES else "generated"
        metadata = {"artist": artist, "title": title}
        dataset.write_paintings([PaintingUpdate(dataset.image_path(name), name, metadata=metadata, records="merge")])

    starter = StarterPredictor()
    names = [p.name for p in paths]

    def drafts(name: str, *, reviewed: int = 0, seconds: float = 0.0) -> None:
        starter.set_image(dataset.image(name))
        records = []
        for i, proposal in enumerate(starter.propose(EMOTIONS, explain=True)):
            done = i < reviewed
            records.append(Stimulus(
                proposal.emotion, proposal.mask, [proposal.explanation], source=starter.source,
                score=round(float(proposal.score), 4), reviewed=done, annotator="ana" if done else None,
                annotation_seconds=round(seconds / len(EMOTIONS), 1) if done else 0.0,
            ))  # fmt: skip
        metadata = {"annotation_seconds": seconds} if seconds else None
        dataset.write_painting(dataset.image_path(name), name, records, metadata=metadata)

    drafts(names[0], reviewed=4, seconds=212.0)  # done
    drafts(names[4], reviewed=4, seconds=148.0)  # done
    drafts(names[1], reviewed=2, seconds=95.0)  # in progress
    skip_painting(dataset, names[5], "a photograph of a painting, not the painting", annotator="ana")
    for name in (names[2], names[3], names[6]):
        drafts(name)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--select", default="excitement", help="the emotion selected")
    parser.add_argument("--size", default="1600x1000", help="window size, WIDTHxHEIGHT")
    parser.add_argument("--out", default=str(REPO / "docs" / "images" / "campaign.png"))
    args = parser.parse_args(argv)
    if sys.platform.startswith("linux") and not os.environ.get("DISPLAY"):
        print('no display: run under `xvfb-run -a -s "-screen 0 1920x1200x24" python scripts/screenshot_campaign.py`',
              file=sys.stderr)  # fmt: skip
        return 2
    scratch = Path(tempfile.mkdtemp(prefix="emosem-screenshot-"))
    os.environ["EMOSEM_CACHE_DIR"] = str(scratch / "cache")
    os.environ["EMOSEM_DATA_DIR"] = str(scratch / "data")
    os.environ["NAPARI_CONFIG"] = str(scratch / "napari" / "settings.yaml")
    root = scratch / "cezanne-campaign"
    build(root, scratch)

    import napari
    from napari.settings import get_settings

    from napari_emosem._qt.annotator import EmoSEMAnnotator
    from napari_emosem._qt.settings import Settings

    get_settings().application.gui_notification_level = "error"  # no toast over the painting
    width, height = (int(v) for v in args.size.lower().split("x"))
    viewer = napari.Viewer(title="napari-emosem — a campaign", show=True)
    settings = Settings(backend=False)
    settings.model, settings.device, settings.annotator = "starter", "cpu", "ana"
    widget = EmoSEMAnnotator(viewer, settings=settings, synchronous=False)
    viewer.window.add_dock_widget(widget, name="EmoSEM annotator", area="right")
    widget.window().resize(width, height)

    settle(1.0)
    widget.open_dataset(root)
    nav = widget.campaign
    following = nav.campaign.paintings[nav.peek(1)].painting.file_name
    settle(120, until=lambda: widget.controller.prefetch.ready(following))
    widget.select_emotion(args.select)
    viewer.reset_view()
    settle(1.5)
    out = save_window(viewer, args.out)
    print(f"wrote {out}: {nav.campaign.progress.summary_line()}")
    nav.leave()
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A campaign of APOLO's size in napari: how long opening it and Next take, and what dominates.

Targets (issue 12): a campaign of 5,000 paintings opens in napari in ≤ 1 s, and Next shows a
prefetched painting with its proposals in ≤ 0.3 s, on a 2-core CPU.

Uses the campaign ``benchmarks/bench_campaign.py`` generates (5,000 paintings × 8 emotions,
640 × 480, every pair a draft, a fifth reviewed), copied first (images hard-linked) since Next
writes into it, plus ``--new`` paintings added without records (*not started*: their drafts are
the model's, prefetched). In one napari session (threaded, as users run it; ``tiny`` model):

  open        ``widget.open_dataset(root)`` until the canvas has drawn the first painting (the
              navigator listing all paintings), and until each of its stimulus layers is shown
  next        Next from a painting with one decision (so it is saved) to the next one, prefetched
              (decoded and encoded; its drafts from the dataset), until its layers are shown
  next, new   the same among the not-started paintings: the prefetch proposed and drafted them

Each phase is split into what the campaign's dataset costs (``StimulusDataset``: open, statuses,
saving the painting left) and what the napari side costs (session, layers, navigator, drawing). Run under a display
(``xvfb-run -a python benchmarks/bench_campaign_ui.py``). Prints a table and writes
``benchmarks/results/bench_campaign_ui.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
#: per run: until the painting is on screen, the part of it not spent in the dataset, until its
#: stimulus layers are all shown
KEYS = ("on_screen_s", "napari_side_on_screen_s", "layers_shown_s")


def copy_campaign(source: Path, target: Path) -> None:
    """A writable copy: annotations.json copied, images hard-linked (a write replaces files, it
    never changes one in place, so the source stays as it was)."""
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    shutil.copy2(source / "annotations.json", target / "annotations.json")
    shutil.copytree(source / "images", target / "images", copy_function=os.link)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--source", default="/tmp/emosem-campaign-5000", help="bench_campaign.py's campaign")
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--new", type=int, default=6, help="not-started paintings added for the 'next, new' phase")
    parser.add_argument("--repeat", type=int, default=4, help="Nexts timed per phase")
    parser.add_argument("--out", default=str(HERE / "results" / "bench_campaign_ui.json"))
    args = parser.parse_args(argv)
    if sys.platform.startswith("linux") and not os.environ.get("DISPLAY"):
        print("no display: run this under `xvfb-run -a python benchmarks/bench_campaign_ui.py`", file=sys.stderr)
        return 2
    source = Path(args.source)
    if not (source / "annotations.json").exists():
        print(f"{source}: generate it first with `python benchmarks/bench_campaign.py`", file=sys.stderr)
        return 2
    scratch = Path(tempfile.mkdtemp(prefix="emosem-bench-ui-"))
    os.environ["EMOSEM_CACHE_DIR"] = str(scratch / "cache")
    os.environ["EMOSEM_DATA_DIR"] = str(scratch / "data")
    os.environ.pop("EMOSEM_SYNC_WORKERS", None)
    try:
        return run(args, source, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)  # a 43 MB copy and 5,000 links, whatever happened


def run(args, source: Path, scratch: Path) -> int:
    root = scratch / "campaign"
    copy_campaign(source, root)

    import napari
    import numpy as np
    from PIL import Image
    from qtpy.QtWidgets import QApplication

    from napari_emosem._qt.annotator import EmoSEMAnnotator
    from napari_emosem._qt.settings import Settings
    from napari_emosem.campaign import add_paintings
    from napari_emosem.data import StimulusDataset

    # not-started paintings: new names, the campaign's own image files
    new_dir = scratch / "new"
    new_dir.mkdir()
    rng = np.random.default_rng(1)
    for i in range(args.new):
        Image.fromarray(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)).save(new_dir / f"new-{i:02d}.jpg")
    add_paintings(StimulusDataset.open(root), sorted(new_dir.iterdir()))

    viewer = napari.Viewer(show=True)
    app = QApplication.instance()
    settings = Settings(backend=False)
    settings.model, settings.device, settings.annotator = args.model, "cpu", "bench"
    widget = EmoSEMAnnotator(viewer, settings=settings, synchronous=False)
    viewer.window.add_dock_widget(widget, name="EmoSEM annotator", area="right")
    controller = widget.controller
    binder, navigation = controller.binder, controller.campaign

    # what each part costs, by wrapping the methods that do it
    spent: dict[str, float] = {}

    def timed(label, owner, name):
        method = getattr(owner, name)

        def run(*a, **k):
            t0 = time.perf_counter()
            try:
                return method(*a, **k)
            finally:
                spent[label] = spent.get(label, 0.0) + time.perf_counter() - t0

        setattr(owner, name, run)

    from napari_emosem import campaign as campaign_core
    from napari_emosem._qt import campaign as campaign_qt

    timed("dataset: open (parse + validate)", StimulusDataset, "open")
    timed("dataset: every painting's status", campaign_qt, "campaign_progress")
    timed("dataset: save the painting left", StimulusDataset, "write_paintings")
    timed("dataset: one painting's status", campaign_qt, "painting_status")
    timed("session: image, records, drafts", navigation, "_session_for")
    timed("napari: painting shown (image, layers, selection)", navigation, "_show")
    timed("navigator: filter + list", navigation.listing, "refilter")
    timed("layers: carried over / shown", binder, "repaint")
    timed("layers: shown one per turn", binder, "_show_next")
    binder._mask_timer.timeout.disconnect()  # the binder's timer calls the timed method from now on
    binder._mask_timer.timeout.connect(lambda: binder._show_next())
    del campaign_core

    def pump(condition, limit=120.0):
        start = time.perf_counter()
        while condition() and time.perf_counter() - start < limit:
            app.processEvents()
            time.sleep(0.001)

    def shown() -> bool:
        return not binder._queue and binder._hidden is None and not binder._mask_timer.isActive()

    # when the canvas last finished drawing (napari's vispy canvas: a private attribute, read here only)
    drawn: list[float] = []
    viewer.window._qt_viewer.canvas._scene_canvas.events.draw.connect(
        lambda event: drawn.append(time.perf_counter()), position="last"
    )

    def measure(action) -> dict:
        spent.clear()
        app.processEvents()
        t0 = time.perf_counter()
        action()
        drawn.clear()
        pump(lambda: not drawn)  # the first draw after the action: the painting is on screen
        first = drawn[0] - t0
        pump(lambda: not shown())
        app.processEvents()
        total = time.perf_counter() - t0
        dataset = sum(v for k, v in spent.items() if k.startswith("dataset:"))
        return {
            "on_screen_s": round(first, 3),
            "layers_shown_s": round(total, 3),
            "napari_side_on_screen_s": round(first - dataset, 3),
            "parts_s": {k: round(v, 3) for k, v in spent.items()},
        }

    # the model loads when the annotator opens: its job starts on the first event-loop turn
    pump(lambda: controller.cache.loaded is None, 120)
    pump(lambda: controller.jobs.busy, 60)
    results: dict = {}
    results["open"] = measure(lambda: widget.open_dataset(root))
    n_paintings = len(navigation.campaign.paintings)
    summary = navigation.campaign.progress.summary_line()
    print(f"opened {n_paintings:,} paintings at {widget.session.file_name}; {summary}")

    def ready(name):
        pump(lambda: not controller.prefetch.ready(name), 300)

    def next_runs(label: str, *, decide: bool = True) -> None:
        runs = []
        for _ in range(args.repeat):
            nxt = navigation.campaign.paintings[navigation.peek(1)].painting.file_name
            ready(nxt)
            if decide:  # one decision: the painting left is saved
                controller.decide("accepted", navigation.campaign.emotions[0])
            runs.append(measure(navigation.next))
            assert widget.session.file_name == nxt, (widget.session.file_name, nxt)
        results[label] = {
            "runs": runs,
            **{f"median_{k}": round(statistics.median(r[k] for r in runs), 3) for k in KEYS},
        }

    next_runs("next")
    next_runs("next, nothing to save", decide=False)
    navigation.set_filter(status="not started")
    navigation.go(navigation.campaign.paintings[navigation.visible[0]].painting.file_name)
    controller.propose()  # the first not-started painting was not prefetched: propose it here
    pump(lambda: controller.busy or not shown(), 300)
    next_runs("next, new")
    drafts = len(widget.session.emotions())

    print(f"{'phase (s)':<22} {'on screen':>9} {'of it napari':>12} {'layers shown':>12}   a run's parts (s)")
    for label in ("open", "next", "next, nothing to save", "next, new"):
        r = results[label]
        row = r if label == "open" else r["runs"][len(r["runs"]) // 2]
        first, ui, total = (r[k] if label == "open" else r[f"median_{k}"] for k in KEYS)
        parts = ", ".join(f"{k} {v:.3f}" for k, v in sorted(row["parts_s"].items(), key=lambda kv: -kv[1]))
        print(f"{label:<22} {first:9.3f} {ui:12.3f} {total:12.3f}   {parts}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "paintings": n_paintings, "model": args.model, "drafts_on_new_painting": drafts,
        "qt": os.environ.get("QT_API", ""), "cpu": platform.processor() or platform.machine(),
        "machine": platform.platform(), "cores": os.cpu_count(), **results,
    }, indent=1))  # fmt: skip
    print(f"wrote {out}")
    viewer.close()  # the painting shown is saved as it leaves; the annotator stops its workers
    return 0


if __name__ == "__main__":
    sys.exit(main())

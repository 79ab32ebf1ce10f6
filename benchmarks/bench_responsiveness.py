"""Does the viewer stay responsive while EmoSEM proposes? A Qt event-loop probe says.

A QTimer fires every 10 ms on the GUI thread and records when it actually ran; the gaps between
runs are how long the event loop could not react (a click, a repaint). While the annotator
proposes all 8 emotions (masks and explanations) for a 1024 × 1024 painting in its thread
worker, the longest gap should stay under 100 ms.

Scenarios, in one napari session:
  open         the annotator just opened: it loads the model (and torch) in a worker
  idle         the probe alone (the floor: timer resolution and napari's own work)
  first        the first propose: loads torch and the model, encodes the painting
  again        a second propose of the same painting (embedding from the cache)
  other        a different painting (encoded, model already loaded)

Run under a display (on a headless machine: ``xvfb-run -a python benchmarks/bench_responsiveness.py``).
Prints a table and writes ``benchmarks/results/responsiveness.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="tiny", help="model spec (default: tiny)")
    parser.add_argument("--size", type=int, default=1024, help="painting side in pixels (default 1024)")
    parser.add_argument("--interval-ms", type=float, default=10.0, help="probe period")
    parser.add_argument("--emotions", default="all", help="emotions to propose (default all 8)")
    parser.add_argument("--out", default=str(HERE / "results" / "responsiveness.json"))
    args = parser.parse_args(argv)

    if sys.platform.startswith("linux") and not os.environ.get("DISPLAY"):
        print("no display: run this under `xvfb-run -a python benchmarks/bench_responsiveness.py`", file=sys.stderr)
        return 2
    # A fresh cache, so that "first" really encodes; user data (autosaves) out of the way too.
    scratch = tempfile.mkdtemp(prefix="emosem-bench-")
    os.environ["EMOSEM_CACHE_DIR"] = os.path.join(scratch, "cache")
    os.environ["EMOSEM_DATA_DIR"] = os.path.join(scratch, "data")
    os.environ.pop("EMOSEM_SYNC_WORKERS", None)

    import napari
    from qtpy.QtCore import QElapsedTimer, QTimer
    from qtpy.QtWidgets import QApplication

    from napari_emosem._qt.settings import Settings
    from napari_emosem._widget import EmoSEMAnnotator
    from napari_emosem.emotions import parse_emotions
    from napari_emosem.samples import landscape, storm

    emotions = parse_emotions(args.emotions)
    paintings = {
        "valley": landscape(height=args.size, width=args.size, seed=1),
        "storm": storm(height=args.size, width=args.size, seed=2),
    }
    viewer = napari.Viewer(show=True)
    layers = {name: viewer.add_image(rgb, name=name, rgb=True) for name, rgb in paintings.items()}
    widget = EmoSEMAnnotator(viewer, settings=Settings(backend=False), synchronous=False)
    viewer.window.add_dock_widget(widget, name="EmoSEM annotator", area="right")
    widget.set_model(args.model)
    widget.set_device("cpu")
    app = QApplication.instance()


    # Time spent in napari putting masks on screen (creating or updating a Labels layer): the
    # widget's _show. Gaps that overlap it are napari's layer work, the others are everything else
    # (the model in its worker, progress updates, ...).
    clock = QElapsedTimer()
    clock.start()
    spans: list[tuple[float, float]] = []
    original_show = widget._show

    def timed_show(*a, **k):
        t0 = clock.nsecsElapsed() / 1e6
        try:
            return original_show(*a, **k)
        finally:
            spans.append((t0, clock.nsecsElapsed() / 1e6))

    widget._show = timed_show
    # What the task had reported last when a gap happened: attributes the largest gaps.
    steps: list[tuple[float, str]] = []
    original_step = widget._on_step

    def timed_step(step):
        steps.append((clock.nsecsElapsed() / 1e6, step.message))
        return original_step(step)

    widget._on_step = timed_step

    def probe(run=None, *, idle_s: float = 2.0) -> dict:
        spans.clear()
        steps.clear()
        stamps: list[float] = []
        timer = QTimer()
        timer.setInterval(int(args.interval_ms))
        timer.timeout.connect(lambda: stamps.append(clock.nsecsElapsed() / 1e6))
        timer.start()
        start = time.perf_counter()
        if run is None:
            end = start + idle_s
            while time.perf_counter() < end:
                app.processEvents()
                time.sleep(0.001)
        else:
            run()
            # let the worker start, then wait for it (pumping events, as napari's loop would)
            while widget.busy or time.perf_counter() - start < 0.05:
                app.processEvents()
                time.sleep(0.001)
        seconds = time.perf_counter() - start
        timer.stop()
        t = np.asarray(stamps)
        gaps = np.diff(t) if len(t) > 1 else np.zeros(1)
        in_layers = np.zeros(len(gaps), bool)
        for a, b in spans:
            in_layers |= (t[:-1] < b) & (t[1:] > a)
        model_gaps = gaps[~in_layers] if (~in_layers).any() else np.zeros(1)
        largest = []
        for i in np.argsort(gaps)[::-1][:5]:
            before = [m for at, m in steps if at <= t[i + 1]]
            largest.append({
                "gap_ms": round(float(gaps[i]), 1),
                "during_layer_update": bool(in_layers[i]),
                "after_step": before[-1] if before else "(task starting)",
            })
        layer_gaps = gaps[in_layers] if in_layers.any() else np.zeros(1)
        return {
            "seconds": round(seconds, 3),
            "ticks": len(stamps),
            "max_gap_ms": round(float(gaps.max()), 1),
            "p99_gap_ms": round(float(np.percentile(gaps, 99)), 1),
            "p50_gap_ms": round(float(np.percentile(gaps, 50)), 1),
            "gaps_over_100ms": int((gaps > 100).sum()),
            "max_gap_outside_layer_updates_ms": round(float(model_gaps.max()), 1),
            "max_gap_during_layer_updates_ms": round(float(layer_gaps.max()), 1),
            "largest_gaps": largest,
            "layer_updates": len(spans),
            "layer_update_ms": [round(b - a, 1) for a, b in spans],
            "status": widget.status_label.text(),
        }

    def propose(name: str):
        def run():
            widget.set_painting(layers[name])
            widget.propose(list(emotions), replace_protected=True)

        return run

    # "open": the annotator has just opened and imports the model's libraries in a worker
    # (torch's C++ libraries hold the interpreter lock while they load); then napari settles.
    results = {"open": probe(lambda: None)}
    probe(None, idle_s=1.0)
    results["idle"] = probe(None)
    results["first"] = probe(propose("valley"))
    results["again"] = probe(propose("valley"))
    results["other"] = probe(propose("storm"))
    for name, result in results.items():
        if name != "idle" and "failed" in result["status"].lower():
            print(f"{name}: {result['status']}", file=sys.stderr)

    import torch

    report = {
        "benchmark": "responsiveness",
        "model": args.model,
        "painting_px": args.size,
        "emotions": list(emotions),
        "probe_interval_ms": args.interval_ms,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "machine": platform.platform(),
        "python": platform.python_version(),
        "napari": napari.__version__,
        "torch": torch.__version__,
        "target_max_gap_ms": 100,
        "scenarios": results,
    }
    print(f"Qt event-loop gaps while proposing ({args.model}, {args.size} px, {len(emotions)} emotions, "
          f"probe every {args.interval_ms:g} ms, {os.cpu_count()} CPU cores, torch threads {torch.get_num_threads()})")
    print(f"{'scenario':<10} {'seconds':>8} {'ticks':>6} {'max ms':>8} {'p99 ms':>8} {'p50 ms':>8} {'>100 ms':>8}"
          f" {'max w/o layers':>15} {'max in layers':>14} {'layers':>7}")
    for name, r in results.items():
        print(f"{name:<10} {r['seconds']:>8.2f} {r['ticks']:>6} {r['max_gap_ms']:>8.1f} {r['p99_gap_ms']:>8.1f} "
              f"{r['p50_gap_ms']:>8.1f} {r['gaps_over_100ms']:>8} {r['max_gap_outside_layer_updates_ms']:>15.1f}"
              f" {r['max_gap_during_layer_updates_ms']:>14.1f} {r['layer_updates']:>7}")
    worst = max(r["max_gap_ms"] for r in results.values())
    worst_model = max(r["max_gap_outside_layer_updates_ms"] for r in results.values())
    print(f"worst gap {worst:.1f} ms; outside napari's layer updates {worst_model:.1f} ms — target < 100 ms: "
          f"{'met' if worst < 100 else 'NOT met'}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {out}")
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

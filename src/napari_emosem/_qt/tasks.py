"""The model work the annotator runs off the GUI thread, as generators.

Each function is a generator for ``napari.qt.threading.create_worker``: every ``yield`` is a
progress step and the point where Cancel takes effect. They import no Qt and touch no napari
layer: they receive the pixels and return proposals, which the widget applies on the GUI thread.
Errors the user can cause (bad checkpoint, missing weights offline, ...) are *returned* as a
:class:`Failed` step rather than raised, so that the viewer shows one clear message, not a
traceback; anything else is a bug and is raised.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import EmoSEMError

#: the longest the worker waits for the GUI to show the masks before drafting explanations
MASKS_SHOWN_TIMEOUT_S = 30.0
from ..predictor import Predictor, Proposal


@dataclass(frozen=True)
class Step:
    """A progress report from a running task."""

    message: str
    #: "loaded", "encoded", "masks", "explanation", "refined"
    kind: str = "progress"
    proposals: tuple[Proposal, ...] = ()
    emotion: str | None = None
    text: str = ""
    #: the model's ``source`` and ``description`` (on the "loaded" step)
    source: str = ""
    model: str = ""


@dataclass(frozen=True)
class Done:
    """What a finished task returns."""

    message: str
    source: str
    model: str
    seconds: float
    proposals: tuple[Proposal, ...] = ()
    texts: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Failed:
    """A task stopped by an error the user can fix (the message says how)."""

    message: str


class PredictorHolder:
    """Keeps one loaded predictor (per model spec and device) and the painting it was given.

    Used from one worker at a time: the widget starts a task only when the previous one has
    finished. (No lock: a cancelled task stays suspended at a ``yield``, and a lock held across
    that yield would block every later task.)
    """

    def __init__(self, loader: Callable[..., Predictor] | None = None):
        self._loader = loader
        self._key: tuple[str, str] | None = None
        self._predictor: Predictor | None = None
        self._digest: str | None = None

    def predictor(self, spec: str, device: str) -> tuple[Predictor, bool]:
        """The predictor for (spec, device), loading it if needed; also says whether it loaded."""
        key = (str(spec), str(device))
        if self._predictor is not None and self._key == key:
            return self._predictor, False
        loader = self._loader
        if loader is None:
            from ..loading import load_predictor as loader
        self._predictor = None
        self._digest = None
        self._predictor = loader(spec, device=device)
        self._key = key
        return self._predictor, True

    def set_image(self, predictor: Predictor, rgb: np.ndarray, digest: str) -> bool:
        """Give the painting to the predictor unless it already has it; True if it did work."""
        if self._digest == digest:
            return False
        self._digest = None
        predictor.set_image(rgb)
        self._digest = digest
        return True

    def forget(self) -> None:
        """Drop the loaded model (e.g. after the user changed its files)."""
        self._predictor, self._key, self._digest = None, None, None


def keep_triton_out() -> None:
    """Stop torch from importing triton in the napari process.

    triton bundles its own LLVM; loading it into a process where Mesa's OpenGL driver (llvmpipe
    under Xvfb, radeonsi on AMD GPUs) has already loaded LLVM crashes the process (seen here:
    a segfault in ``triton/_C/libtriton`` as soon as torch probes for triton). EmoSEM never uses
    triton (it only serves ``torch.compile`` kernels), and a ``None`` entry in ``sys.modules``
    is Python's documented way to make ``import triton`` raise ImportError, which torch treats
    as "triton is not installed".
    """
    import sys

    sys.modules.setdefault("triton", None)


def _limit_threads() -> None:
    # Leave one core to the GUI thread: on small machines torch's intra-op threads would
    # otherwise compete with the event loop for every core.
    import os
    import sys

    torch = sys.modules.get("torch")
    if torch is None:  # a model without torch (the starter): nothing to limit
        return
    cores = os.cpu_count() or 1
    wanted = max(1, cores - 1)
    if torch.get_num_threads() > wanted:
        torch.set_num_threads(wanted)


def propose_task(
    holder: PredictorHolder,
    spec: str,
    device: str,
    rgb: np.ndarray,
    digest: str,
    emotions: Sequence[str],
    *,
    explain: bool = True,
    masks_shown: threading.Event | None = None,
) -> Iterator[Step]:
    """Load the model, encode the painting, decode a mask per emotion, then draft each explanation.

    Yields ``3 + len(emotions)`` steps when ``explain`` (3 otherwise); returns :class:`Done` or
    :class:`Failed`. Masks arrive in one step (one decoder call); explanations one per step, so
    Cancel stops between two explanations. ``masks_shown``, when given, is waited for after the
    masks step: the GUI sets it once it has put the masks on screen, so that drafting does not
    compete with napari's layer creation for the interpreter (the GIL) meanwhile.
    """
    start = time.perf_counter()
    try:
        keep_triton_out()
        predictor, loaded = holder.predictor(spec, device)
        _limit_threads()
        yield Step(
            f"{'loaded' if loaded else 'using'} {predictor.description}",
            kind="loaded",
            source=predictor.source,
            model=predictor.description,
        )
        t0 = time.perf_counter()
        encoded = holder.set_image(predictor, rgb, digest)
        cached = getattr(predictor, "from_cache", False)
        how = "from the embedding cache" if (encoded and cached) else ("encoded" if encoded else "already encoded")
        yield Step(f"painting {how} ({time.perf_counter() - t0:.1f} s)", kind="encoded")
        proposals = tuple(predictor.propose(list(emotions), explain=False))
        yield Step(f"{len(proposals)} masks proposed", kind="masks", proposals=proposals)
        if masks_shown is not None:
            # bounded: a GUI that never answers must not hang the worker for good
            masks_shown.wait(timeout=MASKS_SHOWN_TIMEOUT_S)
        texts: dict[str, str] = {}
        if explain:
            for proposal in proposals:
                text = predictor.explain(proposal.emotion, proposal.mask)
                texts[proposal.emotion] = text
                yield Step(f"explained {proposal.emotion}", kind="explanation", emotion=proposal.emotion, text=text)
    except EmoSEMError as exc:
        return Failed(str(exc))
    return Done(
        message=f"proposed {', '.join(p.emotion for p in proposals)}",
        source=predictor.source,
        model=predictor.description,
        seconds=time.perf_counter() - start,
        proposals=proposals,
        texts=texts,
    )


def refine_task(
    holder: PredictorHolder,
    spec: str,
    device: str,
    rgb: np.ndarray,
    digest: str,
    emotion: str,
    points: np.ndarray,
    labels: np.ndarray,
) -> Iterator[Step]:
    """Re-decode one emotion's mask with the annotator's clicks (from the cached embedding)."""
    start = time.perf_counter()
    try:
        keep_triton_out()
        predictor, _ = holder.predictor(spec, device)
        _limit_threads()
        holder.set_image(predictor, rgb, digest)
        yield Step(f"refining {emotion}", kind="encoded")
        proposal = predictor.refine(emotion, np.asarray(points), np.asarray(labels), explain=False)
    except EmoSEMError as exc:
        return Failed(str(exc))
    return Done(
        message=f"refined {emotion} with {len(points)} click{'s' if len(points) != 1 else ''}",
        source=predictor.source,
        model=predictor.description,
        seconds=time.perf_counter() - start,
        proposals=(proposal,),
    )


def explain_task(
    holder: PredictorHolder,
    spec: str,
    device: str,
    rgb: np.ndarray,
    digest: str,
    emotion: str,
    mask: np.ndarray,
) -> Iterator[Step]:
    """Draft an explanation for the annotator's current mask of one emotion."""
    start = time.perf_counter()
    try:
        keep_triton_out()
        predictor, _ = holder.predictor(spec, device)
        _limit_threads()
        holder.set_image(predictor, rgb, digest)
        yield Step(f"drafting the {emotion} explanation", kind="encoded")
        if not np.any(mask):
            return Failed(f"the {emotion} mask is empty: draw the stimulus first, then draft its explanation")
        text = predictor.explain(emotion, mask)
    except EmoSEMError as exc:
        return Failed(str(exc))
    return Done(
        message=f"drafted the {emotion} explanation",
        source=predictor.source,
        model=predictor.description,
        seconds=time.perf_counter() - start,
        texts={emotion: text},
    )


def load_task(holder: PredictorHolder, spec: str, device: str) -> Iterator[Step]:
    """Load the model (and its libraries) before the annotator asks for a proposal.

    Loading torch's C++ libraries and building a model hold the interpreter lock for up to half a
    second at a time, which freezes napari's event loop; done when the annotator opens or picks
    another model, it does not happen in the middle of a propose, and errors (missing weights,
    a bad checkpoint) show up at once.
    """
    start = time.perf_counter()
    yield Step(f"loading {spec}", kind="loading")
    try:
        keep_triton_out()
        predictor, _ = holder.predictor(spec, device)
        _limit_threads()
    except EmoSEMError as exc:
        return Failed(str(exc))
    return Done(
        message=f"ready: {predictor.description}",
        source=predictor.source,
        model=predictor.description,
        seconds=time.perf_counter() - start,
    )


def run_sync(generator: Iterator[Any], on_yield: Callable[[Any], None]) -> Any:
    """Drive a task generator on the calling thread (tests, scripts); returns its return value."""
    while True:
        try:
            value = next(generator)
        except StopIteration as stop:
            return stop.value
        on_yield(value)

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
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import EmoSEMError
from ..predictor import Predictor, Proposal

#: the longest the worker waits for the GUI to show the masks before drafting explanations
MASKS_SHOWN_TIMEOUT_S = 30.0


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
class TrainStep:
    """Progress of a fine-tuning run: one per preparation, training or validation step."""

    message: str
    #: "start" (``run_dir`` known), "message", "prepare", "validate", "train", "epoch"
    stage: str
    epoch: int = 0
    epochs: int = 0
    step: int = 0
    steps: int = 0
    #: validation metrics (on "epoch" steps)
    metrics: dict = field(default_factory=dict)
    run_dir: str = ""


@dataclass(frozen=True)
class Trained:
    """What a finished fine-tuning run returns."""

    message: str
    #: the best checkpoint (:class:`napari_emosem.checkpoint.CheckpointInfo`), None if no epoch ended
    checkpoint: Any
    #: validation metrics before training and of the best epoch ({} without validation paintings)
    before: dict
    after: dict
    epochs_run: int
    stopped_early: bool
    seconds: float
    run_dir: str


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


def finetune_task(
    datasets: Sequence[str],
    base: str,
    device: str,
    *,
    epochs: int,
    options: dict[str, Any] | None = None,
) -> Iterator[TrainStep]:
    """Fine-tune ``base`` (a preset or a checkpoint folder) on the dataset folders.

    Wraps :func:`napari_emosem.finetune.fine_tune`: one :class:`TrainStep` per event, so Cancel
    (``worker.quit``) stops after the current step; finished epochs are already saved. The run
    goes to the user's checkpoints folder; its path comes first (a "start" step), so that the
    widget can list a cancelled run's best epoch. ``options`` are further
    :class:`~napari_emosem.training.TrainConfig` fields. Returns :class:`Trained` or :class:`Failed`.
    """
    start = time.perf_counter()
    try:
        keep_triton_out()
        from ..finetune import fine_tune  # imports torch: only ever in the worker
        from ..training import TrainConfig

        _limit_threads()
        config = TrainConfig(epochs=int(epochs), **(options or {}))
        run_dir = _new_run_dir(base)
        yield TrainStep(f"fine-tuning {Path(base).name} for {config.epochs} epochs", stage="start", run_dir=str(run_dir))
        result = None
        for event in fine_tune(list(datasets), base, run_dir=run_dir, config=config, device=device):
            if event.stage == "done":
                result = event.metrics["result"]
                continue
            yield TrainStep(
                _describe(event),
                stage=event.stage,
                epoch=event.epoch,
                epochs=event.epochs,
                step=event.step,
                steps=event.steps,
                metrics=dict(event.metrics),
            )
    except EmoSEMError as exc:
        return Failed(str(exc))
    if result is None or result.checkpoint is None:
        return Failed(f"fine-tuning ended without a checkpoint (no epoch finished); see {run_dir}")
    pairs = (result.checkpoint.metadata.get("training") or {}).get("pairs")
    return Trained(
        message=f"fine-tuned on {pairs} pairs in {result.epochs_run} epoch{'s' if result.epochs_run != 1 else ''}"
        + (" (stopped early: validation stopped improving)" if result.stopped_early else ""),
        checkpoint=result.checkpoint,
        before=dict(result.before),
        after=dict(result.after),
        epochs_run=result.epochs_run,
        stopped_early=result.stopped_early,
        seconds=time.perf_counter() - start,
        run_dir=str(run_dir),
    )


def _new_run_dir(base: str) -> Path:
    """A fresh run folder, named as :func:`napari_emosem.finetune.fine_tune` names its own."""
    from ..checkpoint import is_checkpoint, read_checkpoint, resolve_checkpoint_dir
    from ..finetune import default_run_dir

    name = base
    if is_checkpoint(resolve_checkpoint_dir(base)):
        name = read_checkpoint(base).id
    run_dir = default_run_dir(name)
    # two runs started within a second (e.g. a cancelled one and the next) must not share a folder
    candidate, n = run_dir, 1
    while candidate.exists():
        n += 1
        candidate = run_dir.with_name(f"{run_dir.name}-{n}")
    return candidate


def _describe(event) -> str:
    if event.stage == "train":
        loss = event.losses.get("loss")
        return f"epoch {event.epoch}/{event.epochs}, step {event.step}/{event.steps}" + (
            f", loss {loss:.3f}" if loss is not None else ""
        )
    if event.stage == "validate":
        when = "before training" if event.epoch == 0 else f"epoch {event.epoch}/{event.epochs}"
        return f"validating ({when}): painting {event.step}/{event.steps}"
    if event.stage == "prepare":
        return f"{event.message or 'preparing paintings'} {event.step}/{event.steps}"
    if event.stage == "epoch":
        miou = event.metrics.get("miou")
        return f"epoch {event.epoch}/{event.epochs} done" + (f": validation mIoU {miou:.3f}" if miou is not None else "")
    return event.message


def run_sync(generator: Iterator[Any], on_yield: Callable[[Any], None]) -> Any:
    """Drive a task generator on the calling thread (tests, scripts); returns its return value."""
    while True:
        try:
            value = next(generator)
        except StopIteration as stop:
            return stop.value
        on_yield(value)

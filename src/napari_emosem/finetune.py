"""Fine-tuning as one call: what ``emosem train`` and the widget's Fine-tune button share.

Runs land in the user data folder (``paths.checkpoints_dir()``, never the working directory)
unless a folder is given; each run folder's ``best/`` is the checkpoint. Everything a user can get
wrong (the settings, the base, the data, the run folder, a damaged state to resume) is checked
before a model is built or a painting encoded.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path

from .config import DEFAULT_BASE, PRESETS, STARTER
from .errors import TrainingError
from .training import TrainConfig, Trainer, TrainEvent, from_datasets


def check_base(spec: str | os.PathLike):
    """Cheap check of what training starts from: a preset (returns None) or a checkpoint folder
    (returns its :class:`~napari_emosem.checkpoint.CheckpointInfo`; metadata and config checked)."""
    spec = str(spec)
    if spec == STARTER:
        raise TrainingError(
            f"'{STARTER}' has no trainable weights; train from {', '.join(PRESETS)} or a checkpoint folder "
            f"({DEFAULT_BASE} for real paintings)"
        )
    if spec in PRESETS:
        return None
    from .checkpoint import read_checkpoint, read_config

    if not Path(spec).expanduser().exists():
        raise TrainingError(f"base {spec!r} is neither a preset ({', '.join(PRESETS)}) nor a checkpoint folder")
    info = read_checkpoint(spec)
    read_config(info.path)
    return info


def load_base(
    spec: str | os.PathLike,
    *,
    seed: int = 0,
    sam_checkpoint: str | os.PathLike | None = None,
    language_model: str | None = None,
    train_lm: bool = False,
):
    """``(model, identity, parent checkpoint or None)`` to train from a preset or a checkpoint."""
    spec = str(spec)
    check_base(spec)
    if spec in PRESETS:
        from .build import build_emosem
        from .config import get_preset

        config = get_preset(spec).replace(seed=seed)
        if language_model:
            config = config.replace(language=dataclasses.replace(config.language, model=language_model))
        model, identity = build_emosem(config, sam_checkpoint=sam_checkpoint)
        parent = None
    else:
        from .checkpoint import load_checkpoint

        model, identity, parent = load_checkpoint(spec, sam_checkpoint=sam_checkpoint, language_model=language_model)
    if train_lm and not model.config.language.train:
        model.config = model.config.replace(language=dataclasses.replace(model.config.language, train=True))
        model.set_trainable()
    return model, identity, parent


def default_run_dir(base: str | os.PathLike) -> Path:
    """A new run folder in the user data folder: ``<time>-<base>``, where a checkpoint base is
    named by its id; two runs started in the same second get ``-2``, ``-3``…"""
    from . import paths

    name = Path(str(base)).name
    if str(base) not in PRESETS and str(base) != STARTER:
        from .checkpoint import is_checkpoint, read_checkpoint, resolve_checkpoint_dir
        from .errors import CheckpointError

        if is_checkpoint(resolve_checkpoint_dir(base)):
            with contextlib.suppress(CheckpointError):  # fine_tune reports it; the folder name does not need it
                name = read_checkpoint(base).id
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    run = paths.checkpoints_dir() / f"{stamp}-{name}"
    n = 2
    while run.exists():  # two runs in the same second must not share (or resume) a folder
        run = run.with_name(f"{stamp}-{name}-{n}")
        n += 1
    return run


def check_run_dir(run: Path, *, resume: bool) -> None:
    """Refuse to overwrite another run unless resuming it, and prove the folder is writable."""
    from ._io import check_writable_dir
    from .training.state import has_state

    if not resume and has_state(run):
        raise TrainingError(f"{run} already holds a run; add --resume to continue it, or choose another --out")
    if run.exists() and not run.is_dir():
        raise TrainingError(f"{run} is a file, not a run folder; choose another --out")
    check_writable_dir(run)


def fine_tune(
    datasets: Sequence[str | os.PathLike],
    base: str | os.PathLike = DEFAULT_BASE,
    *,
    run_dir: str | os.PathLike | None = None,
    config: TrainConfig | None = None,
    device: str = "auto",
    resume: bool = False,
    cache=None,
    include_unreviewed: bool = False,
    sam_checkpoint: str | os.PathLike | None = None,
    language_model: str | None = None,
    train_lm: bool = False,
) -> Iterator[TrainEvent]:
    """Train ``base`` on the reviewed pairs of ``datasets`` (and the unreviewed drafts too when
    ``include_unreviewed``). A generator of :class:`~napari_emosem.training.TrainEvent`:

    - first ``stage == "data"``: ``message`` is "training on N reviewed pairs from P paintings;
      M unreviewed drafts left out" (:func:`napari_emosem.reporting.training_data_line`),
      ``run_dir`` the run folder, ``metrics`` the counts (``TrainingData.summary``);
    - then a "message" naming the model and device, and the Trainer's events, each with
      ``done``/``total`` for the whole run;
    - last ``stage == "done"``: ``metrics["result"]`` is the
      :class:`~napari_emosem.training.TrainResult` (``result.data`` holds the counts again).
    """
    from .devices import resolve_device
    from .reporting import training_data_line
    from .training.trainer import check_resumable

    config = config or TrainConfig()
    device = resolve_device(device)
    check_base(base)  # a typo or a damaged checkpoint costs nothing
    data = from_datasets(datasets, include_unreviewed=include_unreviewed)
    if resume and run_dir is None:
        raise TrainingError("resuming needs the folder of the run to continue (--out RUN)")
    run = Path(run_dir).expanduser() if run_dir is not None else default_run_dir(base)
    existed = run.exists()
    check_run_dir(run, resume=resume)
    if resume:
        check_resumable(run, data, config)
    yield TrainEvent("data", message=training_data_line(data.summary), metrics=dict(data.summary), run_dir=str(run))
    try:
        model, identity, parent = load_base(
            base, seed=config.seed, sam_checkpoint=sam_checkpoint, language_model=language_model, train_lm=train_lm
        )
    except BaseException:
        if not existed:  # no model, no run: leave no empty folder behind (another process may be first)
            with contextlib.suppress(OSError):
                run.rmdir()
        raise
    trainer = Trainer(model, identity, data, config, run, parent=parent, device=device, resume=resume, cache=cache)
    yield TrainEvent("message", message=_start_line(trainer, parent, run))
    yield from trainer.run()


def _start_line(trainer: Trainer, parent, run: Path) -> str:
    """"from vit_b (continuing …) on cpu × 2 processes into RUN"."""
    dist = trainer.dist
    return (
        f"from {trainer.model.config.name}"
        + (f" (continuing {parent.label})" if parent else "")
        + f" on {trainer.device}"
        + (f" × {dist.world_size} processes" if dist.enabled else "")
        + f" into {run}"
    )

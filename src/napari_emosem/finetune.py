"""Fine-tuning as one call: what ``emosem train`` and the widget's Fine-tune button share.

Runs land in the user data folder (``paths.checkpoints_dir()``, never the working directory)
unless a folder is given; each run folder's ``best/`` is the checkpoint.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path

from .errors import TrainingError
from .training import TrainConfig, Trainer, TrainEvent, from_datasets


def load_base(
    spec: str | os.PathLike,
    *,
    seed: int = 0,
    sam_checkpoint: str | os.PathLike | None = None,
    language_model: str | None = None,
    train_lm: bool = False,
):
    """``(model, identity, parent checkpoint or None)`` to train from a preset or a checkpoint."""
    from .config import PRESETS, get_preset

    spec = str(spec)
    if spec == "starter":
        raise TrainingError("'starter' has no trainable weights; train from tiny, vit_b, vit_l, vit_h or a checkpoint")
    if spec in PRESETS:
        from .build import build_emosem

        config = get_preset(spec).replace(seed=seed)
        if language_model:
            config = config.replace(language=dataclasses.replace(config.language, model=language_model))
        model, identity = build_emosem(config, sam_checkpoint=sam_checkpoint)
        parent = None
    else:
        from .checkpoint import load_checkpoint

        if not Path(spec).expanduser().exists():
            raise TrainingError(f"base {spec!r} is neither a preset ({', '.join(PRESETS)}) nor a checkpoint folder")
        model, identity, parent = load_checkpoint(spec, sam_checkpoint=sam_checkpoint, language_model=language_model)
    if train_lm and not model.config.language.train:
        model.config = model.config.replace(language=dataclasses.replace(model.config.language, train=True))
        model.set_trainable()
    return model, identity, parent


def default_run_dir(base_name: str) -> Path:
    from . import paths

    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    run = paths.checkpoints_dir() / f"{stamp}-{Path(str(base_name)).name}"
    n = 2
    while run.exists():  # two runs in the same second must not share (or resume) a folder
        run = run.with_name(f"{stamp}-{Path(str(base_name)).name}-{n}")
        n += 1
    return run


def fine_tune(
    datasets: Sequence[str | os.PathLike],
    base: str | os.PathLike,
    *,
    run_dir: str | os.PathLike | None = None,
    config: TrainConfig | None = None,
    device: str = "auto",
    resume: bool = False,
    cache=None,
    **base_options,
) -> Iterator[TrainEvent]:
    """Train ``base`` on ``datasets``; yields progress events, the last one ``stage == "done"``
    with ``metrics["result"]`` a :class:`~napari_emosem.training.TrainResult`."""
    from .devices import resolve_device

    data = from_datasets(datasets)  # validate the data before building a model
    model, identity, parent = load_base(base, seed=(config or TrainConfig()).seed, **base_options)
    run = Path(run_dir) if run_dir is not None else default_run_dir(parent.id if parent else base)
    trainer = Trainer(
        model, identity, data, config or TrainConfig(), run, parent=parent, device=resolve_device(device), resume=resume, cache=cache
    )
    yield TrainEvent("message", message=f"training {data.n_pairs} pairs on {len(data.paintings)} paintings into {run}")
    yield from trainer.run()

"""``load_predictor``: from what a user types (a preset, ``starter``, a checkpoint folder) to a Predictor."""

from __future__ import annotations

import os
from pathlib import Path

from .config import MODEL_CHOICES, STARTER
from .errors import CheckpointError
from .predictor import Predictor


def load_predictor(
    spec: str | os.PathLike = "starter",
    *,
    device: str = "auto",
    sam_checkpoint: str | os.PathLike | None = None,
    language_model: str | None = None,
    cache=None,
    num_beams: int = 1,
    max_new_tokens: int | None = None,
    precision: str = "fp32",
) -> Predictor:
    """Build the Predictor named by ``spec``.

    - ``"starter"``: the cold-start model (no learned weights; uses SAM's automatic masks when a
      SAM checkpoint is cached or given, scikit-image regions otherwise);
    - ``"tiny"``, ``"vit_b"``, ``"vit_l"``, ``"vit_h"``: an EmoSEM preset (untrained prompt/adapter);
    - a folder: an EmoSEM checkpoint written by ``emosem train`` or the widget.

    ``precision``: ``fp32`` (the reference, default here), ``bf16`` or ``auto`` (what
    ``emosem propose`` and the annotator's setting default to), for EmoSEM on a CPU; see
    :mod:`napari_emosem.precision`. The starter has no such choice.
    """
    from .devices import resolve_device

    spec_str = str(spec)
    if spec_str == STARTER:
        return _starter(sam_checkpoint, device)
    from .precision import check_precision

    check_precision(precision)  # before any loading: a typo costs nothing
    device = resolve_device(device)
    from .config import PRESETS, get_preset
    from .emosem_predictor import EmoSEMPredictor

    common = dict(device=device, cache=cache, num_beams=num_beams, max_new_tokens=max_new_tokens, precision=precision)
    if spec_str in PRESETS:
        from .build import build_emosem

        config = get_preset(spec_str)
        if language_model is not None:
            import dataclasses

            config = config.replace(language=dataclasses.replace(config.language, model=language_model))
        model, identity = build_emosem(config, sam_checkpoint=sam_checkpoint)
        return EmoSEMPredictor(model, identity, **common)
    path = Path(spec_str).expanduser()
    if not path.exists():
        raise CheckpointError(
            f"model {spec_str!r} is neither a preset ({', '.join(MODEL_CHOICES)}) nor an existing checkpoint folder"
        )
    from .checkpoint import load_checkpoint

    model, identity, info = load_checkpoint(path, sam_checkpoint=sam_checkpoint, language_model=language_model)
    return EmoSEMPredictor(model, identity, checkpoint=info, **common)


def _starter(sam_checkpoint, device) -> Predictor:
    """The cold start. SAM's automatic masks need a checkpoint that is already here (the cold
    start never downloads) and a GPU, unless a checkpoint is given explicitly: on a CPU SAM's
    ~14 s encode plus hundreds of point prompts would break the starter's 2-second promise."""
    from .starter import StarterPredictor

    if sam_checkpoint is None:
        if device == "cpu":
            return StarterPredictor()
        from .devices import resolve_device
        from .weights import cached_path

        device = resolve_device(device)
        cached = cached_path("vit_b")
        if device != "cuda" or cached is None:
            return StarterPredictor()
        return StarterPredictor(sam_checkpoint=cached, sam_model_type="vit_b", device=device)
    from .devices import resolve_device
    from .weights import SAM_WEIGHTS, registry_name_for_hash, resolve

    path, sha = resolve(sam_checkpoint)
    kind = registry_name_for_hash(sha) or (sam_checkpoint if sam_checkpoint in SAM_WEIGHTS else "vit_b")
    return StarterPredictor(sam_checkpoint=path, sam_model_type=kind, device=resolve_device(device))

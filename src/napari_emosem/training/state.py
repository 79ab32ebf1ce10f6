"""Resumable training state without pickle: tensors in safetensors, everything else in JSON.

Written at the end of every epoch into ``<run>/state/``, replaced atomically (see
:mod:`napari_emosem.atomic_folder`), so a run killed at any moment resumes from its last finished
epoch.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from ..errors import TrainingError

STATE_DIR = "state"


def save_state(run_dir: Path, model, optimizer: torch.optim.Optimizer, info: dict) -> None:
    from safetensors.torch import save_file

    from ..atomic_folder import replacing_folder

    with replacing_folder(run_dir / STATE_DIR) as tmp:
        weights = {k: v.detach().cpu().contiguous() for k, v in model.trainable_state_dict().items()}
        save_file(weights, str(tmp / "weights.safetensors"))
        opt = optimizer.state_dict()
        tensors, scalars = {}, {}
        for index, entry in opt["state"].items():
            for name, value in entry.items():
                if torch.is_tensor(value):
                    tensors[f"{index}.{name}"] = value.detach().cpu().contiguous()
                else:
                    scalars[f"{index}.{name}"] = value
        save_file(tensors, str(tmp / "optimizer.safetensors"))
        info = dict(info, optimizer_scalars=scalars)
        (tmp / "state.json").write_text(json.dumps(info, indent=1) + "\n")


def read_state_info(run_dir: str | os.PathLike) -> dict:
    """The JSON part of a run's state, checked; :class:`TrainingError` if it is damaged."""
    folder = Path(run_dir) / STATE_DIR
    try:
        info = json.loads((folder / "state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:
        raise _damaged(run_dir, f"state.json unreadable: {type(exc).__name__}") from None
    if not isinstance(info, dict):
        raise _damaged(run_dir, "state.json is not an object")
    kinds = {
        "epoch": int, "global_step": int, "bad_epochs": int, "history": list, "data_hash": str,
        "config": dict, "optimizer_scalars": dict, "best": (dict, type(None)), "before": (dict, type(None)),
    }
    for key, kind in kinds.items():
        value = info.get(key)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise _damaged(run_dir, f"state.json field {key!r} is {value!r}")
    if info["epoch"] < 1 or info["global_step"] < 0 or info["bad_epochs"] < 0:
        raise _damaged(run_dir, "state.json counts are negative")
    best = info["best"]
    if best is not None and not (isinstance(best.get("epoch"), int) and isinstance(best.get("val"), dict)):
        raise _damaged(run_dir, "state.json field 'best' is malformed")
    if not all(isinstance(h, dict) for h in info["history"]):
        raise _damaged(run_dir, "state.json field 'history' is malformed")
    return info


def load_state(run_dir: Path, model, optimizer: torch.optim.Optimizer) -> dict:
    """Restore weights and optimizer; return the saved info. :class:`TrainingError` if the state
    is damaged or belongs to another model."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = run_dir / STATE_DIR
    info = read_state_info(run_dir)
    try:
        weights = load_file(str(folder / "weights.safetensors"))
        tensors = load_file(str(folder / "optimizer.safetensors"))
    except (SafetensorError, OSError, ValueError) as exc:
        raise _damaged(run_dir, f"tensors unreadable: {type(exc).__name__}") from None
    expected = model.trainable_state_dict()
    if weights.keys() != expected.keys() or any(weights[k].shape != expected[k].shape for k in expected):
        raise _damaged(run_dir, "its weights do not fit this model: was it started from another base?")
    state: dict[int, dict] = {}
    try:
        for key, value in [*tensors.items(), *info.pop("optimizer_scalars").items()]:
            index, name = key.split(".", 1)
            state.setdefault(int(index), {})[name] = value
        model.load_state_dict(weights, strict=False)
        current = optimizer.state_dict()
        optimizer.load_state_dict({"state": state, "param_groups": current["param_groups"]})
    except (ValueError, KeyError, RuntimeError) as exc:
        raise _damaged(run_dir, f"optimizer state does not fit: {type(exc).__name__}") from None
    return info


def has_state(run_dir: str | os.PathLike) -> bool:
    from ..atomic_folder import clean_interrupted

    if not (Path(run_dir) / STATE_DIR).exists():
        clean_interrupted(run_dir)  # a save killed between its two renames: finish it
    return (Path(run_dir) / STATE_DIR / "state.json").is_file()


def _damaged(run_dir, why: str) -> TrainingError:
    state = Path(run_dir) / STATE_DIR
    return TrainingError(
        f"{state} is damaged ({why}); it cannot be resumed: start a new run (another --out), or delete {state}"
    )

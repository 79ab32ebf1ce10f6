"""Resumable training state without pickle: tensors in safetensors, everything else in JSON.

Written at the end of every epoch into ``<run>/state/`` (a temporary folder renamed into place),
so a run killed at any moment resumes from its last finished epoch.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch

STATE_DIR = "state"


def save_state(run_dir: Path, model, optimizer: torch.optim.Optimizer, info: dict) -> None:
    from safetensors.torch import save_file

    from ..checkpoint import _swap_into_place

    run_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=run_dir, prefix=".state."))
    try:
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
        _swap_into_place(tmp, run_dir / STATE_DIR)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def load_state(run_dir: Path, model, optimizer: torch.optim.Optimizer) -> dict | None:
    """Restore weights and optimizer; return the saved info, or None when there is no state."""
    from safetensors.torch import load_file

    folder = run_dir / STATE_DIR
    if not (folder / "state.json").is_file():
        return None
    info = json.loads((folder / "state.json").read_text())
    model.load_state_dict(load_file(str(folder / "weights.safetensors")), strict=False)
    tensors = load_file(str(folder / "optimizer.safetensors"))
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    for key, value in info.pop("optimizer_scalars", {}).items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    current = optimizer.state_dict()
    optimizer.load_state_dict({"state": state, "param_groups": current["param_groups"]})
    return info


def has_state(run_dir: str | os.PathLike) -> bool:
    return (Path(run_dir) / STATE_DIR / "state.json").is_file()

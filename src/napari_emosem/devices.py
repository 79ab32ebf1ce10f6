"""Choosing the torch device: ``auto`` takes a GPU when there is one."""

from __future__ import annotations

from .errors import EmoSEMError

DEVICES = ("auto", "cpu", "cuda", "mps")


def resolve_device(name: str | None = "auto") -> str:
    import torch

    name = (name or "auto").lower()
    if name == "auto":
        if torch.cuda.is_available():
            return "cuda"
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return "mps"
        return "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise EmoSEMError(
                "device 'cuda' was asked for but torch sees no CUDA GPU (driver missing, or a CPU-only "
                "torch build); use --device cpu or auto"
            )
        return name
    if name == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise EmoSEMError("device 'mps' was asked for but this machine has no Apple GPU; use cpu or auto")
        return name
    if name == "cpu":
        return name
    raise EmoSEMError(f"unknown device {name!r}: choose one of {', '.join(DEVICES)}")

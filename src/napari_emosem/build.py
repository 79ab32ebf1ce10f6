"""Assemble an EmoSEM from a config: random init, then SAM's pretrained weights where configured."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .config import EmoSEMConfig
from .errors import WeightsError


@dataclass(frozen=True)
class BaseIdentity:
    """What an EmoSEM was built on: checkpoints record it, and loading checks it."""

    encoder: str  # "vit_b", or "tiny (random init, seed 0)"
    encoder_sha256: str | None  # of the SAM .pth, None for random encoders
    language_model: str  # HF id / folder name, or "tiny"

    def to_dict(self) -> dict:
        return {
            "encoder": self.encoder,
            "encoder_sha256": self.encoder_sha256,
            "language_model": self.language_model,
        }


def build_emosem(config: EmoSEMConfig, *, sam_checkpoint: str | os.PathLike | None = None, language_model=None):
    """Return ``(model, identity)``.

    ``sam_checkpoint`` overrides ``config.encoder.weights`` (e.g. a local copy of the file).
    The image encoder, prompt encoder and mask decoder are initialised from it.
    ``language_model``: a ready ``(model, tokenizer)`` pair instead of loading ``config.language``.
    """
    from .modeling import EmoSEM

    spec = sam_checkpoint if sam_checkpoint is not None else config.encoder.weights
    path = sha = None
    if spec is not None:
        from . import weights

        path, sha = weights.resolve(spec)  # first: a missing download should fail fast
    model = EmoSEM(config, language_model=language_model)
    if path is not None:
        load_sam_weights(model, path, config)
        encoder = weights.registry_name_for_hash(sha) or config.encoder.kind
    else:
        encoder = f"{config.encoder.kind} (random init, seed {config.seed})"
    return model, BaseIdentity(encoder, sha, config.language.model)


def load_sam_weights(model, path: Path, config: EmoSEMConfig) -> None:
    """Copy SAM's image encoder, prompt encoder and mask decoder weights into ``model``."""
    from .weights import load_sam_state_dict

    state = load_sam_state_dict(path)
    targets = {
        "image_encoder.": model.image_encoder.vit,
        "prompt_encoder.": model.mask_decoder.prompt_encoder,
        "mask_decoder.": model.mask_decoder.mask_decoder,
    }
    for prefix, module in targets.items():
        part = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        expected = module.state_dict()
        wrong = [k for k, v in part.items() if k in expected and expected[k].shape != v.shape]
        missing = sorted(set(expected) - set(part))
        if wrong or missing:
            found = _guess_kind(state)
            raise WeightsError(
                f"{path} does not fit the '{config.name}' model "
                f"({len(wrong)} weights of another shape, {len(missing)} missing in {prefix.rstrip('.')})"
                + (f": it looks like a SAM {found} checkpoint; use the {found} preset" if found else "")
            )
        module.load_state_dict(part, strict=True)


def _guess_kind(state: dict) -> str | None:
    w = state.get("image_encoder.patch_embed.proj.weight")
    if w is None:
        return None
    return {768: "vit_b", 1024: "vit_l", 1280: "vit_h"}.get(int(w.shape[0]))

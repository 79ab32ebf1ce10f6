"""EmoSEM checkpoints: a folder holding the trainable parts only, never a pickle.

    my-checkpoint/
      config.json        the EmoSEMConfig (architecture, prompt, presets' sizes)
      model.safetensors  trainable weights (prompt, projector, decoder, adapter; the encoder and LM
                         too when they were trained)
      metadata.json      id, version, base encoder + sha256, LM, emotions, parent, training data
                         summary, validation metrics, creation time

Frozen pretrained parts (SAM's encoder, a frozen LM) are referenced by name and hash, not copied:
loading rebuilds them from the registry / Hugging Face and refuses a different encoder or LM.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from .atomic_folder import clean_interrupted, replacing_folder
from .build import BaseIdentity, build_emosem
from .config import EmoSEMConfig
from .errors import CheckpointError, EmoSEMError

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
METADATA_FILE = "metadata.json"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class CheckpointInfo:
    path: Path
    metadata: dict

    @property
    def id(self) -> str:
        return self.metadata["id"]

    @property
    def version(self) -> int:
        return int(self.metadata.get("version", 1))

    @property
    def label(self) -> str:
        """For status lines: ``emosem-tiny-… (v3, fine-tuned on 120 pairs)``."""
        pairs = (self.metadata.get("training") or {}).get("pairs")
        trained = f", fine-tuned on {pairs} pairs" if pairs else ""
        return f"{self.id} (v{self.version}{trained})"


def is_checkpoint(path: str | os.PathLike) -> bool:
    p = Path(path)
    return p.is_dir() and (p / CONFIG_FILE).is_file() and (p / WEIGHTS_FILE).is_file()


def lm_signature(model) -> dict:
    cfg = model.language_model.config
    return {
        "model_type": getattr(cfg, "model_type", None),
        "vocab_size": int(model.language_model.get_input_embeddings().num_embeddings),
        "width": int(model.language_model.get_input_embeddings().embedding_dim),
    }


def save_checkpoint(
    model,
    identity: BaseIdentity,
    folder: str | os.PathLike,
    *,
    parent: CheckpointInfo | None = None,
    training: dict | None = None,
    metrics: dict | None = None,
) -> CheckpointInfo:
    """Write ``folder`` atomically: a kill at any moment leaves the old checkpoint or the new one
    there (see :mod:`napari_emosem.atomic_folder`), and the next save removes what killed saves
    left beside it."""
    from safetensors.torch import save_file

    folder = Path(folder)
    state = {k: v.detach().cpu().contiguous() for k, v in model.trainable_state_dict().items()}
    with replacing_folder(folder) as tmp:
        save_file(state, str(tmp / WEIGHTS_FILE), metadata={"format": "napari-emosem", "version": str(FORMAT_VERSION)})
        weights_hash = _sha256(tmp / WEIGHTS_FILE)
        created = datetime.now(UTC)
        metadata = {
            "format_version": FORMAT_VERSION,
            "id": f"emosem-{model.config.name}-{created:%Y%m%d-%H%M%S}-{weights_hash[:6]}",
            "version": (parent.version + 1) if parent else 1,
            "preset": model.config.name,
            # to the microsecond: two fine-tunes of one preset can finish within one second
            "created": created.isoformat(timespec="microseconds"),
            "base": identity.to_dict(),
            "language_model_signature": lm_signature(model),
            "emotions": list(model.config.emotions),
            "trainable_modules": list(model.trainable_modules()),
            "parent": {"id": parent.id, "path": str(parent.path)} if parent else None,
            "training": training,
            "metrics": metrics,
            "weights_sha256": weights_hash,
        }
        (tmp / CONFIG_FILE).write_text(model.config.to_json() + "\n")
        (tmp / METADATA_FILE).write_text(json.dumps(metadata, indent=1, ensure_ascii=False) + "\n")
    return CheckpointInfo(folder, metadata)


def resolve_checkpoint_dir(folder: str | os.PathLike) -> Path:
    """A checkpoint folder, or a training run folder (its ``best/`` checkpoint)."""
    folder = Path(folder).expanduser()
    if not is_checkpoint(folder) and is_checkpoint(folder / "best"):
        return folder / "best"
    return folder


def read_checkpoint(folder: str | os.PathLike) -> CheckpointInfo:
    """Read a checkpoint's metadata (cheap: no weights), checked field by field. A training run
    folder means its best."""
    given = Path(folder).expanduser()
    folder = resolve_checkpoint_dir(given)
    if not is_checkpoint(folder):
        # a save killed between its two renames (systems without an atomic exchange): finish it
        for where in (given, given / "best"):
            if not where.exists():
                clean_interrupted(where.parent)
        folder = resolve_checkpoint_dir(given)
    if not folder.exists():
        raise CheckpointError(f"{folder}: no such checkpoint folder")
    missing = [f for f in (CONFIG_FILE, WEIGHTS_FILE, METADATA_FILE) if not (folder / f).is_file()]
    if missing:
        raise CheckpointError(
            f"{folder} is not an EmoSEM checkpoint (missing {', '.join(missing)}); choose a folder "
            "written by `emosem train` or the widget's Fine-tune"
        )
    metadata = _read_json(folder / METADATA_FILE)
    if not isinstance(metadata, dict) or "id" not in metadata:
        raise CheckpointError(f"{folder / METADATA_FILE}: not EmoSEM checkpoint metadata")
    check_metadata(metadata, folder / METADATA_FILE)
    return CheckpointInfo(folder, metadata)


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, RecursionError) as exc:  # RecursionError: JSON nested thousands deep
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(f"{path}: not valid JSON ({why}); the checkpoint is damaged") from None
    except OSError as exc:
        raise CheckpointError(f"{path}: unreadable ({exc.strerror or exc})") from None


_HEX = frozenset("0123456789abcdef")

#: metadata field -> (allowed types, whether it may be missing): everything the annotator and the
#: loader read from metadata.json, so that a damaged file is refused here and not half-way
_METADATA_FIELDS = {
    "id": (str, False),
    "version": (int, False),
    "format_version": (int, True),
    "preset": (str, True),
    "created": (str, False),
    "base": (dict, False),
    "language_model_signature": ((dict, type(None)), True),
    "emotions": (list, False),
    "trainable_modules": (list, True),
    "parent": ((dict, type(None)), True),
    "training": ((dict, type(None)), True),
    "metrics": ((dict, type(None)), True),
    "weights_sha256": (str, False),
}


def check_metadata(metadata: dict, where: Path) -> None:
    """Raise :class:`CheckpointError` naming the first field of ``metadata.json`` that is missing
    or of a wrong type."""
    from .data.records import parse_time
    from .emotions import EMOTIONS

    def bad(why: str):
        raise CheckpointError(f"{where}: {why}; the checkpoint is damaged or was not written by napari-emosem")

    for name, (kinds, optional) in _METADATA_FIELDS.items():
        if name not in metadata:
            if not optional:
                bad(f"field {name!r} is missing")
            continue
        value = metadata[name]
        if isinstance(value, bool) or not isinstance(value, kinds):
            bad(f"field {name!r} is {_show(value)}")
    if not metadata["id"].strip() or len(metadata["id"]) > 200 or not metadata["id"].isprintable():
        bad(f"field 'id' is {_show(metadata['id'])}")
    if metadata["version"] < 1:
        bad(f"field 'version' is {metadata['version']}, not a version ≥ 1")
    if metadata.get("format_version", FORMAT_VERSION) > FORMAT_VERSION:
        raise CheckpointError(
            f"{where}: written by a newer napari-emosem (checkpoint format {metadata['format_version']}, "
            f"this one reads {FORMAT_VERSION}); update napari-emosem"
        )
    if parse_time(metadata["created"]) is None:
        bad(f"field 'created' is {_show(metadata['created'])}, not a time")
    sha = metadata["weights_sha256"]
    if len(sha) != 64 or not set(sha) <= _HEX:
        bad(f"field 'weights_sha256' is {_show(sha)}, not a sha256")
    base = metadata["base"]
    for key, kinds in (("encoder", str), ("encoder_sha256", (str, type(None))), ("language_model", str)):
        if not isinstance(base.get(key), kinds):
            bad(f"field 'base.{key}' is {_show(base.get(key))}")
    if any(not isinstance(e, str) or e not in EMOTIONS for e in metadata["emotions"]):
        bad(f"field 'emotions' is {_show(metadata['emotions'])}, not emotions of {', '.join(EMOTIONS)}")
    parent = metadata.get("parent")
    if parent is not None and not (isinstance(parent.get("id"), str) and isinstance(parent.get("path"), str)):
        bad(f"field 'parent' is {_show(parent)}")
    training = metadata.get("training") or {}
    for key in ("pairs", "paintings", "epoch"):
        value = training.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            bad(f"field 'training.{key}' is {_show(value)}")
    metrics = metadata.get("metrics") or {}
    for side in ("validation", "validation_before"):
        values = metrics.get(side)
        if values is None:
            continue
        if not isinstance(values, dict):
            bad(f"field 'metrics.{side}' is {_show(values)}")
        for key, value in values.items():
            number = isinstance(value, (int, float)) and not isinstance(value, bool)
            if value is not None and not (number and math.isfinite(value)):
                bad(f"field 'metrics.{side}.{key}' is {_show(value)}, not a number")


def _show(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "…"


def read_config(folder: Path) -> EmoSEMConfig:
    """The checked model config of a checkpoint folder."""
    try:
        return EmoSEMConfig.from_dict(_read_json(folder / CONFIG_FILE))
    except CheckpointError as exc:
        message = str(exc)
        raise CheckpointError(f"{folder}/{message}" if message.startswith(CONFIG_FILE) else message) from None


def load_checkpoint(
    folder: str | os.PathLike,
    *,
    sam_checkpoint: str | os.PathLike | None = None,
    language_model: str | None = None,
):
    """Rebuild the model a checkpoint was trained from, then load its weights.

    ``sam_checkpoint`` / ``language_model`` replace where the frozen parts come from (a local copy
    offline); they must be the same encoder (by sha256) and a compatible LM, or this refuses.
    The weights file must have the sha256 its metadata records and hold exactly the weights the
    model trains: a changed, truncated or incomplete file is refused, never half-loaded.
    Returns ``(model, identity, info)``.
    """
    info = read_checkpoint(folder)
    config = read_config(info.path)
    _check_files(info, config)
    if language_model is not None and language_model != config.language.model:
        config = config.replace(language=_replace_lm(config, language_model))
    try:
        model, identity = build_emosem(config, sam_checkpoint=sam_checkpoint)
    except EmoSEMError as exc:
        raise type(exc)(f"checkpoint {info.id}: {exc}") from None
    _check_frozen_parts(info, model, identity)
    model.load_state_dict(_trained_weights(info, model), strict=False)
    return model, identity, info


def _check_files(info: CheckpointInfo, config: EmoSEMConfig) -> None:
    """The config agrees with the metadata, and the weights file is the one trained."""
    if list(config.emotions) != info.metadata["emotions"]:
        raise CheckpointError(
            f"checkpoint {info.id}: its metadata names the emotions {info.metadata['emotions']} but its "
            f"config {list(config.emotions)}; the checkpoint is damaged"
        )
    weights_path = info.path / WEIGHTS_FILE
    if _sha256(weights_path) != info.metadata["weights_sha256"]:
        raise CheckpointError(
            f"{weights_path}: its sha256 is not the one recorded in {METADATA_FILE} "
            f"({info.metadata['weights_sha256'][:12]}…): the weights were changed or damaged after "
            "training; use another checkpoint or train again"
        )


def _check_frozen_parts(info: CheckpointInfo, model, identity) -> None:
    """The encoder (by sha256) and the language model are those the checkpoint was trained with."""
    base = info.metadata["base"]
    want_sha = base.get("encoder_sha256")
    if want_sha and identity.encoder_sha256 != want_sha:
        raise CheckpointError(
            f"checkpoint {info.id} was trained on the {base.get('encoder')} image encoder "
            f"(sha256 {want_sha[:12]}…), but the encoder given is {identity.encoder} "
            f"(sha256 {(identity.encoder_sha256 or 'none')[:12]}…); use the encoder it was made for"
        )
    want_lm = info.metadata.get("language_model_signature")
    if want_lm and want_lm != lm_signature(model):
        raise CheckpointError(
            f"checkpoint {info.id} was made for the language model {base.get('language_model')} "
            f"({_sig(want_lm)}), but {identity.language_model} is {_sig(lm_signature(model))}; "
            "use the language model it was made for"
        )


def _trained_weights(info: CheckpointInfo, model) -> dict:
    """The checkpoint's weights, exactly the ones the model trains (none missing, none unknown,
    every shape right), or a CheckpointError: never half-loaded."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    weights_path = info.path / WEIGHTS_FILE
    try:
        state = load_file(str(weights_path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{weights_path}: unreadable weights ({exc}); the file is damaged") from None
    expected = model.trainable_state_dict()
    wrong = [k for k, v in state.items() if k in expected and tuple(expected[k].shape) != tuple(v.shape)]
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(model.state_dict()))
    if wrong or missing or unexpected:
        raise CheckpointError(
            f"checkpoint {info.id} does not fit the model it describes ({len(wrong)} weights of another "
            f"shape, {len(missing)} missing, {len(unexpected)} unknown; e.g. "
            f"{(wrong + missing + unexpected)[0]}); it was made by another version or for another encoder/LM"
        )
    return state


def _replace_lm(config: EmoSEMConfig, language_model: str):
    import dataclasses

    return dataclasses.replace(config.language, model=language_model)


def _sig(sig: dict) -> str:
    return f"{sig.get('model_type')}, vocabulary {sig.get('vocab_size')}, width {sig.get('width')}"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def list_checkpoints(root: str | os.PathLike | None = None) -> list[CheckpointInfo]:
    """Checkpoints (or training runs' best checkpoints) under ``root`` (default: the user data
    folder), newest first."""
    from . import paths

    root = Path(root) if root is not None else paths.checkpoints_dir()
    found = []
    if root.is_dir():
        for sub in root.iterdir():
            sub = resolve_checkpoint_dir(sub)  # a training run holds its checkpoint in best/
            if sub.name.startswith(".") or not is_checkpoint(sub):
                continue
            try:
                found.append(read_checkpoint(sub))
            except CheckpointError:
                continue
    return sorted(found, key=checkpoint_order, reverse=True)


def checkpoint_order(info: CheckpointInfo) -> tuple:
    """Sort key, oldest first: creation time (compared as a time; stamped to the microsecond, older
    checkpoints to the second), then version for those older ones that share a second."""
    from .data.records import parse_time

    created = parse_time(info.metadata.get("created")) or datetime.min.replace(tzinfo=UTC)
    return (created, info.version)

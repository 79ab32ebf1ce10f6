"""EmoSEM configuration: small frozen dataclasses and the named presets.

``tiny`` is for tests and CI: every part small and randomly initialised, trainable from scratch on
a CPU in seconds, with a byte-level tokenizer that needs no file. ``vit_b``/``vit_l``/``vit_h`` are
SAM's official image encoders and mask decoder (weights downloaded once, hash-verified) with a
Hugging Face causal language model (``distilgpt2`` by default; any hub id or local folder).
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field

from .emotions import EMOTIONS
from .errors import CheckpointError


@dataclass(frozen=True)
class EncoderConfig:
    """SAM's ViT image encoder (segment_anything ``ImageEncoderViT``)."""

    #: "vit_b" | "vit_l" | "vit_h" (SAM's official weights) or "tiny" (random init)
    kind: str = "vit_b"
    img_size: int = 1024
    patch_size: int = 16
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    global_attn_indexes: tuple[int, ...] = (2, 5, 8, 11)
    window_size: int = 14
    #: channels of the embedding = the width of SAM's prompts and mask decoder
    out_chans: int = 256
    #: registry name ("vit_b"...) or a path to a SAM .pth; None: random initialisation
    weights: str | None = "vit_b"
    #: frozen encoders are what make embeddings cacheable (and training cheap)
    frozen: bool = True

    @property
    def embedding_size(self) -> int:
        return self.img_size // self.patch_size


@dataclass(frozen=True)
class DecoderConfig:
    """SAM's prompt encoder and two-way-transformer mask decoder."""

    transformer_depth: int = 2
    mlp_dim: int = 2048
    num_heads: int = 8
    iou_head_hidden_dim: int = 256
    mask_in_chans: int = 16


@dataclass(frozen=True)
class LanguageConfig:
    """The causal language model that writes explanations."""

    #: Hugging Face id or local folder; "tiny" builds a small GPT-2 with a byte-level tokenizer
    model: str = "distilgpt2"
    #: train the LM's own weights (otherwise frozen: only the prefix adapter learns to talk to it)
    train: bool = False
    #: default limit of a drafted explanation, in tokens (ArtEmis keeps utterances of 5–30 tokens)
    max_new_tokens: int = 30
    #: n-grams (in tokens) a draft may not repeat
    no_repeat_ngram_size: int = 3
    # Only for model == "tiny":
    n_embd: int = 64
    n_layer: int = 2
    n_head: int = 2
    n_positions: int = 256
    #: pad the byte vocabulary to this size (benchmarks at GPT-2's real size use 50257)
    vocab_size: int | None = None


@dataclass(frozen=True)
class LossWeights:
    """Loss weights (LISA's, the closest public relative: BCE 2.0, Dice 0.5, text 1.0)."""

    mask_bce: float = 2.0
    mask_dice: float = 0.5
    text: float = 1.0
    #: SAM's IoU head learns to predict the IoU of its own mask: the score annotators see
    iou: float = 1.0


@dataclass(frozen=True)
class EmoSEMConfig:
    name: str = "vit_b"
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    language: LanguageConfig = field(default_factory=LanguageConfig)
    #: the emotional prompt, as reported in the paper
    prompt_template: str = "generate the mask for the emotion {emotion}"
    #: prefix tokens the adapter gives the LM (ClipCap uses 10–40)
    prefix_length: int = 10
    prefix_hidden: int = 1024
    emotions: tuple[str, ...] = EMOTIONS
    loss: LossWeights = field(default_factory=LossWeights)
    #: seed of the random initialisation of everything not loaded from pretrained weights
    seed: int = 0

    # Serialisation ---------------------------------------------------------------------------

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    @classmethod
    def from_dict(cls, data: dict) -> EmoSEMConfig:
        """The config a checkpoint's ``config.json`` describes, checked (types, sizes, emotions)
        before anything is built from it: a damaged or foreign file must not allocate 50 GB."""
        try:
            enc = dict(data["encoder"])
            if isinstance(enc.get("global_attn_indexes"), list):
                enc["global_attn_indexes"] = tuple(enc["global_attn_indexes"])
            emotions = data["emotions"]
            config = cls(
                name=data["name"],
                encoder=EncoderConfig(**enc),
                decoder=DecoderConfig(**data["decoder"]),
                language=LanguageConfig(**data["language"]),
                prompt_template=data["prompt_template"],
                prefix_length=data["prefix_length"],
                prefix_hidden=data["prefix_hidden"],
                emotions=tuple(emotions) if isinstance(emotions, list) else emotions,
                loss=LossWeights(**data.get("loss", {})),
                seed=data.get("seed", 0),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CheckpointError(
                f"config.json does not describe an EmoSEM model ({type(exc).__name__}: {exc}); "
                "was it written by another tool or version?"
            ) from None
        check_config(config)
        return config

    def replace(self, **changes) -> EmoSEMConfig:
        return dataclasses.replace(self, **changes)


def _sam(kind: str, embed_dim: int, depth: int, num_heads: int, globals_: tuple[int, ...]):
    return EmoSEMConfig(
        name=kind,
        encoder=EncoderConfig(
            kind=kind,
            embed_dim=embed_dim,
            depth=depth,
            num_heads=num_heads,
            global_attn_indexes=globals_,
            weights=kind,
        ),
    )


def tiny_config() -> EmoSEMConfig:
    """Every part small and random: for tests, CI and the toy learnability check."""
    return EmoSEMConfig(
        name="tiny",
        encoder=EncoderConfig(
            kind="tiny",
            img_size=128,
            patch_size=8,
            embed_dim=64,
            depth=2,
            num_heads=2,
            global_attn_indexes=(1,),
            window_size=4,
            out_chans=64,
            weights=None,
            frozen=False,
        ),
        decoder=DecoderConfig(
            transformer_depth=2, mlp_dim=128, num_heads=2, iou_head_hidden_dim=64, mask_in_chans=4
        ),
        # byte-level tokens: 96 bytes is about one ArtEmis-length sentence
        # 12 bytes blocks repeats of about a word trigram, as 3 does for BPE tokens
        language=LanguageConfig(
            model="tiny",
            train=True,
            max_new_tokens=96,
            no_repeat_ngram_size=12,
            n_embd=64,
            n_layer=2,
            n_head=2,
        ),
        # The bare emotion word: with byte tokens the paper's sentence is ~45 tokens that are the
        # same for every emotion, which slows learning which emotion is meant (measured: held-out
        # toy mIoU 0.58 → 0.72 after 300 steps)
        prompt_template="{emotion}",
        prefix_length=4,
        prefix_hidden=128,
    )


@dataclass(frozen=True)
class Preset:
    build: Callable[[], EmoSEMConfig]
    #: one line for help texts and tooltips: what it is and when to use it
    about: str
    #: a few words beside its name in lists ("tiny (for tests and toy data)"); "" for none
    note: str = ""


#: The model without learned weights (``napari_emosem.starter``); not an EmoSEM preset.
STARTER = "starter"
STARTER_ABOUT = "cold-start drafts with no learned weights: works offline at once, nothing to train"

# The ViT sizes are segment_anything's build_sam.py values.
PRESETS: dict[str, Preset] = {
    "tiny": Preset(
        tiny_config,
        "a tiny EmoSEM with random weights, for tests and toy data only: on real paintings its drafts are noise",
        "for tests and toy data",
    ),
    "vit_b": Preset(
        lambda: _sam("vit_b", 768, 12, 12, (2, 5, 8, 11)),
        "EmoSEM on SAM's ViT-B (375 MB download) and distilgpt2: the start for real paintings",
        "SAM ViT-B, for real paintings",
    ),
    "vit_l": Preset(lambda: _sam("vit_l", 1024, 24, 16, (5, 11, 17, 23)), "EmoSEM on SAM's ViT-L (1.2 GB download)"),
    "vit_h": Preset(lambda: _sam("vit_h", 1280, 32, 16, (7, 15, 23, 31)), "EmoSEM on SAM's ViT-H (2.6 GB download)"),
}

#: What ``--model`` and the annotator's model list accept besides a checkpoint folder.
MODEL_CHOICES: tuple[str, ...] = (STARTER, *PRESETS)

#: What fine-tuning starts from unless told otherwise: the smallest SAM-backed preset.
DEFAULT_BASE = "vit_b"


def about_model(name: str) -> str:
    """The one-line description of a model choice (``starter`` or a preset)."""
    return STARTER_ABOUT if name == STARTER else PRESETS[name].about


def models_help() -> str:
    """What a ``--model`` option accepts, for help texts."""
    return ", ".join(model_label(name) for name in MODEL_CHOICES) + ", or a checkpoint folder"


def model_label(name: str) -> str:
    """A model choice with its note, for lists: ``tiny (for tests and toy data)``."""
    note = PRESETS[name].note if name in PRESETS else ""
    return f"{name} ({note})" if note else name


def get_preset(name: str) -> EmoSEMConfig:
    try:
        preset = PRESETS[name]
    except KeyError:
        raise CheckpointError(
            f"unknown model preset {name!r}: choose one of {', '.join(PRESETS)}, '{STARTER}', "
            "or give a checkpoint folder"
        ) from None
    return preset.build()


# Checking a config read from a file -------------------------------------------------------------

#: Above this a config.json is refused before anything is built (vit_h is about 0.64 billion):
#: 2 billion float32 parameters are 8 GB.
MAX_PARAMETERS = 2_000_000_000


def check_config(config: EmoSEMConfig) -> None:
    """Raise :class:`CheckpointError` naming the first field of a wrong type or size, the emotions
    if they are not the eight, or the size if the model would be too large to build."""
    for part in ("", "encoder", "decoder", "language", "loss"):
        _check_types(getattr(config, part) if part else config, part)
    e, d, lang = config.encoder, config.decoder, config.language
    positive = {
        "encoder.img_size": e.img_size, "encoder.patch_size": e.patch_size, "encoder.embed_dim": e.embed_dim,
        "encoder.depth": e.depth, "encoder.num_heads": e.num_heads, "encoder.window_size": e.window_size,
        "encoder.out_chans": e.out_chans, "decoder.transformer_depth": d.transformer_depth,
        "decoder.mlp_dim": d.mlp_dim, "decoder.num_heads": d.num_heads,
        "decoder.iou_head_hidden_dim": d.iou_head_hidden_dim, "decoder.mask_in_chans": d.mask_in_chans,
        "language.max_new_tokens": lang.max_new_tokens, "language.n_embd": lang.n_embd,
        "language.n_layer": lang.n_layer, "language.n_head": lang.n_head, "language.n_positions": lang.n_positions,
        "prefix_length": config.prefix_length, "prefix_hidden": config.prefix_hidden,
    }
    for name, value in positive.items():
        if value < 1:
            _bad(f"{name} is {value}; it must be at least 1")
    for name, value in {"language.no_repeat_ngram_size": lang.no_repeat_ngram_size, "seed": config.seed}.items():
        if value < 0:
            _bad(f"{name} is {value}; it must not be negative")
    for name, value in dataclasses.asdict(config.loss).items():
        if not (math.isfinite(value) and value >= 0):
            _bad(f"loss.{name} is {value}; a loss weight is a finite number ≥ 0")
    if e.img_size % e.patch_size:
        _bad(f"encoder.img_size {e.img_size} is not a multiple of encoder.patch_size {e.patch_size}")
    if e.embed_dim % e.num_heads:
        _bad(f"encoder.embed_dim {e.embed_dim} is not a multiple of encoder.num_heads {e.num_heads}")
    if e.out_chans % 8 or (e.out_chans // 2) % d.num_heads:
        _bad(f"encoder.out_chans {e.out_chans} must be a multiple of 8 and of 2 × decoder.num_heads ({d.num_heads})")
    if any(not 0 <= i < e.depth for i in e.global_attn_indexes):
        _bad(
            f"encoder.global_attn_indexes {list(e.global_attn_indexes)} must lie in 0…{e.depth - 1} "
            "(the encoder's blocks)"
        )
    if lang.model == "tiny":
        if lang.n_embd % lang.n_head:
            _bad(f"language.n_embd {lang.n_embd} is not a multiple of language.n_head {lang.n_head}")
        if lang.vocab_size is not None and lang.vocab_size < 257:
            _bad(f"language.vocab_size {lang.vocab_size} is below the byte tokenizer's 257 tokens")
    if not lang.model.strip():
        _bad("language.model is empty; it names a Hugging Face model, a folder, or 'tiny'")
    try:
        config.prompt_template.format(emotion="fear")
    except (KeyError, IndexError, ValueError):
        _bad(f"prompt_template {config.prompt_template!r} may only use the field {{emotion}}")
    if len(set(config.emotions)) != len(config.emotions) or set(config.emotions) != set(EMOTIONS):
        unknown = [x for x in config.emotions if x not in EMOTIONS]
        _bad(
            f"emotions are {list(config.emotions)}"
            + (f" ({', '.join(map(str, unknown))} unknown)" if unknown else "")
            + f"; an EmoSEM checkpoint has exactly the eight: {', '.join(EMOTIONS)}"
        )
    n = parameter_estimate(config)
    if n > MAX_PARAMETERS:
        _bad(
            f"describes a model of about {n / 1e9:.0f} billion parameters (the largest preset, vit_h, has "
            f"0.64 billion): refused before building it"
        )


def parameter_estimate(config: EmoSEMConfig) -> int:
    """About how many parameters building ``config`` allocates (within a few percent for the
    presets; a pretrained LM other than ``tiny`` is not counted: its hub config decides)."""
    e, d, lang = config.encoder, config.decoder, config.language
    width, c = e.embed_dim, e.out_chans
    grid = e.img_size // e.patch_size
    head = width // e.num_heads
    rel_pos = 2 * (2 * max(grid, e.window_size) - 1) * head
    encoder = (
        3 * e.patch_size**2 * width
        + grid * grid * width
        + e.depth * (12 * width * width + rel_pos)
        + width * c
        + 9 * c * c
    )
    decoder = d.transformer_depth * (3 * 2 * c * c + 4 * c * c + 2 * c * d.mlp_dim) + 12 * c * c
    decoder += 3 * c * d.iou_head_hidden_dim + d.mask_in_chans * (c + 16)
    lm_width = lang.n_embd if lang.model == "tiny" else 1024
    lm = 0
    if lang.model == "tiny":
        lm = lang.n_layer * 12 * lm_width**2 + ((lang.vocab_size or 257) + lang.n_positions) * lm_width
    prompt = 6 * lm_width * lm_width + lm_width * c
    adapter = (2 * c + 5 + lm_width) * config.prefix_hidden + config.prefix_hidden * config.prefix_length * lm_width
    return encoder + decoder + lm + prompt + adapter


def _bad(why: str):
    raise CheckpointError(f"config.json: {why}; the file is damaged or was not written by napari-emosem")


def _check_types(obj, part: str) -> None:
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if not _is_instance(value, hints[f.name]):
            name = f"{part}.{f.name}" if part else f.name
            _bad(f"{name} is {value!r} ({type(value).__name__}), not {_type_name(hints[f.name])}")


def _is_instance(value, hint) -> bool:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_is_instance(value, a) for a in args)
    if origin is tuple:
        return isinstance(value, tuple) and all(_is_instance(v, args[0]) for v in value)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if dataclasses.is_dataclass(hint):
        return isinstance(value, hint)
    return isinstance(value, hint)


def _type_name(hint) -> str:
    return str(hint).replace("typing.", "").replace("<class '", "").replace("'>", "")

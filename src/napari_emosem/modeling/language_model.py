"""The language model that writes explanations, and its tokenizer.

Any ``transformers`` causal LM works (GPT-2 family by default). ``tiny`` builds a small GPT-2 from
a config with random weights and a byte-level tokenizer that needs no file: each byte is one token
(id = byte value), so any text round-trips and nothing is downloaded.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from ..config import LanguageConfig
from ..errors import WeightsError

EOS = "<|endoftext|>"


@lru_cache(maxsize=1)
def _bytes_to_unicode() -> dict[int, str]:
    # GPT-2's reversible byte -> printable-unicode map (the ByteLevel pre-tokenizer's alphabet).
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    bs += list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs, strict=True)}


def byte_level_tokenizer():
    """A fast tokenizer with 256 byte tokens (id = byte value) and one end-of-text token (256)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {ch: b for b, ch in _bytes_to_unicode().items()}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([EOS])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=EOS, eos_token=EOS, pad_token=EOS, unk_token=None
    )


def load_language_model(config: LanguageConfig, *, seed: int = 0):
    """Return ``(model, tokenizer)`` for ``config``; raise WeightsError with a fix when offline."""
    if config.model == "tiny":
        return _tiny_lm(config, seed)
    return _pretrained_lm(config.model)


def _tiny_lm(config: LanguageConfig, seed: int):
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    tokenizer = byte_level_tokenizer()
    eos = tokenizer.eos_token_id
    gpt_config = GPT2Config(
        vocab_size=max(len(tokenizer), config.vocab_size or 0),
        n_embd=config.n_embd,
        n_layer=config.n_layer,
        n_head=config.n_head,
        n_positions=config.n_positions,
        bos_token_id=eos,
        eos_token_id=eos,
        pad_token_id=eos,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = GPT2LMHeadModel(gpt_config)
    _name_loss(model)
    return model, tokenizer


def _name_loss(model) -> None:
    # transformers guesses the loss from the class name and warns on every forward when it cannot
    if getattr(model, "loss_type", None) is None:
        model.loss_type = "ForCausalLM"


def _pretrained_lm(name: str):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    local = Path(name).expanduser()
    source = str(local) if local.exists() else name
    if local.exists() and not (local / "config.json").exists():
        raise WeightsError(
            f"language model folder {local} has no config.json; point to a folder written by "
            "transformers' save_pretrained (config.json, weights, tokenizer files)"
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModelForCausalLM.from_pretrained(source)
    except OSError as exc:
        if local.exists():
            raise WeightsError(f"cannot load the language model in {local}: {exc}") from None
        raise WeightsError(
            f"language model {name!r} is not in the Hugging Face cache and could not be downloaded "
            f"({_first_line(exc)}). On a connected machine run "
            f"`python -c \"from transformers import AutoModelForCausalLM, AutoTokenizer as T; "
            f"T.from_pretrained('{name}').save_pretrained('lm'); "
            f"AutoModelForCausalLM.from_pretrained('{name}').save_pretrained('lm')\"`, "
            "copy the 'lm' folder here and pass it as the language model "
            f"(or copy ~/.cache/huggingface; HF_HOME={os.environ.get('HF_HOME', '~/.cache/huggingface')})"
        ) from None
    if tokenizer.eos_token_id is None:
        raise WeightsError(f"language model {name!r} has no end-of-text token; use a causal LM")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    _name_loss(model)
    return model, tokenizer


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


# Drafting on a CPU ---------------------------------------------------------------------------
# Greedy decoding reads every weight of the LM for every token (GPT-2: 500 MB in float32), so on a
# CPU drafting is bound by memory traffic, not arithmetic. Dynamic int8 stores the linear layers'
# weights in a quarter of the bytes and quantises each step's activations on the fly.


def int8_available() -> bool:
    """Whether torch has an int8 kernel engine for this CPU (fbgemm/x86 on x86-64, qnnpack on ARM)."""
    import torch

    engines = set(torch.backends.quantized.supported_engines) - {"none"}
    return bool(engines)


def quantize_linear_layers(module, *, inplace: bool = False):
    """``module`` (a copy unless ``inplace``) with its ``nn.Linear`` layers in dynamic int8,
    weights quantised per output channel.

    torch.ao.quantization's eager ``quantize_dynamic`` is deprecated in favour of torchao, but it
    is what torch itself ships for x86 and ARM CPUs (fbgemm/qnnpack kernels) and needs no extra
    package; its deprecation warnings are silenced here.
    """
    import warnings

    import torch
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        return quantize_dynamic(
            module, {torch.nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8, inplace=inplace
        )


def int8_language_model(lm):
    """A drafting copy of ``lm`` with every linear layer in dynamic int8; ``lm`` is untouched.

    GPT-2 keeps its attention and MLP weights in transformers' ``Conv1D`` (a linear layer with the
    weight transposed): those become ``nn.Linear`` first so that they are quantised too. The word
    embeddings are shared with ``lm``, not copied (a lookup reads one row per token); the output
    layer, tied to them in GPT-2, gets its own int8 copy.
    """
    import copy

    import torch
    from torch import nn
    from transformers.pytorch_utils import Conv1D

    memo = {id(p): p for p in lm.get_input_embeddings().parameters()}
    drafting = copy.deepcopy(lm, memo)
    with torch.no_grad():
        for parent in list(drafting.modules()):
            for name, child in list(parent.named_children()):
                if isinstance(child, Conv1D):
                    n_in, n_out = child.weight.shape
                    linear = nn.Linear(n_in, n_out)
                    linear.weight.copy_(child.weight.t())
                    linear.bias.copy_(child.bias)
                    setattr(parent, name, linear)
    return quantize_linear_layers(drafting, inplace=True).eval()

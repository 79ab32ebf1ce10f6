"""How the model's arithmetic runs on the CPU: float32, or reduced precision where it pays.

``precision`` is ``"fp32"``, ``"bf16"`` or ``"auto"``:

- ``fp32``: everything in float32, the reference;
- ``bf16``: the image encoder and the mask decoder under ``torch.autocast("cpu", bfloat16)``
  (weights stay float32; matrix products run in bfloat16, normalisations and softmaxes in
  float32), and the language model's linear layers in dynamic int8
  (:func:`.modeling.language_model.int8_language_model`);
- ``auto``: each of the two only where this machine measured it faster than float32. Processors
  with native bf16 (AVX-512 BF16, AMX) run bf16 matrix products 2–3× faster; one without runs them
  slower than float32, so it is measured, not assumed. The verdict is measured once (about a
  second) and kept in the user cache folder, keyed by the processor and the torch version.

Tests check that the reduced forms keep the proposals (mask IoU ≥ 0.98 against fp32 on a trained
toy checkpoint) and the drafts (BLEU-4 within 0.02). On a GPU nothing changes: the model runs as
it always has.
"""

from __future__ import annotations

import contextlib
import json
import platform
import time
from dataclasses import asdict, dataclass

from .errors import EmoSEMError

PRECISIONS = ("auto", "fp32", "bf16")
VERDICT_FILE = "precision.json"
#: a reduced form is chosen only when at least this much faster (noise on a busy machine)
MIN_SPEEDUP = 1.15


@dataclass(frozen=True)
class ComputePlan:
    """What ``precision`` resolved to on a device."""

    #: "fp32" or "bf16": the encoder's and decoder's arithmetic
    precision: str = "fp32"
    #: the language model's linear layers in dynamic int8 while drafting
    int8_language_model: bool = False

    def autocast(self):
        """The context the image encoder and the mask decoder run in."""
        import torch

        if self.precision == "bf16":
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    @property
    def label(self) -> str:
        return self.precision + (", int8 language model" if self.int8_language_model else "")


def check_precision(name: str | None) -> str:
    name = (name or "auto").lower()
    if name not in PRECISIONS:
        raise EmoSEMError(f"unknown precision {name!r}: choose one of {', '.join(PRECISIONS)}")
    return name


def resolve_precision(requested: str | None, device: str) -> ComputePlan:
    """The plan for ``requested`` (auto/fp32/bf16) on ``device``; only the CPU gets reduced forms."""
    requested = check_precision(requested)
    if not str(device).startswith("cpu") or requested == "fp32":
        return ComputePlan()
    from .modeling.language_model import int8_available

    if requested == "bf16":
        return ComputePlan("bf16", int8_available())
    verdict = machine_verdict()
    return ComputePlan("bf16" if verdict["bf16_faster"] else "fp32", bool(verdict["int8_lm_faster"]))


# The measurement ------------------------------------------------------------------------------


def machine_key() -> str:
    """The processor and torch build a verdict holds for."""
    import torch

    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            model = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), model)
    except OSError:
        pass
    return f"{model} | {torch.backends.cpu.get_cpu_capability()} | torch {torch.__version__}"


def machine_verdict(*, remeasure: bool = False) -> dict:
    """This machine's verdict, from the user cache folder or measured now (and stored there)."""
    from . import paths
    from ._io import atomic_write_bytes

    path = paths.cache_dir() / VERDICT_FILE
    key = machine_key()
    try:
        known = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(known, dict):
            known = {}
    except (OSError, ValueError):
        known = {}
    if not remeasure and isinstance(known.get(key), dict) and "bf16_faster" in known[key]:
        return known[key]
    verdict = measure_cpu()
    known[key] = verdict
    with contextlib.suppress(OSError):  # a read-only cache folder only means measuring again next time
        atomic_write_bytes(path, json.dumps(known, indent=1).encode())
    return verdict


@dataclass
class CpuMeasurement:
    fp32_gflops: float
    bf16_gflops: float
    lm_fp32_ms: float
    lm_int8_ms: float | None
    bf16_faster: bool
    int8_lm_faster: bool
    measured: str


def measure_cpu(repeats: int = 5) -> dict:
    """Time the shapes that dominate: a ViT-B MLP matrix product (1024 tokens, 768 -> 3072) in
    float32 and under bf16 autocast, and a GPT-2-sized linear layer for 8 drafts (8 × 768 -> 3072)
    in float32 and dynamic int8. Minimum of ``repeats``; about a second on a 2-core CPU."""
    import torch

    from .modeling.language_model import int8_available, quantize_linear_layers

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1024, 768, generator=gen)
    w = torch.randn(3072, 768, generator=gen) * 0.02
    flops = 2 * x.shape[0] * w.shape[0] * w.shape[1]

    def best(fn, calls: int = 1) -> float:
        fn()  # first call: kernel selection, weight packing
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            for _ in range(calls):
                fn()
            times.append((time.perf_counter() - t) / calls)
        return min(times)

    bf16_ok = _cpu_has_bf16()
    with torch.inference_mode():
        fp32 = best(lambda: torch.nn.functional.linear(x, w))
        if bf16_ok:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                bf16 = best(lambda: torch.nn.functional.linear(x, w))
        else:
            bf16 = float("inf")
        lm = torch.nn.Sequential(torch.nn.Linear(768, 3072), torch.nn.Linear(3072, 768)).eval()
        tokens = torch.randn(8, 768, generator=gen)
        # a layer for 8 tokens takes well under a millisecond: time 50 in a row, so that one
        # thread waiting for the scheduler on a busy machine does not decide the verdict
        lm_fp32 = best(lambda: lm(tokens), 50)
        lm_int8 = None
        if int8_available():
            quantized = quantize_linear_layers(lm)
            lm_int8 = best(lambda: quantized(tokens), 50)
    return asdict(
        CpuMeasurement(
            fp32_gflops=round(flops / fp32 / 1e9, 1),
            bf16_gflops=round(flops / bf16 / 1e9, 1) if bf16_ok else 0.0,
            lm_fp32_ms=round(lm_fp32 * 1e3, 3),
            lm_int8_ms=None if lm_int8 is None else round(lm_int8 * 1e3, 3),
            bf16_faster=bool(bf16_ok and fp32 > MIN_SPEEDUP * bf16),
            int8_lm_faster=bool(lm_int8 is not None and lm_fp32 > MIN_SPEEDUP * lm_int8),
            measured=time.strftime("%Y-%m-%dT%H:%M:%S"),
        )
    )


def _cpu_has_bf16() -> bool:
    """Whether oneDNN has bf16 kernels here (AVX-512 BF16, AMX, or AVX-512 emulation)."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False

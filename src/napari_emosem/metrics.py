"""Metrics: the APOLO segmentation protocol, and captioning metrics through pycocoevalcap.

Segmentation (APOLO, Chen et al. 2024), per (painting, emotion) pair of the ground truth:

1. min–max normalise the predicted map to [0, 1];
2. resize it bilinearly to the ground-truth mask's size (half-pixel centres, no antialiasing:
   what OpenCV's ``INTER_LINEAR`` and ``torch.nn.functional.interpolate(..., "bilinear",
   align_corners=False)`` do);
3. foreground = normalised value > 0.35 (strictly greater, as in APOLO's script);
4. IoU of the foreground with the ground-truth mask.

Mean IoU, Acc@0.25 and Acc@0.5 (share of pairs with IoU >= 0.25 / >= 0.5) are taken over pairs
whose ground-truth mask is not empty; pairs with an empty mask are skipped.

*Our definitions where the protocol is silent:* a constant map (max == min) cannot be normalised;
it is all foreground when its value is > 0 and empty otherwise (so a binary mask given as the
"map" scores as itself, and an all-zero prediction scores 0).

*Where we differ from APOLO's released script* (``eval_map_iou.py``): the script computes a
two-class mean IoU over the union region and doubles it, which equals the foreground IoU except
when only one class is present, where the doubled value (2) is clipped to 1; and its thresholded
map is assigned only inside an ``if save_image:`` branch. We implement the protocol as described
(foreground IoU, no doubling, no clipping) rather than those quirks.

Captions: BLEU-1..4, METEOR, ROUGE-L and CIDEr(-D) as pycocoevalcap computes them, after its
PTB tokenisation (lower case, punctuation removed), with every reference of a pair. BLEU and
CIDEr are corpus-level, so per-emotion numbers are computed on each emotion's pairs alone (CIDEr
weighs n-grams by how rare they are across the set's pairs, so a set of one pair scores 0).
METEOR and the tokeniser run Java; METEOR's JVM takes about 12 s to start on a 2-core CPU.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import subprocess
import tempfile
from collections.abc import Hashable, Iterable, Mapping
from pathlib import Path

import numpy as np

from .errors import EmoSEMError

#: APOLO's binarisation threshold on the min–max normalised map.
APOLO_THRESHOLD = 0.35
#: Acc@k thresholds on the per-pair IoU.
ACC_THRESHOLDS = {"acc_25": 0.25, "acc_50": 0.5}
CAPTION_METRICS = ("bleu_1", "bleu_2", "bleu_3", "bleu_4", "meteor", "rouge_l", "cider")


# ----------------------------------------------------------------------------- segmentation
def minmax_normalise(prediction: np.ndarray) -> np.ndarray:
    """Scale a predicted map to [0, 1] (float32). A constant map becomes all ones when its value
    is > 0 and all zeros otherwise (see the module docstring). NaN counts as 0."""
    a = np.nan_to_num(np.asarray(prediction, dtype=np.float32), nan=0.0, posinf=1.0, neginf=0.0)
    if a.ndim != 2:
        raise EmoSEMError(f"a predicted map must be 2-D (height, width); got shape {a.shape}")
    lo, hi = float(a.min()), float(a.max())
    if hi <= lo:
        return np.full(a.shape, 1.0 if hi > 0 else 0.0, dtype=np.float32)
    return (a - lo) / (hi - lo)


def resize_bilinear(a: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a 2-D float map to ``shape`` (H, W) with half-pixel centres and edge
    clamping, as OpenCV ``INTER_LINEAR`` / torch ``align_corners=False`` (no antialiasing)."""
    a = np.asarray(a, dtype=np.float32)
    out_h, out_w = int(shape[0]), int(shape[1])
    if a.shape == (out_h, out_w):
        return a
    y0, y1, wy = _axis_weights(a.shape[0], out_h)
    x0, x1, wx = _axis_weights(a.shape[1], out_w)
    rows = a[y0] * (1.0 - wy)[:, None] + a[y1] * wy[:, None]
    return rows[:, x0] * (1.0 - wx)[None, :] + rows[:, x1] * wx[None, :]


def _axis_weights(n_in: int, n_out: int):
    src = (np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5
    src = np.clip(src, 0.0, n_in - 1)
    i0 = np.floor(src).astype(np.int64)
    i1 = np.minimum(i0 + 1, n_in - 1)
    return i0, i1, (src - i0).astype(np.float32)


def apolo_binarise(prediction: np.ndarray, shape: tuple[int, int], threshold: float = APOLO_THRESHOLD) -> np.ndarray:
    """Steps 1–3 of the protocol: normalise, resize to ``shape``, threshold. Returns bool (H, W)."""
    normalised = minmax_normalise(prediction)
    if normalised.shape != tuple(shape):
        lo, hi = float(normalised.min()), float(normalised.max())
        if lo == hi:  # constant: resizing changes nothing
            return np.full(tuple(shape), hi > threshold, dtype=bool)
        normalised = resize_bilinear(normalised, shape)
    return normalised > threshold


def foreground_iou(prediction: np.ndarray, truth: np.ndarray) -> float:
    """IoU of two bool masks of the same shape; 1.0 when both are empty."""
    prediction = np.asarray(prediction, dtype=bool)
    truth = np.asarray(truth, dtype=bool)
    if prediction.shape != truth.shape:
        raise EmoSEMError(f"mask shapes differ: {prediction.shape} vs {truth.shape}")
    union = np.count_nonzero(prediction | truth)
    if union == 0:
        return 1.0
    return np.count_nonzero(prediction & truth) / union


def apolo_iou(prediction: np.ndarray, truth: np.ndarray, threshold: float = APOLO_THRESHOLD) -> float:
    """The APOLO IoU of one pair: ``prediction`` is a soft map (any size; a bool mask works too),
    ``truth`` the ground-truth mask (must not be empty: such pairs are skipped by the protocol)."""
    truth = np.asarray(truth, dtype=bool)
    return foreground_iou(apolo_binarise(prediction, truth.shape, threshold), truth)


def summarise_ious(ious: Iterable[float]) -> dict:
    """``{"miou", "acc_25", "acc_50", "pairs"}`` over per-pair IoUs (values None without pairs)."""
    values = np.asarray(list(ious), dtype=np.float64)
    if values.size == 0:
        return {"miou": None, "acc_25": None, "acc_50": None, "pairs": 0}
    out = {"miou": float(values.mean())}
    for key, t in ACC_THRESHOLDS.items():
        out[key] = float(np.mean(values >= t))
    out["pairs"] = int(values.size)
    return out


# ----------------------------------------------------------------------------- captions
def require_java() -> str:
    """The path of ``java``, or an EmoSEMError saying how to install it."""
    java = shutil.which("java")
    if java is None:
        raise EmoSEMError(
            "explanation metrics (METEOR and the PTB tokenizer of pycocoevalcap) need Java, and "
            "no 'java' is on PATH: install a Java runtime (Debian/Ubuntu: apt install "
            "default-jre-headless; conda: conda install openjdk), or evaluate masks only"
        )
    return java


def ptb_tokenize(captions: Mapping[Hashable, list[str]]) -> dict[Hashable, list[str]]:
    """pycocoevalcap's PTBTokenizer (same jar, flags and punctuation list), but with its
    temporary file in the system temp folder instead of inside the installed package (which
    may be read-only). Input and output: ``{key: [sentence, ...]}``."""
    from pycocoevalcap.tokenizer import ptbtokenizer as ptb

    java = require_java()
    jar = Path(ptb.__file__).resolve().parent / ptb.STANFORD_CORENLP_3_4_1_JAR
    keys = [k for k, sentences in captions.items() for _ in sentences]
    lines = [s.replace("\r", " ").replace("\n", " ") for sentences in captions.values() for s in sentences]
    if not lines:
        return {}
    with tempfile.TemporaryDirectory(prefix="emosem-ptb-") as tmp:
        path = Path(tmp) / "sentences.txt"
        path.write_text("\n".join(lines), encoding="utf-8")
        cmd = [java, "-cp", str(jar), "edu.stanford.nlp.process.PTBTokenizer",
               "-preserveLines", "-lowerCase", str(path)]  # fmt: skip
        result = subprocess.run(cmd, capture_output=True, check=False)
    if result.returncode != 0:
        detail = result.stderr.decode("utf-8", "replace").strip().splitlines()
        raise EmoSEMError(
            f"the PTB tokenizer (Java) failed: {detail[-1] if detail else 'no message'}; check "
            "that 'java -version' works"
        )
    out_lines = result.stdout.decode("utf-8").split("\n")
    if len(out_lines) < len(lines):
        raise EmoSEMError(
            f"the PTB tokenizer returned {len(out_lines)} lines for {len(lines)} sentences"
        )
    tokenized: dict[Hashable, list[str]] = {}
    for key, line in zip(keys, out_lines, strict=False):
        words = [w for w in line.rstrip().split(" ") if w not in ptb.PUNCTUATIONS]
        tokenized.setdefault(key, []).append(" ".join(words))
    return tokenized


@contextlib.contextmanager
def _meteor():
    """pycocoevalcap's Meteor (one JVM), closed when the block ends, error or not."""
    from pycocoevalcap.meteor.meteor import Meteor

    require_java()
    meteor = Meteor()
    try:
        yield meteor
    finally:
        process = meteor.meteor_p
        with meteor.lock:
            with contextlib.suppress(OSError, ValueError):
                process.stdin.close()
            if process.poll() is None:
                process.kill()
            process.wait()
        for stream in (process.stdout, process.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.close()


def _score_set(gts: dict, res: dict, meteor) -> dict[str, float]:
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    with contextlib.redirect_stdout(io.StringIO()):  # Bleu prints its internals
        bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    try:
        meteor_score, _ = meteor.compute_score(gts, res)
    except (ValueError, OSError, BrokenPipeError) as exc:
        raise EmoSEMError(f"METEOR (Java) failed: {exc}") from None
    rouge, _ = Rouge().compute_score(gts, res)
    cider, _ = Cider().compute_score(gts, res)
    return {
        "bleu_1": float(bleu[0]),
        "bleu_2": float(bleu[1]),
        "bleu_3": float(bleu[2]),
        "bleu_4": float(bleu[3]),
        "meteor": float(meteor_score),
        "rouge_l": float(rouge),
        "cider": float(cider),
    }


def _empty_caption_scores() -> dict:
    return {k: None for k in CAPTION_METRICS}


def caption_scores(
    references: Mapping[Hashable, list[str]],
    candidates: Mapping[Hashable, str],
    groups: Mapping[Hashable, str] | None = None,
) -> dict:
    """BLEU-1..4, METEOR, ROUGE-L, CIDEr of ``candidates`` against ``references`` (all of them).

    Pairs are the keys present in both with at least one non-empty reference and a non-empty
    candidate. With ``groups`` (key -> group name, e.g. the emotion), ``"per_group"`` holds the
    same metrics per group. Metrics are None when there are no pairs.
    """
    keys = [
        k
        for k, c in candidates.items()
        if isinstance(c, str) and c.strip() and any(r.strip() for r in references.get(k, []))
    ]
    out: dict = _empty_caption_scores()
    out["pairs"] = len(keys)
    out["per_group"] = {}
    if not keys:
        return out
    # one tokenizer run for everything: references under ("r", k), candidates under ("c", k)
    packed: dict[Hashable, list[str]] = {}
    for k in keys:
        packed[("r", k)] = [r for r in references[k] if r.strip()]
        packed[("c", k)] = [candidates[k]]
    tokens = ptb_tokenize(packed)
    gts = {i: tokens[("r", k)] for i, k in enumerate(keys)}
    res = {i: tokens[("c", k)] for i, k in enumerate(keys)}
    with _meteor() as meteor:
        out.update(_score_set(gts, res, meteor))
        if groups is not None:
            members: dict[str, list[int]] = {}
            for i, k in enumerate(keys):
                members.setdefault(groups[k], []).append(i)
            for name, ids in members.items():
                scores = _score_set({i: gts[i] for i in ids}, {i: res[i] for i in ids}, meteor)
                scores["pairs"] = len(ids)
                out["per_group"][name] = scores
    return out


def java_available() -> bool:
    """True when explanation metrics can run here."""
    return shutil.which("java") is not None

"""SAM's official checkpoints: a registry (URL, size, sha256), hash-verified downloads, offline use.

Files are downloaded once, with a progress bar, into ``paths.weights_dir()`` (move it with
``EMOSEM_CACHE_DIR``). pooch writes to a temporary file beside the target and moves it into place
only when the sha256 matches, so a wrong hash, an HTTP error or a cut connection never leaves a
corrupt file in the cache. ``EMOSEM_WEIGHTS_URL`` points downloads at a mirror (a folder served
over HTTP holding the same file names); ``EMOSEM_OFFLINE=1`` forbids downloading.
Offline, copy the file into the cache folder, or pass its path wherever a preset name is accepted.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from . import paths
from .errors import WeightsError


@dataclass(frozen=True)
class SamWeights:
    name: str
    file_name: str
    url: str
    size: int
    sha256: str


_BASE = "https://dl.fbaipublicfiles.com/segment_anything/"

#: segment_anything's README links; sizes and sha256 of the published files
SAM_WEIGHTS: dict[str, SamWeights] = {
    w.name: w
    for w in (
        SamWeights("vit_b", "sam_vit_b_01ec64.pth", _BASE + "sam_vit_b_01ec64.pth", 375_042_383,
                   "ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912"),
        SamWeights("vit_l", "sam_vit_l_0b3195.pth", _BASE + "sam_vit_l_0b3195.pth", 1_249_524_607,
                   "3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622"),
        SamWeights("vit_h", "sam_vit_h_4b8939.pth", _BASE + "sam_vit_h_4b8939.pth", 2_564_550_879,
                   "a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e"),
    )
}


def offline() -> bool:
    return os.environ.get("EMOSEM_OFFLINE", "").lower() in ("1", "true", "yes")


#: what EMOSEM_WEIGHTS_URL may start with (what pooch downloads from)
MIRROR_SCHEMES = ("http", "https", "ftp")


def _url(weights: SamWeights) -> str:
    mirror = os.environ.get("EMOSEM_WEIGHTS_URL", "").strip()
    if not mirror:
        return weights.url
    from urllib.parse import urlsplit

    parts = urlsplit(mirror)
    if parts.scheme not in MIRROR_SCHEMES or not parts.netloc:
        raise WeightsError(
            f"EMOSEM_WEIGHTS_URL={mirror!r} is not a URL to download from: it needs a scheme and a host, "
            f"e.g. http://mirror.local/sam/ ({', '.join(MIRROR_SCHEMES)}); for a file on this machine pass "
            "its path with --sam-checkpoint instead"
        )
    return mirror.rstrip("/") + "/" + weights.file_name


def cached_path(name: str) -> Path | None:
    """The verified cached file of registry entry ``name``, or None if it is not downloaded."""
    weights = SAM_WEIGHTS[name]
    path = paths.weights_dir() / weights.file_name
    # Files only ever land here after their hash matched; a size check catches truncation by hand
    if path.is_file() and path.stat().st_size == weights.size:
        return path
    return None


def fetch(name: str, *, progress=True, weights: SamWeights | None = None) -> Path:
    """Return the local path of SAM checkpoint ``name``, downloading and verifying it if needed.

    ``progress``: True for a bar on stderr, False for none, or an object with tqdm's ``total``,
    ``update(n)``, ``reset()`` and ``close()`` (pooch's progress-bar protocol) for a GUI's bar.
    """
    if weights is None:
        if name not in SAM_WEIGHTS:
            raise WeightsError(
                f"unknown SAM checkpoint {name!r}: choose one of {', '.join(SAM_WEIGHTS)} or give a file path"
            )
        weights = SAM_WEIGHTS[name]
    target = paths.weights_dir() / weights.file_name
    if target.is_file() and target.stat().st_size == weights.size:
        return target
    if offline():
        raise WeightsError(_missing_message(weights, target, "EMOSEM_OFFLINE is set"))
    url = _url(weights)  # a malformed mirror is refused before anything is downloaded
    import pooch
    import requests

    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        path = pooch.retrieve(
            url,
            known_hash=f"sha256:{weights.sha256}",
            fname=weights.file_name,
            path=target.parent,
            progressbar=progress,
        )
    except ValueError:  # pooch: hash mismatch (the temporary file is already deleted)
        raise WeightsError(
            f"downloaded {weights.file_name} from {url} but its sha256 does not match the "
            f"official one ({weights.sha256[:12]}…); nothing was kept. Check EMOSEM_WEIGHTS_URL or "
            "your proxy, then retry"
        ) from None
    except requests.HTTPError as exc:
        raise WeightsError(_missing_message(weights, target, f"HTTP {exc.response.status_code} from {url}")) from None
    except (requests.RequestException, OSError) as exc:
        raise WeightsError(_missing_message(weights, target, f"{reason(exc)}: {url}")) from None
    return Path(path)


def _missing_message(weights: SamWeights, target: Path, why: str) -> str:
    return (
        f"SAM checkpoint {weights.file_name} ({weights.size / 1e6:.0f} MB) is not cached and could not "
        f"be downloaded ({why}). Get it with `emosem weights download {weights.name}` where the internet "
        f"is reachable (or from {weights.url}) and copy it to {target}, or pass the file with "
        "--sam-checkpoint PATH (in the annotator: Browse…)"
    )


def reason(exc: BaseException, limit: int = 160) -> str:
    """Why ``exc`` happened, in a few words: the innermost OS error of its chain ("Connection
    refused", "Name or service not known"), else its first line, shortened at a word."""
    innermost, seen = exc, set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.strerror:
            return current.strerror
        innermost = current
        current = current.__cause__ or current.__context__ or getattr(current, "reason", None)
        if not isinstance(current, BaseException):
            current = None
    lines = str(innermost).strip().splitlines()
    text = lines[0] if lines else type(innermost).__name__
    if len(text) > limit:
        text = text[:limit].rsplit(" ", 1)[0] + " …"
    return text


def resolve(spec: str | os.PathLike) -> tuple[Path, str]:
    """``"vit_b"`` or a path -> (local file, its sha256). Hashes of local files are memoised."""
    if isinstance(spec, str) and spec in SAM_WEIGHTS:
        return fetch(spec), SAM_WEIGHTS[spec].sha256
    path = Path(spec).expanduser()
    if not path.is_file():
        raise WeightsError(
            f"SAM checkpoint {spec!s} not found: give one of {', '.join(SAM_WEIGHTS)} or the path of a .pth file"
        )
    return path, file_sha256(path)


def file_sha256(path: Path) -> str:
    """sha256 of a file, memoised beside the weights cache by (path, size, mtime): big files hash once."""
    stat = path.stat()
    key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    memo_path = paths.weights_dir() / "hashes.json"
    try:
        memo = json.loads(memo_path.read_text())
    except (OSError, ValueError):
        memo = {}
    if key in memo:
        return memo[key]
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    memo[key] = digest.hexdigest()
    try:
        from ._io import atomic_write_json

        atomic_write_json(memo_path, memo)
    except OSError:
        pass  # the memo is an optimisation only
    return memo[key]


def registry_name_for_hash(sha256: str) -> str | None:
    for weights in SAM_WEIGHTS.values():
        if weights.sha256 == sha256:
            return weights.name
    return None


def load_sam_state_dict(path: Path) -> dict:
    """Read a SAM ``.pth`` without executing pickled code (``weights_only``), memory-mapped."""
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:  # noqa: BLE001 - any failure here means "not a usable checkpoint"
        raise WeightsError(
            f"{path}: not a readable SAM checkpoint ({reason(exc)}); re-download it "
            "(delete the file and run `emosem weights download`)"
        ) from None
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    if not isinstance(state, dict) or not any(k.startswith("image_encoder.") for k in state):
        raise WeightsError(f"{path}: this file is not a segment-anything checkpoint (no image_encoder weights)")
    return state

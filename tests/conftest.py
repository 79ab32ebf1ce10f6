"""Shared test set-up: isolated user folders, the shared paintings, a tiny EmoSEM."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: public-domain test paintings beside the checkout (never copied into the repository)
PAINTINGS = REPO.parent / "shared" / "paintings"


@pytest.fixture(autouse=True, scope="session")
def _isolated_user_folders(tmp_path_factory):
    """No test reads or writes the real user cache/data folders, and nothing goes online."""
    root = tmp_path_factory.mktemp("emosem-user")
    saved = {k: os.environ.get(k) for k in ("EMOSEM_CACHE_DIR", "EMOSEM_DATA_DIR", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    os.environ["EMOSEM_CACHE_DIR"] = str(root / "cache")
    os.environ["EMOSEM_DATA_DIR"] = str(root / "data")
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    yield root
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def paintings() -> list[Path]:
    found = sorted(PAINTINGS.glob("*.jpg"))
    if not found:
        pytest.fail(f"test paintings not found in {PAINTINGS}; the shared folder must sit beside the checkout")
    return found

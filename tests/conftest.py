"""Shared test set-up: isolated user folders, the Cézanne paintings, a tiny EmoSEM."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from napari_emosem.paintings import painting_paths

REPO = Path(__file__).resolve().parents[1]


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
    return painting_paths()

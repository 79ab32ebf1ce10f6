"""Shared test set-up: isolated user folders, the Cézanne paintings, a tiny EmoSEM."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from napari_emosem.paintings import painting_paths

REPO = Path(__file__).resolve().parents[1]


def _mesa_llvm_loaded() -> bool:
    """Has Mesa's OpenGL driver (llvmpipe under Xvfb: ``libLLVM``) been loaded into this process?"""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:  # not Linux: no Mesa llvmpipe here
        return False
    return "libLLVM" in maps


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    """triton (torch.compile's kernels) bundles its own LLVM: imported into a process where Mesa's
    OpenGL driver has loaded LLVM (a napari test drew under Xvfb) it crashes the whole run with a
    segfault, so which tests pass depended on their order. Once Mesa is in, and only then,
    ``import triton`` raises ImportError ("not installed"), as in the annotator's own workers
    (``_qt.jobs.base.prepare_worker_thread``); before that, and in a run without napari tests,
    triton imports as usual: no test loses an import it could have made."""
    if "triton" not in sys.modules and _mesa_llvm_loaded():
        sys.modules["triton"] = None


@pytest.fixture(autouse=True, scope="session")
def _isolated_user_folders(tmp_path_factory):
    """No test reads or writes the real user cache/data folders, and nothing goes online."""
    root = tmp_path_factory.mktemp("emosem-user")
    names = ("EMOSEM_CACHE_DIR", "EMOSEM_DATA_DIR", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    saved = {k: os.environ.get(k) for k in names}
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


@pytest.fixture
def own_user_folders(tmp_path, monkeypatch):
    """This test's own user cache and data folders (checkpoints, autosaves, settings), so that no
    test sees what another left; model work in thread workers, as users get it."""
    monkeypatch.setenv("EMOSEM_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("EMOSEM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("EMOSEM_SYNC_WORKERS", raising=False)

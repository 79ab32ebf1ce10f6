"""Where napari-emosem keeps files on the user's machine (never in the working directory).

``EMOSEM_CACHE_DIR`` moves the cache (SAM weights, image embeddings); ``EMOSEM_DATA_DIR`` moves
user data (fine-tuned checkpoints, autosaves). Both default to platformdirs' per-user folders.
"""

from __future__ import annotations

import os
from pathlib import Path

APP = "napari-emosem"


def cache_dir() -> Path:
    env = os.environ.get("EMOSEM_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir(APP, appauthor=False))


def data_dir() -> Path:
    env = os.environ.get("EMOSEM_DATA_DIR")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir(APP, appauthor=False))


def weights_dir() -> Path:
    return cache_dir() / "weights"


def embeddings_dir() -> Path:
    return cache_dir() / "embeddings"


def checkpoints_dir() -> Path:
    return data_dir() / "checkpoints"


def autosave_dir() -> Path:
    return data_dir() / "autosave"

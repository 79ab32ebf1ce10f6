"""The annotator's settings: napari's plugin settings (npe2 ``configurations``, napari ≥ 0.9).

The manifest declares two groups, ``model`` (model, device, precision, cache_folder) and ``annotation``
(dataset_folder, annotator, autosave_seconds); napari shows them in Preferences and saves them
to ``<napari config dir>/napari-emosem.yaml``. When napari does not know this plugin's settings
(an older napari, or the plugin not registered, as in some tests), the same names live in memory
for the session only.
"""

from __future__ import annotations

import os
from types import SimpleNamespace
from typing import Any

from ..precision import PRECISIONS

PLUGIN = "napari-emosem"

DEFAULTS: dict[str, dict[str, Any]] = {
    "model": {"model": "", "device": "auto", "precision": "auto", "cache_folder": ""},
    "annotation": {"dataset_folder": "", "annotator": "", "autosave_seconds": 30},
}


def _napari_settings():
    try:
        from napari.settings import get_plugin_settings
    except ImportError:  # napari < 0.9: no plugin settings
        return None
    try:
        return get_plugin_settings(PLUGIN)
    except (KeyError, ValueError):
        return None


class Settings:
    """Typed access to the plugin settings; writes are saved by napari at once."""

    def __init__(self, backend: Any | None = None, **values: Any):
        """``backend``: napari's plugin settings (default), or ``False`` for in-memory settings;
        ``values``: settings to set by property name (``precision="fp32"``)."""
        if backend is None:
            backend = _napari_settings()
        elif backend is False:
            backend = None
        self.persistent = backend is not None
        if backend is None:
            backend = SimpleNamespace(**{group: SimpleNamespace(**values) for group, values in DEFAULTS.items()})
        self._backend = backend
        for name, value in values.items():
            if not isinstance(getattr(type(self), name, None), property):
                raise TypeError(f"Settings has no setting {name!r}")
            setattr(self, name, value)

    def _get(self, group: str, key: str) -> Any:
        return getattr(getattr(self._backend, group), key)

    def _set(self, group: str, key: str, value: Any) -> None:
        if self._get(group, key) != value:
            setattr(getattr(self._backend, group), key, value)

    model = property(lambda s: s._get("model", "model"), lambda s, v: s._set("model", "model", str(v)))
    device = property(lambda s: s._get("model", "device"), lambda s, v: s._set("model", "device", str(v)))
    precision = property(
        # a value napari's settings file holds but this version does not know: the default
        lambda s: s._get("model", "precision") if s._get("model", "precision") in PRECISIONS else "auto",
        lambda s, v: s._set("model", "precision", str(v)),
    )
    cache_folder = property(
        lambda s: s._get("model", "cache_folder"), lambda s, v: s._set("model", "cache_folder", str(v))
    )
    dataset_folder = property(
        lambda s: s._get("annotation", "dataset_folder"),
        lambda s, v: s._set("annotation", "dataset_folder", str(v)),
    )
    annotator = property(
        lambda s: s._get("annotation", "annotator"), lambda s, v: s._set("annotation", "annotator", str(v))
    )
    autosave_seconds = property(
        lambda s: int(s._get("annotation", "autosave_seconds")),
        lambda s, v: s._set("annotation", "autosave_seconds", int(v)),
    )

    def apply_cache_folder(self) -> None:
        """Point the cache (SAM weights, embeddings) at the configured folder, if one is set.

        ``napari_emosem.paths`` reads ``EMOSEM_CACHE_DIR``; an explicit environment variable wins
        over the setting, so scripts and the CLI keep control. Read when the annotator opens.
        """
        folder = (self.cache_folder or "").strip()
        if folder and "EMOSEM_CACHE_DIR" not in os.environ:
            os.environ["EMOSEM_CACHE_DIR"] = os.path.expanduser(folder)

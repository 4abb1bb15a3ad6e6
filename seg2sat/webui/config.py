"""Web UI settings: the shared server settings, plus a few of the UI's own under ``SEG2SAT_UI_``.

What the UI shares with ``seg2sat serve`` and the endpoint (model, device, backend,
fallback, limits, queue, remote endpoint) is :class:`seg2sat.settings.Settings`: the
same ``SEG2SAT_*`` variables, values and defaults. Settings of the UI alone read
``SEG2SAT_UI_<KEY>`` (``SEG2SAT_UI_PORT=0``). The caller's config dict (the CLI's
options, a test's) comes last and wins; its keys are the upper-case names of both.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import asdict, fields
from pathlib import Path

from ..gis.osm import DEFAULT_NOMINATIM_URL
from ..gis.overpass import DEFAULT_OVERPASS_URL, DEFAULT_USER_AGENT
from ..settings import Settings, parse_env_value

log = logging.getLogger(__name__)

UI_PREFIX = "SEG2SAT_UI_"
UI_DEFAULTS: dict = {"HOST": "127.0.0.1", "PORT": 7860, "STORE_SIZE": 200, "STORE_MB": 256.0, "WARMUP": True,
                     "SAMPLES_DIR": None,
                     "OVERPASS_URL": DEFAULT_OVERPASS_URL, "NOMINATIM_URL": DEFAULT_NOMINATIM_URL,
                     "USER_AGENT": DEFAULT_USER_AGENT, "OSM_CACHE_DIR": None}
"""The UI's own keys: where to listen, generated images kept in memory (how many, how many MiB of PNG), load the
model at start, sample masks;
the OpenStreetMap services behind "Start from a place" (as ``seg2sat osm-mask``'s options) and their cache."""
SHARED = tuple(f.name.upper() for f in fields(Settings))
"""Keys resolved through :class:`Settings`: MODEL, CONTROLNET, DEVICE, BACKEND, FALLBACK, MAX_PIXELS, …"""
_RENAMED = {"SEG2SAT_HOST": "SEG2SAT_UI_HOST", "SEG2SAT_PORT": "SEG2SAT_UI_PORT",
            "SEG2SAT_STORE_SIZE": "SEG2SAT_UI_STORE_SIZE", "SEG2SAT_WARMUP": "SEG2SAT_UI_WARMUP",
            "SEG2SAT_SAMPLES_DIR": "SEG2SAT_UI_SAMPLES_DIR", "SEG2SAT_MAX_UPLOAD_MB": "SEG2SAT_MAX_BODY_MB"}


def resolve(config: Mapping | None = None, environ: Mapping[str, str] | None = None) -> tuple[Settings, dict]:
    """(shared settings, the full config dict): defaults, then the environment, then ``config``."""
    env = os.environ if environ is None else environ
    for old, new in _RENAMED.items():
        if env.get(old, "").strip():
            log.warning("%s is no longer read; the web UI reads %s", old, new)
    values = dict(UI_DEFAULTS)
    for key, default in UI_DEFAULTS.items():
        text = env.get(UI_PREFIX + key, "").strip()
        if text:
            values[key] = parse_env_value(UI_PREFIX + key, text, type(default) if default is not None else str)
    values.update(config or {})
    settings = Settings.from_env(env, **{key.lower(): values.get(key) for key in SHARED})
    values.update({key.upper(): value for key, value in asdict(settings).items()})
    return settings, values


def default_samples_dir() -> Path:
    """The repository's sample masks (``examples/masks``), next to the package in a checkout."""
    return Path(__file__).resolve().parents[2] / "examples" / "masks"

"""Web UI settings: defaults, overridden by ``SEG2SAT_*`` environment variables, then by the caller.

Every key can be set from the environment with the ``SEG2SAT_`` prefix (``SEG2SAT_BACKEND=remote``,
``SEG2SAT_MODEL=./tiny``, ``SEG2SAT_QUEUE_SIZE=8``); values that parse as JSON numbers or booleans
become numbers or booleans. The CLI passes its options as the last layer.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_PREFIX = "SEG2SAT"

DEFAULTS: dict = {
    "BACKEND": "local",
    "MODEL": None,
    "CONTROLNET": None,
    "DEVICE": None,
    "ENDPOINT_URL": None,
    "ENDPOINT_TOKEN_ENV": "SEG2SAT_ENDPOINT_TOKEN",
    "ENDPOINT_TIMEOUT": 600,
    "HOST": "127.0.0.1",
    "PORT": 7860,
    "QUEUE_SIZE": 4,
    "STORE_SIZE": 200,
    "MAX_UPLOAD_MB": 32,
    "MAX_PIXELS": 2048 * 2048,
    "WARMUP": True,
    "FALLBACK": True,
    "SAMPLES_DIR": None,
}
"""Keys the UI reads. ``ENDPOINT_TOKEN_ENV`` names the variable holding the token (never the token itself)."""


def default_samples_dir() -> Path:
    """The repository's sample masks (``examples/masks``), next to the package in a checkout."""
    return Path(__file__).resolve().parents[2] / "examples" / "masks"


def endpoint_token(config: dict) -> str | None:
    """The remote endpoint's token, read from the environment at call time so it never sits in a file."""
    name = config.get("ENDPOINT_TOKEN_ENV") or "SEG2SAT_ENDPOINT_TOKEN"
    return os.environ.get(name) or os.environ.get("HF_TOKEN") or None

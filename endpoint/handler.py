"""Hugging Face Inference Endpoints handler for Seg2Sat (a "custom handler" endpoint).

The endpoint's toolkit imports this file from the repository it serves, builds one
``EndpointHandler(path=REPOSITORY_FOLDER)`` at start-up and calls it once per request
with the JSON body. All the protocol work lives in :mod:`seg2sat.serving`, shared
with ``seg2sat serve`` and the web UI, so this stays a thin shell.

``seg2sat`` is imported from a ``seg2sat/`` folder beside this file when there is one
(the repository built by ``endpoint/build_repository.py``), else from the installed
package (``pip install`` of this project, see endpoint/requirements.txt).
"""

from __future__ import annotations

import os
import sys
from typing import Any

_HERE = os.path.dirname(os.path.abspath(__file__))
if os.path.isdir(os.path.join(_HERE, "seg2sat")) and _HERE not in sys.path:
    sys.path.insert(0, _HERE)

from seg2sat.serving import Service, ServeConfig  # noqa: E402


class EndpointHandler:
    """Loads the pipeline once; each call serves one request or raises ValueError naming the bad field."""

    def __init__(self, path: str = ""):
        # A full pipeline folder or a ControlNet folder at `path` wins; else SEG2SAT_MODEL /
        # SEG2SAT_CONTROLNET; else the default hub ids. Device: CUDA when present, else CPU.
        self.service = Service(ServeConfig.from_env(), repository=path or None)
        if self.service.config.backend == "diffusion":
            self.service.pipeline  # noqa: B018 - load at start-up, not on the first request

    def __call__(self, data: dict[str, Any]) -> dict[str, Any]:
        return self.service(data)

"""Server settings shared by ``seg2sat serve``, the endpoint handler and ``seg2sat ui``: one vocabulary.

Every field reads the environment variable ``SEG2SAT_<FIELD>`` (``SEG2SAT_BACKEND``,
``SEG2SAT_MAX_PIXELS``…), with the same values and the same default whichever program
reads it; command-line options come last and win. Settings of the web UI alone live in
:mod:`seg2sat.webui.config` under their own prefix, ``SEG2SAT_UI_``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from .pipelines import DTYPES
from .request import BACKEND_ALIASES, BACKENDS, ImageLimits

PREFIX = "SEG2SAT_"
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


CHOICES = {"backend": (*BACKENDS, *BACKEND_ALIASES), "dtype": DTYPES}
"""The settings that take one of a few names (``BACKEND_ALIASES``: older names still read)."""


def _check_choices(from_env: Mapping[str, Any]) -> None:
    """A bad name read from the environment names its variable: the user may have set it long ago, and no
    front end's spelling of the field (``--dtype``) says where it came from."""
    for name, choices in CHOICES.items():
        if name in from_env and from_env[name] not in choices:
            shown = ", ".join(c for c in choices if c not in BACKEND_ALIASES)
            raise ValueError(f"{PREFIX}{name.upper()} must be one of {shown}, got {from_env[name]!r}")


@dataclass(frozen=True)
class Settings:
    """What a server loads and what it accepts. The docstring of each field is its documentation."""

    model: str | None = None
    """Base model hub id or folder, or a full pipeline folder (default SD 2.1 base)."""
    controlnet: str | None = None
    """ControlNet hub id or folder (default the Seg2Sat ControlNet, or the one inside ``model``)."""
    controlnet_subfolder: str | None = None
    """A checkpoint inside the ControlNet repository, e.g. ``v2/checkpoint-14000/controlnet`` (README, Real weights)."""
    device: str | None = None
    """cuda, mps or cpu (default the best available)."""
    backend: str = "diffusion"
    """Backend of requests that name none: diffusion, procedural or remote (``local`` = diffusion)."""
    fallback: bool = True
    """Use the procedural renderer when the diffusion weights are missing (and say so)."""
    max_pixels: int = 2048 * 2048
    """Largest image (mask, image, region, output) in pixels."""
    min_side: int = 32
    """Smallest side of an image in pixels."""
    max_body_mb: float = 32.0
    """Largest request body in MiB."""
    queue_size: int = 8
    """Requests that may wait for the device while one runs; more are refused at once (503 / 429)."""
    lora: str | None = None
    """A LoRA (hub id or folder) fused into the UNet at load, e.g. a few-step TCD LoRA."""
    lora_scale: float = 1.0
    """How strongly the LoRA is fused."""
    compile: bool = False
    """torch.compile the UNet and ControlNet (GPUs; the first image after start is slow)."""
    dtype: str = "auto"
    """Precision: auto (bf16/fp16 on GPUs, float32 on CPUs), float32, bfloat16 (fast on CPUs with AMX) or float16."""
    low_memory: bool = False
    """Model CPU offload and VAE slicing/tiling, for 4-6 GB GPUs (a no-op on CPU-only machines)."""
    endpoint_url: str | None = None
    """remote backend: the endpoint's URL."""
    endpoint_token_env: str = "SEG2SAT_ENDPOINT_TOKEN"
    """remote backend: the variable holding the endpoint's token (then HF_TOKEN); never the token itself."""
    endpoint_timeout: float = 600.0
    """remote backend: seconds to wait for an answer."""
    allowed_hosts: str = ""
    """More Host names the servers answer besides localhost, 127.0.0.1, [::1] and their own address (a reverse
    proxy's name; ``*`` turns the check off): other Hosts get 403, which stops DNS rebinding."""
    allowed_origins: str = ""
    """serve: web pages (``http://host:port``) that may call it from the browser, with CORS; others get 403."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Defaults, then ``SEG2SAT_*`` variables, then ``overrides`` (those not None)."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            var = PREFIX + f.name.upper()
            if env.get(var, "").strip():
                values[f.name] = parse_env_value(var, env[var].strip(), type(f.default) if f.default is not None else str)
        given = {k: v for k, v in overrides.items() if v is not None}
        _check_choices({k: v for k, v in values.items() if k not in given})
        return cls(**{**values, **given}).checked()

    def checked(self) -> Settings:
        backend = BACKEND_ALIASES.get(self.backend, self.backend)
        if backend not in BACKENDS:
            raise ValueError(f"`backend` must be one of {', '.join(BACKENDS)}, "
                             f"got {self.backend!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"`dtype` must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if self.min_side < 1 or self.max_pixels < self.min_side**2 or self.queue_size < 0 or self.max_body_mb <= 0:
            raise ValueError(f"inconsistent limits: min_side {self.min_side}, max_pixels {self.max_pixels}, "
                             f"queue_size {self.queue_size}, max_body_mb {self.max_body_mb}")
        return replace(self, backend=backend)

    def load_options(self) -> dict[str, Any]:
        """The keyword arguments of :func:`seg2sat.pipelines.load_pipeline` that make it faster or smaller."""
        return {"lora": self.lora, "lora_scale": self.lora_scale, "compile": self.compile, "low_memory": self.low_memory,
                "dtype": self.dtype, "controlnet_subfolder": self.controlnet_subfolder}

    @property
    def limits(self) -> ImageLimits:
        return ImageLimits(self.max_pixels, self.min_side)

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * 2**20)

    def endpoint_token(self, environ: Mapping[str, str] | None = None) -> str | None:
        """The remote endpoint's token from the environment (never from a file or an option), stripped.

        A token file with CRLF endings read by ``$(cat …)`` leaves a ``\\r``: surrounding whitespace
        is dropped. One with a control character inside is refused with a message that does not
        contain it (the token must never reach an error, a log line or a page).
        """
        env = os.environ if environ is None else environ
        for var in (self.endpoint_token_env, "HF_TOKEN"):
            token = (env.get(var) or "").strip()
            if token:
                if not all(32 < ord(c) < 127 for c in token):  # header-safe ASCII, nothing else
                    raise ValueError(f"the token in {var} contains a space, a control or a non-ASCII character; "
                                     "set it to the token alone")
                return token
        return None


def parse_env_value(var: str, text: str, cast: type) -> Any:
    """A variable's text as ``cast`` (bool: true/false, 1/0, yes/no, on/off); a bad one names the variable."""
    if cast is bool:
        if text.lower() in _TRUE + _FALSE:
            return text.lower() in _TRUE
        raise ValueError(f"environment variable {var} must be true or false, got {text!r}")
    try:
        return cast(text)
    except ValueError:
        raise ValueError(f"environment variable {var} must be {'an integer' if cast is int else 'a number'}, "
                         f"got {text!r}") from None

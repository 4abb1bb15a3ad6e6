"""Options shared by the commands, declared once (rasterio's ``rio/options.py`` is the model), and their spellings.

The core names a setting by its field, in backticks (`` `model` ``, `` `dtype` ``), never by
a flag: the same sentence reaches a terminal, an HTTP client and the web page. Each front
end spells the fields its own way with :func:`spell`, as :meth:`RequestError.renamed`
does for request fields.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from .pipelines import DTYPES
from .request import NUMERIC_FIELDS, SCHEDULERS

FIELDS = ("model", "controlnet", "controlnet_subfolder", "device", "lora", "lora_scale", "compile", "low_memory",
          "dtype", "fallback")
"""The load settings a message may name (fields of :class:`seg2sat.settings.Settings`)."""


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


MAP_FLAGS = {"place": "PLACE", "size": "--size", "resolution": "--resolution", "source": "--from", "out": "--out",
             "max_pixels": "--max-pixels", "yes": "--yes", "crs": "--crs", "user_agent": "--user-agent",
             "overpass_url": "--overpass-url"}
"""The map fields a GIS message may name (arguments of :func:`seg2sat.gis.osm.place_mask` and
:func:`seg2sat.gis.plan.check`) -> their flags (``source`` is ``--from``: ``from`` is a Python keyword;
``place`` is PLACE, osm-mask's argument and the value of generate's ``--place``)."""

MAP_LABELS = {"place": "place", "size": "size (px)", "resolution": "number of m/px", "source": "OSM file",
              "out": "on the command line", "max_pixels": "pixel limit", "yes": "yes", "crs": "CRS",
              "user_agent": "user agent", "overpass_url": "Overpass server"}
"""The same fields as the web page says them: its "Start from a place" form asks for a size in px and
m/px ("type a larger `resolution`" reads "type a larger number of m/px"); the others never come from the
page (a map too large for memory needs an output folder "(`out`)": "on the command line")."""

SERVER_FIELDS = ("backend", "allowed_hosts", "allowed_origins", "endpoint_url")
"""The servers' own settings a message may name (fields of :class:`seg2sat.settings.Settings` too)."""

_ENGINE_SERVER = {"`fallback` off": "SEG2SAT_FALLBACK=false (--no-fallback)",
                  **{f"`{name}`": f"SEG2SAT_{name.upper()} ({_flag(name)})" for name in (*FIELDS, *SERVER_FIELDS)}}

SPELLINGS: dict[str, dict[str, str]] = {
    "cli": {"`fallback` off": "--no-fallback", **{f"`{name}`": _flag(name) for name in (*FIELDS, *SERVER_FIELDS)},
            **{f"`{name}`": flag for name, flag in MAP_FLAGS.items()}},
    "server": {**_ENGINE_SERVER, **{f"`{name}`": name for name in MAP_FLAGS}},
    "ui": {**_ENGINE_SERVER, **{f"`{name}`": label for name, label in MAP_LABELS.items()}},
}
"""Front end -> how it names each field: flags on the command line; variables (and flags) for the servers
and for the settings the web UI's operator gives; the page's own words for the map fields."""


def flags_of(parser: argparse.ArgumentParser) -> dict[str, str]:
    """`` `dest` `` -> how this command's user writes it: its first option string (``-n``, ``--train_data_dir``),
    or a positional's metavar (SOURCE); read from the parser, so every command spells its own fields."""
    return {f"`{a.dest}`": a.option_strings[0] if a.option_strings else str(a.metavar or a.dest.upper())
            for a in parser._actions if a.dest not in (argparse.SUPPRESS, "help")}


def command_parser(parser: argparse.ArgumentParser, name: str | None) -> argparse.ArgumentParser | None:
    """The sub-command ``name``'s own parser inside ``parser`` (None when there is none)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices.get(name)
    return None


def spell(text: str, front_end: str, parser: argparse.ArgumentParser | None = None) -> str:
    """``text`` with each `` `field` `` written as ``front_end`` names it (``cli``, ``server`` or ``ui``).

    ``parser``: the command's own parser, whose options name its fields first (synthesize's `` `source` `` is
    its SOURCE, not generate's --from); phrases such as "`fallback` off" are read before single fields.
    """
    table = SPELLINGS[front_end]
    phrases = {token: name for token, name in table.items() if not token.endswith("`")}
    for step in (phrases, flags_of(parser) if parser is not None else {}, table):
        for token, name in step.items():
            text = text.replace(token, name)
    return text


def add_model_options(p: argparse.ArgumentParser, env: bool = False) -> dict[str, argparse.Action]:
    """--model, --controlnet, --controlnet-subfolder, --device: which weights, on which device.

    Returns the actions by flag, for a script that needs one of them changed (required, other help).
    """
    var = _env_hint(env)
    actions = [
        p.add_argument("--model", default=None, metavar="ID_OR_DIR",
                       help="base model hub id or folder, or a full ControlNet pipeline (default: a verified copy "
                            f"of SD 2.1 base, see README, Real weights){var('MODEL')}"),
        p.add_argument("--controlnet", default=None, metavar="ID_OR_DIR",
                       help="ControlNet hub id or folder (default rgres/Seg2Sat-sd-controlnet, or the one inside "
                            f"--model){var('CONTROLNET')}"),
        p.add_argument("--controlnet-subfolder", default=None, metavar="PATH",
                       help="a checkpoint inside the ControlNet repository, e.g. v2/checkpoint-14000/controlnet "
                            f"(README, Real weights){var('CONTROLNET_SUBFOLDER')}"),
        p.add_argument("--device", default=None, help=f"cuda, mps or cpu (default: the best available){var('DEVICE')}"),
    ]
    return {action.option_strings[0]: action for action in actions}


def model_arguments(args: argparse.Namespace) -> dict[str, str | None]:
    """What :func:`add_model_options` parsed, as keyword arguments (model, controlnet, controlnet_subfolder, device)."""
    return {name: getattr(args, name, None) for name in ("model", "controlnet", "controlnet_subfolder", "device")}


def add_fallback_option(p: argparse.ArgumentParser, env: bool = False) -> None:
    """--no-fallback: missing weights are an error instead of the renderer standing in."""
    p.add_argument("--no-fallback", dest="fallback", action="store_false", default=None,
                   help="fail when the diffusion weights cannot be loaded, instead of using the procedural renderer"
                        f"{_env_hint(env)('FALLBACK=false')}")


LOCAL_BACKENDS = ("diffusion", "procedural")
"""The backends a command runs in its own process (the web UI can also forward to a remote endpoint)."""


def add_backend_option(p: argparse.ArgumentParser, *, default: str | None = None, remote: bool = False,
                       checked: bool = True, env: bool = False) -> None:
    """--backend: the ControlNet model or the offline renderer (and, for the web UI, a remote endpoint).

    ``checked=False`` leaves the value to the command, which explains a refused one in its own words.
    """
    names = (*LOCAL_BACKENDS, "remote") if remote else LOCAL_BACKENDS
    more = "; remote: an inference endpoint (--endpoint-url)" if remote else ""
    p.add_argument("--backend", choices=(*names, "local") if checked else None, default=default,
                   metavar="|".join(names),
                   help="diffusion: the ControlNet model (default; masks larger than its 512 px tile are made in "
                   f"overlapping tiles; 'local' is its older name); procedural: the built-in renderer, no weights, "
                   f"instant, any size{more}{_env_hint(env)('BACKEND')}")


def add_sampling_options(p: argparse.ArgumentParser) -> None:
    """--steps, --guidance, --controlnet-scale, --scheduler, --cache-interval, --negative: how each image is sampled."""

    def numeric(flag: str, name: str) -> None:
        add_numeric_option(p, flag, name)

    numeric("--steps", "steps")
    numeric("--guidance", "guidance_scale")
    numeric("--controlnet-scale", "controlnet_scale")
    p.add_argument("--scheduler", choices=SCHEDULERS, default=None,
                   help=f"sampler (default {SCHEDULERS[0]}); lcm and tcd are for few-step LoRAs (--lora)")
    numeric("--cache-interval", "cache_interval")
    p.add_argument("--negative", dest="negative_prompt", default=None, help="negative prompt")


def add_numeric_option(p: argparse.ArgumentParser, flag: str, name: str, default: int | float | None = None) -> None:
    """One numeric request field (:data:`seg2sat.request.NUMERIC_FIELDS`) as a flag; its help shows the default.

    ``default`` None leaves the value to the core; a script that does the sampling itself gives one.
    """
    field = NUMERIC_FIELDS[name]
    shown = field.default if default is None else default
    p.add_argument(flag, dest=name, type=field.cast, default=default, help=f"{field.help} (default {shown})")


def add_load_options(p: argparse.ArgumentParser, env: bool = False) -> None:
    """--lora, --lora-scale, --compile, --low-memory, --dtype: how the pipeline is loaded (generate…, serve, ui)."""
    var = _env_hint(env)
    p.add_argument("--lora", default=None, metavar="ID_OR_DIR",
                   help="a LoRA fused into the UNet at load, e.g. the few-step h1t/TCD-SD21-base-LoRA with "
                        f"--scheduler tcd --steps 4 --guidance 1{var('LORA')}")
    p.add_argument("--lora-scale", type=float, default=None,
                   help=f"how strongly the LoRA is fused (default 1.0){var('LORA_SCALE')}")
    p.add_argument("--compile", action="store_true", default=None,
                   help=f"torch.compile the UNet and ControlNet: faster on GPUs, the first image is slow{var('COMPILE')}")
    p.add_argument("--low-memory", action="store_true", default=None,
                   help=f"model CPU offload and VAE slicing/tiling, for 4-6 GB GPUs{var('LOW_MEMORY')}")
    p.add_argument("--dtype", choices=DTYPES, default=None,
                   help="precision (default auto: bf16/fp16 on GPUs, float32 on CPUs); bfloat16 is ~2-4x faster "
                        f"on CPUs with AMX or AVX-512 BF16{var('DTYPE')}")


def add_engine_options(p: argparse.ArgumentParser, env: bool = False) -> None:
    """Everything that decides what the engine loads: the weights, the fallback and the load options."""
    add_model_options(p, env)
    add_fallback_option(p, env)
    add_load_options(p, env)


def overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The engine settings given on the command line, for ``Settings.from_env`` (None: not given)."""
    return {name: getattr(args, name, None) for name in FIELDS}


def print_engine_notes(engine) -> None:
    """What the engine said on loading (the fallback's cause, load notes, the CPU tip), once, in flags, on stderr."""
    for line in filter(None, [engine.note, *engine.notes]):
        print(f"note: {spell(line, 'cli')}", file=sys.stderr, flush=True)
    if engine.tip:
        print(f"tip: {spell(engine.tip, 'cli')}", file=sys.stderr, flush=True)


def _env_hint(env: bool):
    return (lambda name: f" (env SEG2SAT_{name})") if env else (lambda name: "")


def env_flag_default(name: str) -> str | None:
    """A variable's value as an option's default where a command reads no Settings (download, doctor)."""
    return os.environ.get(f"SEG2SAT_{name}") or None

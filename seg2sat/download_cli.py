"""``seg2sat download``: fetch and verify every weight a run needs, for machines that will have no network.

By default into the Hugging Face cache, so the same command line later runs with
``HF_HUB_OFFLINE=1``; with ``--dir DIR`` also into ``DIR/base``, ``DIR/controlnet`` and
``DIR/lora``, folders to copy to a GPU box and pass as ``--model``/``--controlnet``/``--lora``.
A killed download keeps every file it finished (each is written under a temporary name and renamed
when whole), so running it again fetches only the rest.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from .options import add_load_options, add_model_options
from .pipelines import is_full_pipeline, looks_like_path
from .weights import OFFICIAL_BASE, Fetched, export, fetch_controlnet, fetch_named, fetch_verified


def register(sub) -> None:
    p = sub.add_parser("download", help="fetch and verify the weights a run needs (then works offline)",
                       description="Fetch the base model (a verified copy of SD 2.1 base by default), the ControlNet "
                       "and a LoRA into the Hugging Face cache, checking the SHA256 of the known weights; with --dir "
                       "also into DIR/base, DIR/controlnet and DIR/lora. After a kill, run it again: it fetches only "
                       "what is missing.")
    add_weight_arguments(p)
    p.add_argument("--dir", type=Path, default=None,
                   help="also put the folders here (hard links where possible), to copy to a machine without network")
    p.set_defaults(func=_cmd_download)


def add_weight_arguments(p: argparse.ArgumentParser) -> None:
    """The weights of a run, with ``generate``'s very options (shared with ``seg2sat doctor``): copy them over."""
    add_model_options(p)
    add_load_options(p)
    p.set_defaults(controlnet_subfolder=os.environ.get("SEG2SAT_CONTROLNET_SUBFOLDER") or None)


def _cmd_download(args) -> None:
    parts: list[tuple[str, Path]] = []
    base = _base(args.model)
    parts.append(("base", base))
    if args.controlnet or args.controlnet_subfolder or not is_full_pipeline(base):
        fetched = fetch_controlnet(args.controlnet, args.controlnet_subfolder, progress=True)
        print(_said("ControlNet", fetched, args.controlnet_subfolder))
        parts.append(("controlnet", fetched.folder))
    if args.lora:
        folder = fetch_named(args.lora, kind="lora", progress=True)
        print(f"LoRA: {args.lora} (unverified) in {folder}")
        parts.append(("lora", folder))
    if args.dir is None:
        print("done: the same command line now runs without network (HF_HUB_OFFLINE=1)")
        return
    for name, folder in parts:
        print(f"{name}: {export(folder, args.dir / name)}")
    flags = " ".join(f"--{'model' if name == 'base' else name} {args.dir / name}" for name, _ in parts)
    print(f"done: copy {args.dir} to the other machine and pass {flags}")


def _base(model: str | None) -> Path:
    if model and looks_like_path(model):
        raise ValueError(f"--model {model!r} is a folder: nothing to download (pass a hub id, or none for SD 2.1 base)")
    if model and model != OFFICIAL_BASE:
        folder = fetch_named(model, progress=True)
        print(f"base model: {model} (as named, unverified) in {folder}")
        return folder
    fetched = fetch_verified("base", progress=True)
    for note in fetched.notes:
        print(f"note: {note}")
    print(_said("base model", fetched))
    return fetched.folder


def _said(what: str, fetched: Fetched, subfolder: str | None = None) -> str:
    where = f"{fetched.repo}/{subfolder.strip('/')}" if subfolder else fetched.repo
    proof = "SHA256 verified" if fetched.verified else "unverified: no published hash"
    return f"{what}: {where} ({proof}) in {fetched.folder}"

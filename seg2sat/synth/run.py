"""The synthesize loop: items shared out over accelerate's processes, resumable, each row made exactly once.

Every process opens the same source and takes items ``i`` with ``i % processes ==
rank``; what the output already holds (an item's id *and* content key) is skipped, so
rerunning a killed command makes only what is missing. The main process checks the
output folder first (refusing one that holds a different run unless told what to do)
and, once every process is done, drops rows of items that are gone or changed and
writes the index and the dataset card. Each image is one seed's call of the engine,
so one process or eight give byte-identical rows.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import __version__, prompts
from ..gis.files import write_text
from ..request import Request
from . import card, hardness, layouts, seeds, writers
from .sources import Unreadable, open_source

MANIFEST = "synthesize.json"
OWN = ("data", "img", "msk", "ign", writers.STATE, "README.md", "index.json", MANIFEST)
"""Everything a run writes in its folder: what ``--overwrite`` removes, and nothing else."""


@dataclass
class Options:
    """What to make; ``None`` numbers take the request defaults (:data:`seg2sat.request.NUMERIC_FIELDS`)."""

    source: str
    out: Path
    num_images: int = 1
    format: str = "parquet"
    mask_column: str | None = None
    caption_column: str | None = None
    split: str = "train"
    styles: list[tuple[str, float]] = field(default_factory=lambda: [("", 1.0)])
    layouts: list[str] = field(default_factory=lambda: [""])
    seed: int = 0
    negative_prompt: str | None = None
    steps: int | None = None
    guidance_scale: float | None = None
    controlnet_scale: float | None = None
    scheduler: str | None = None
    cache_interval: int | None = None
    backend: str = "diffusion"
    shard_rows: int = 500
    resume: bool = False
    overwrite: bool = False
    progress: bool = True
    filter_with: str | None = None
    filter_margin: float = 1.25
    min_score: float | None = None
    hard_first: bool = False


@dataclass
class Report:
    """What a run did, over all processes (the main process's view once every one is done)."""

    items: int = 0
    made_items: int = 0
    made_images: int = 0
    already_done: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    rows: int = 0
    seconds: float = 0.0
    processes: int = 1
    resumed: bool = False
    dropped: int = 0

    @property
    def images_per_s(self) -> float:
        return self.made_images / self.seconds if self.seconds > 0 else 0.0


def request(opts: Options, ids, prompt: str, seed: int, style: str) -> Request:
    return Request.build("generate", mask=ids, prompt=prompt, seed=seed, num_images=1, steps=opts.steps,
                         guidance_scale=opts.guidance_scale, controlnet_scale=opts.controlnet_scale,
                         negative_prompt=opts.negative_prompt, style=style or None, scheduler=opts.scheduler,
                         cache_interval=opts.cache_interval, backend=opts.backend)


def provenance(engine, opts: Options) -> dict[str, str]:
    """What made the images: the backend that runs, the weights (id, revision, hash), the sampler, the speed options."""
    probe = request(opts, _probe_ids(), "Aerial view", 0, "")
    backend = engine.backend_for(probe)
    info = {"backend": backend, "model": "", "controlnet": "", "revision": "", "weights_sha256": "", "sampler": "",
            "speed": "", "seg2sat_version": __version__}
    if backend != "diffusion":
        return info
    pipe, settings = engine.pipeline, engine.settings
    net = getattr(pipe, "controlnet", None)
    model_path = str(getattr(pipe.config, "_name_or_path", "") or "")
    net_path = str(getattr(getattr(net, "config", None), "_name_or_path", "") or "")
    speed = {"dtype": settings.dtype, "compile": settings.compile, "low_memory": settings.low_memory,
             "lora": settings.lora, "lora_scale": settings.lora_scale if settings.lora else None,
             "cache_interval": probe.cache_interval}
    info.update(model=settings.model or engine.model or model_path, controlnet=settings.controlnet or net_path,
                revision=_revision(net_path) or _revision(model_path), weights_sha256=_weights_sha(net_path),
                sampler=probe.scheduler, speed=json.dumps({k: v for k, v in speed.items() if v not in (None, False)},
                                                          sort_keys=True))
    return info


def _probe_ids():
    import numpy as np

    return np.full((64, 64), 11, np.uint8)


def _revision(path: str) -> str:
    """The Hub commit of a cached snapshot (``…/snapshots/<sha>/…``); "" for local folders."""
    found = re.search(r"snapshots[/\\]([0-9a-f]{40})", path)
    return found.group(1) if found else ""


def _weights_sha(path: str) -> str:
    """SHA-256 of the ControlNet's weights file: free for Hub downloads (the blob's name), hashed otherwise."""
    folder = Path(path)
    files = sorted(folder.glob("diffusion_pytorch_model*.safetensors")) or sorted(folder.glob("diffusion_pytorch_model*.bin"))
    if not files:
        return ""
    real = files[0].resolve()
    if real.parent.name == "blobs" and re.fullmatch(r"[0-9a-f]{64}", real.name):
        return real.name
    digest = hashlib.sha256()
    with real.open("rb") as f:
        while chunk := f.read(16 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def manifest_of(opts: Options, prov: dict[str, str], scorer=None) -> dict[str, Any]:
    """Everything that decides the rows: two runs with the same manifest make the same dataset."""
    probe = request(opts, _probe_ids(), "Aerial view", 0, "")
    quality = {"filter": {**scorer.describe(), "min_score": opts.min_score, "hard_first": opts.hard_first}} \
        if scorer is not None else {}  # absent without a filter: older runs' manifests stay the same
    return {**quality, "source": str(Path(opts.source).resolve()) if Path(opts.source).exists() else opts.source,
            "format": opts.format, "mask_column": opts.mask_column, "caption_column": opts.caption_column,
            "split": opts.split, "num_images": opts.num_images, "styles": [list(s) for s in opts.styles],
            "layouts": opts.layouts, "seed": opts.seed, "negative_prompt": opts.negative_prompt or "",
            "steps": probe.steps, "guidance_scale": probe.guidance_scale, "controlnet_scale": probe.controlnet_scale,
            "provenance": prov}


def check_out(out: Path, manifest: dict, resume: bool, overwrite: bool) -> str:
    """What to do with the output folder: new, resume (same run), continue (--resume), replace (--overwrite)."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"`out`: {out} is a file, not a folder")
    if not out.exists() or not any(out.iterdir()):
        return "new"
    path = out / MANIFEST
    if not path.is_file():
        if overwrite:
            return "replace"
        raise ValueError(f"`out`: {out} is not empty and holds no synthesize run; choose an empty folder, "
                         "or `overwrite` to write into it")
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        old = {}
    if _same(old, manifest):
        return "replace" if overwrite else "resume"
    if overwrite:
        return "replace"
    if resume and bool(old.get("filter")) != bool(manifest.get("filter")):
        raise ValueError(f"`resume`: {out} was made {'with' if old.get('filter') else 'without'} `filter_with`, "
                         "so its rows and these would not share the score and ignore columns; `overwrite` starts again")
    if resume:
        return "continue"
    changed = ", ".join(_changes(old, manifest)) or "its settings"
    raise ValueError(f"`out`: {out} holds a different run ({changed}); `resume` keeps its rows and makes the "
                     "missing ones with these options, `overwrite` starts again")


def _same(old: dict, new: dict) -> bool:
    return json.dumps(old, sort_keys=True) == json.dumps(json.loads(json.dumps(new)), sort_keys=True)


def _changes(old: dict, new: dict) -> list[str]:
    new = json.loads(json.dumps(new))
    flat_old = {**{k: v for k, v in old.items() if k != "provenance"}, **old.get("provenance", {})}
    flat_new = {**{k: v for k, v in new.items() if k != "provenance"}, **new.get("provenance", {})}
    return [f"{k} {flat_old.get(k)!r} -> {flat_new.get(k)!r}" for k in flat_new if flat_old.get(k) != flat_new.get(k)][:3]


def check_quality(opts: Options) -> None:
    """--min-score and --hard-first need a filter model; a score is a fraction."""
    if opts.min_score is not None and not opts.filter_with:
        raise ValueError("`min_score`: needs `filter_with` MODEL, the model whose score it compares")
    if opts.hard_first and not opts.filter_with:
        raise ValueError("`hard_first`: needs `filter_with` MODEL, the model that finds the hard masks")
    if opts.min_score is not None and not 0 <= opts.min_score <= 1:
        raise ValueError(f"`min_score`: a score between 0 and 1 (the image's mean IoU), got {opts.min_score:g}")
    if not opts.filter_margin > 0:
        raise ValueError(f"`filter_margin`: must be positive, got {opts.filter_margin}")


def synthesize(opts: Options, engine, state=None, scorer=None) -> Report:
    """Make the dataset in ``opts.out``; ``state``: accelerate's PartialState (None: this process alone);
    ``scorer``: the loaded :class:`~seg2sat.synth.filter.Filter` (None: loaded here from ``opts.filter_with``)."""
    check_quality(opts)
    state = state or _single()
    source = open_source(opts.source, opts.mask_column, opts.caption_column, opts.split, exclude=opts.out)
    if opts.format == "geotiff" and not source.geotiff:
        raise ValueError("`format` geotiff: every mask must be a GeoTIFF (the pairs are written on its grid); "
                         f"{opts.source} holds other masks")
    if opts.format == "geotiff" and opts.layouts != [""]:
        raise ValueError("`augment`: a transformed layout no longer lies on its GeoTIFF's grid; use it with "
                         "`format` parquet or folder")
    if opts.filter_with and scorer is None:
        from .filter import Filter

        scorer = Filter(opts.filter_with, margin=opts.filter_margin)
    prov = provenance(engine, opts)
    manifest = manifest_of(opts, prov, scorer)
    out = opts.out
    action = check_out(out, manifest, opts.resume, opts.overwrite)  # every process: all raise, or none
    state.wait_for_everyone()
    if state.is_main_process:
        if action == "replace":
            for name in OWN:
                target = out / name
                shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
        out.mkdir(parents=True, exist_ok=True)
        (out / writers.STATE).mkdir(exist_ok=True)
        for pattern in ("report-*.json", "progress-*", "phase1-*.json"):
            for old in (out / writers.STATE).glob(pattern):
                old.unlink()
        write_text(out / MANIFEST, json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    state.wait_for_everyone()

    work = _Work(opts, engine, source, state, prov, scorer)
    if opts.hard_first:
        work.run_pass(lambda item: [(layout, 0) for layout in opts.layouts], "pass 1/2: image 0 of each mask")
        hardness.share_seen(out, state.process_index, sorted(work.seen))
        state.wait_for_everyone()
        counts = hardness.allocate(hardness.phase_scores(out, opts.format, hardness.all_seen(out)), opts.num_images)
        work.run_pass(lambda item: [(layout, i) for layout in opts.layouts for i in range(1, counts.get(item, 1))],
                      "pass 2/2: the hard masks' other images")
    else:
        work.run_pass(lambda item: [] if item in work.done_items else
                      [(layout, i) for layout in opts.layouts for i in range(opts.num_images)], "")
    mine_report = {"seen": sorted(work.seen), "made_items": len(work.made), "made_images": work.made_images,
                   "already_done": len(work.seen - work.made), "skipped": work.skipped, "dropped": work.dropped,
                   "seconds": time.perf_counter() - work.began}
    write_text(out / writers.STATE / f"report-{state.process_index:03d}.json", json.dumps(mine_report))
    work.overall.finish()  # the main process's overall bar runs until every report is in
    state.wait_for_everyone()
    report = _gather(out, state.num_processes)
    report.resumed = action in ("resume", "continue")
    if state.is_main_process:
        keep = {tuple(s) for s in _reports(out, "seen")}
        index = writers.finish(opts.format, out, keep)
        report.rows = index["rows"]
        summary = {"rows": report.rows, "items": len(keep), "files": index["files"], "skipped": report.skipped,
                   "processes": report.processes, "made_images": report.made_images,
                   "seconds": round(report.seconds, 3), "images_per_s": report.images_per_s}
        if scorer is not None:
            summary["dropped"] = writers.finish_dropped(out, keep)
        card.write_index(out, summary)
        card.write_card(out, manifest, summary)
    state.wait_for_everyone()
    return report


class _Work:
    """One process's share of the masks, made in one pass (or two with ``--hard-first``), rows written on a
    thread while the model makes the next mask's images."""

    def __init__(self, opts: Options, engine, source, state, prov: dict[str, str], scorer):
        self.opts, self.engine, self.source, self.state, self.prov, self.scorer = opts, engine, source, state, prov, scorer
        self.writer = writers.writer_for(opts.format, opts.out, state.process_index, opts.shard_rows,
                                         filtered=scorer is not None)
        self.done = self.writer.done()
        self.done_items = {row[:2] for row in self.done}
        self.mine = range(state.process_index, len(source), state.num_processes)
        self.keys: dict[int, str] = {}
        self.seen: set[tuple[str, str]] = set()
        self.made: set[tuple[str, str]] = set()
        self.skipped: list[list[str]] = []
        self.unreadable: set[str] = set()
        self.made_images = self.dropped = 0
        self.began = time.perf_counter()
        passes = 2 if opts.hard_first else 1
        self.overall = _Overall(opts.out, state, len(source) * passes, opts.progress)
        self.through = 0

    def run_pass(self, wanted, title: str) -> None:
        """Make, for each of this process's masks, the (layout, index) rows ``wanted(item)`` names that are not
        in the output yet."""
        from tqdm import tqdm

        state, opts = self.state, self.opts
        label = f"synthesize {state.process_index + 1}/{state.num_processes}" if state.num_processes > 1 else \
            "synthesize"
        pending = None  # the previous item's rows, being encoded and written while the model makes the next
        with ThreadPoolExecutor(1, thread_name_prefix="synth-writer") as pool, \
                tqdm(total=len(self.mine), desc=f"{label} {title}".strip(), unit="mask", position=state.process_index,
                     dynamic_ncols=True, disable=not opts.progress, file=sys.stderr) as bar:
            for i in self.mine:
                rows, dropped = self._item(i, wanted, bar)
                if rows or dropped:
                    if pending is not None:
                        pending.result()  # at most one item waits: memory stays bounded, a write error stops the run
                    pending = pool.submit(self.writer.add, rows, dropped)
                bar.update()
                self.through += 1
                self.overall.step(self.through)
                if self.made_images:
                    bar.set_postfix(images_per_s=f"{self.made_images / (time.perf_counter() - self.began):.2f}")
            if pending is not None:
                pending.result()
        self.writer.close()

    def _item(self, i: int, wanted, bar) -> tuple[list[dict], list[dict]]:
        """(rows to write, rows ``--min-score`` leaves out) of mask ``i``; none when it is unreadable or done."""
        item_id = self.source.item_id(i)
        if item_id in self.unreadable:  # reported in the first pass
            return [], []
        try:
            key = self.keys[i] = self.keys.get(i) or self.source.key(i)
            item = (item_id, key)
            todo = [(layout, n) for layout, n in wanted(item) if (item_id, key, layout, n) not in self.done]
            mask = self.source.read(i) if todo else None
        except Unreadable as exc:
            self.skipped.append([item_id, str(exc)])
            self.unreadable.add(item_id)
            bar.write(f"skipped: {exc}", file=sys.stderr)
            return [], []
        self.seen.add(item)
        if not todo:
            return [], []
        rows = _rows(self.opts, self.engine, item_id, key, mask, self.prov, todo)
        for row in rows:
            row["name"] = self.source.name(i)
        self.made.add(item)
        self.made_images += len(rows)
        if self.scorer is None:
            return rows, []
        for row, verdict in zip(rows, self.scorer.score([r["image"] for r in rows], [r["mask"] for r in rows])):
            row["score"], row["ignore"] = verdict.score, verdict.ignore
        floor = self.opts.min_score
        dropped = [r for r in rows if floor is not None and r["score"] < floor]
        self.dropped += len(dropped)
        return [r for r in rows if floor is None or r["score"] >= floor], dropped


def _rows(opts: Options, engine, item_id: str, key: str, mask, prov: dict[str, str],
          todo: list[tuple[str, int]]) -> list[dict]:
    """The ``todo`` images of one item, (layout, index) each, one engine call per image."""
    rows = []
    caption = mask.caption or prompts.caption(None, mask.ids)
    shaped = {layout: layouts.apply(layout, mask.ids) for layout in dict.fromkeys(layout for layout, _ in todo)}
    for layout, index in todo:
        ids = shaped[layout]
        seed, u = seeds.row_draws(item_id, layout, index, opts.seed)
        style = seeds.pick_style(opts.styles, u)
        req = request(opts, ids, caption, seed, style)
        result = engine.run(req, queue=False)
        rows.append({"image": result.images[0], "mask": ids, "grid": mask.grid, "prompt": result.prompt,
                     "negative_prompt": req.negative_prompt or "", "style": style, "seed": seed,
                     "source": item_id, "source_key": key, "layout": layout, "index": index,
                     "steps": req.steps, "guidance_scale": req.guidance_scale,
                     "controlnet_scale": req.controlnet_scale, **prov, "backend": result.backend})
    return rows


class _Overall:
    """With several processes: each writes how many of its masks are through; the main process shows the sum
    as an overall bar below theirs, and keeps it moving until every process has finished."""

    def __init__(self, out: Path, state, total: int, enabled: bool):
        from tqdm import tqdm

        self.out, self.state = out, state
        self.enabled = enabled and state.num_processes > 1
        self.path = out / writers.STATE / f"progress-{state.process_index:03d}"
        self.bar = tqdm(total=total, desc="overall", unit="mask", position=state.num_processes, dynamic_ncols=True,
                        file=sys.stderr) if self.enabled and state.is_main_process else None
        self.last = 0.0

    def step(self, done: int) -> None:
        if not self.enabled:
            return
        if self.bar is None:  # other processes: at most a few writes a second
            if time.monotonic() - self.last > 0.5:
                write_text(self.path, str(done))
                self.last = time.monotonic()
            return
        write_text(self.path, str(done))
        self._refresh()

    def _refresh(self) -> None:
        through = 0
        for path in (self.out / writers.STATE).glob("progress-*"):
            try:
                through += int(path.read_text() or 0)
            except (OSError, ValueError):  # being replaced this very moment
                continue
        self.bar.update(max(through - self.bar.n, 0))

    def finish(self) -> None:
        if self.bar is None:
            return
        while len(list((self.out / writers.STATE).glob("report-*.json"))) < self.state.num_processes:
            self._refresh()
            time.sleep(0.5)
        self.bar.update(self.bar.total - self.bar.n)
        self.bar.close()


def _reports(out: Path, name: str) -> list:
    values = []
    for path in sorted((out / writers.STATE).glob("report-*.json")):
        values.extend(json.loads(path.read_text(encoding="utf-8"))[name])
    return values


def _gather(out: Path, processes: int) -> Report:
    reports = [json.loads(p.read_text(encoding="utf-8")) for p in sorted((out / writers.STATE).glob("report-*.json"))]
    return Report(items=sum(len(r["seen"]) + len(r["skipped"]) for r in reports),
                  made_items=sum(r["made_items"] for r in reports), made_images=sum(r["made_images"] for r in reports),
                  already_done=sum(r["already_done"] for r in reports),
                  skipped=[tuple(s) for r in reports for s in r["skipped"]],
                  seconds=max((r["seconds"] for r in reports), default=0.0), processes=processes,
                  dropped=sum(r.get("dropped", 0) for r in reports))


def _single():
    """A stand-in for accelerate's PartialState when there is one process and nothing to share."""
    from types import SimpleNamespace

    return SimpleNamespace(process_index=0, num_processes=1, is_main_process=True, wait_for_everyone=lambda: None)


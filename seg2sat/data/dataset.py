"""Dataset preparation: a FLAIR #1 tree -> PNG pairs with OSM captions -> a Hugging Face dataset.

``prepare`` is one resumable run. Workers convert patches (``seg2sat.data.flair.convert``)
and write their PNGs atomically; the main process geocodes (rate limited, cached) and
appends one line per finished tile to ``OUT/progress.jsonl``. A tile is done once its
line is there, so a run killed at any moment and started again converts only what is
missing, and every tile ends up in the dataset exactly once. The dataset itself is
rebuilt from that journal at the end, into a temporary folder renamed into place.

Output folder::

    OUT/pairs/<domain>/<zone>/IMG_<n>.png, MSK_<n>.png   the pairs (+ metadata.jsonl:
                                                          load_dataset("imagefolder"))
    OUT/train/, OUT/dataset_dict.json
                          datasets.load_from_disk(OUT) -> DatasetDict({"train": …}) (or
                          load_from_disk(OUT/train) -> Dataset): image, conditioning_image,
                          text, id, domain, zone, lat, lon, place, date, share_<class>…
    OUT/summary.json      counts, geocoder requests, every skipped file with its reason
    OUT/progress.jsonl    the journal that makes the run resumable
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..classes import CLASSES
from ..prompts import caption_from_shares
from .flair import METADATA_NAME, PATCH_SIZE, TMP_MARK, Patch, Problem, TileError, convert, discover, load_metadata, write_atomic
from .geocode import CachedGeocoder, Geocoder, GeocodingError

EXTRA_BANDS = ("nir", "elevation")
SPLIT = "train"
SHARE_COLUMNS = {c.id: "share_" + c.name.replace(" ", "_") for c in CLASSES}


@dataclass
class Summary:
    """What a run did; written to ``OUT/summary.json`` and printed by the CLI."""

    tiles: int = 0
    converted: int = 0
    already_done: int = 0
    geocoder_requests: int = 0
    rows: int = 0
    seconds: float = 0.0
    dataset: str = ""
    skipped: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.skipped

    def to_json(self) -> str:
        data = asdict(self)
        data["geocoder_requests_per_tile"] = round(self.geocoder_requests / self.converted, 4) if self.converted else 0.0
        return json.dumps(data, indent=2, ensure_ascii=False)


class Journal:
    """Append-only JSON lines, one per finished tile; the last line for an id wins.

    A kill can leave a torn last line: it is ignored on reading and cut off before the
    next append, so the file stays valid JSON lines.
    """

    def __init__(self, path: Path):
        self.path = path
        self.records: dict[str, dict] = {}
        if path.exists():
            data = path.read_bytes()
            end = data.rfind(b"\n") + 1
            for line in data[:end].splitlines():
                try:
                    record = json.loads(line)
                    self.records[record["id"]] = record
                except (json.JSONDecodeError, KeyError, TypeError):
                    continue  # a damaged line: that tile is simply done again
            if end != len(data):
                with open(path, "r+b") as f:
                    f.truncate(end)
        self._file = open(path, "a", encoding="utf-8")
        self._unsynced = 0

    def append(self, record: dict) -> None:
        self._file.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._file.flush()
        self.records[record["id"]] = record
        self._unsynced += 1
        if self._unsynced >= 200:
            self.sync()

    def sync(self) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())
        self._unsynced = 0

    def close(self) -> None:
        self.sync()
        self._file.close()


def prepare(root: str | Path, out: str | Path, *, metadata: str | Path | None = None,
            labels: Iterable[str | Path] = (), geocoder: CachedGeocoder | Geocoder | None = None,
            workers: int = 1, limit: int | None = None, size: int = PATCH_SIZE, extra_bands: bool = False,
            progress: bool = True) -> Summary:
    """Convert a FLAIR tree under ``root`` into pairs and a dataset under ``out``; resumable.

    ``geocoder=None`` gives captions without a place. Bad patches are reported in the
    summary and skipped; the run goes on. Raises ``ValueError`` for unusable arguments.
    """
    started = time.perf_counter()
    root, out = Path(root), Path(out)
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    meta_path = Path(metadata) if metadata else root / METADATA_NAME
    meta = load_metadata(meta_path) if metadata or meta_path.is_file() else {}
    patches, problems = discover(root, [Path(p) for p in labels] or _sibling_labels(root))
    if limit:
        patches = patches[:limit]
    if not patches and not problems:
        raise ValueError(f"no FLAIR patches (IMG_<n>.tif) found under {root}")
    pairs = out / "pairs"
    pairs.mkdir(parents=True, exist_ok=True)
    with _exclusive(out):
        return _prepare(out, patches, problems, meta, geocoder, workers, size, extra_bands, progress, started)


def _sibling_labels(root: Path) -> list[Path]:
    """FLAIR ships ``flair_labels_<split>`` next to ``flair_aerial_<split>``: found without --labels."""
    sibling = root.parent / root.name.replace("aerial", "labels")
    return [sibling] if "aerial" in root.name and sibling.is_dir() else []


@contextmanager
def _exclusive(out: Path) -> Iterator[None]:
    """One run per output folder: two would interleave their journals. Released when the process dies."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no advisory locks, trust the user
        yield
        return
    with open(out / ".lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ValueError(f"another 'seg2sat prepare' is writing to {out}; wait for it or pick another folder") from None
        yield


def _prepare(out: Path, patches: list[Patch], problems: list[Problem], meta: dict, geocoder,
             workers: int, size: int, extra_bands: bool, progress: bool, started: float) -> Summary:
    """The run itself, once the arguments are checked and the output folder is ours."""
    pairs = out / "pairs"
    _remove_leftovers(out)
    journal = Journal(out / "progress.jsonl")
    summary = Summary(tiles=len(patches) + len(problems), skipped=problems)
    places = Places(geocoder, summary)
    requests_before = getattr(geocoder, "requests", 0)
    try:
        done = {p.id for p in patches if _usable(journal.records.get(p.id), extra_bands)}
        summary.already_done = len(done)
        todo = [p for p in patches if p.id not in done]
        jobs = ((p, pairs, meta.get(p.id), size, extra_bands) for p in todo)
        bar = _bar(len(patches), len(done), progress)
        for result in _run(jobs, workers):
            bar.update(1)
            if isinstance(result, Problem):
                summary.skipped.append(result)
            else:
                places.fill(result)
                journal.append(result)  # even without a place: the conversion is kept
                summary.converted += 1
        places.fill_older(journal, sorted(done))
        bar.close()
    finally:
        journal.close()
    summary.geocoder_requests = getattr(geocoder, "requests", 0) - requests_before
    records = [journal.records[p.id] for p in patches if p.id in journal.records]
    if geocoder is not None:  # a caption without its place would teach the model the wrong thing
        records = [r for r in records if r.get("place") is not None]
    build_dataset(records, out, geocoder is not None, extra_bands, progress)
    summary.dataset = str(out)
    summary.rows = len(records)
    summary.seconds = round(time.perf_counter() - started, 3)
    write_atomic(out / "summary.json", summary.to_json().encode("utf-8"))
    return summary


def _usable(record: dict | None, extra_bands: bool) -> bool:
    """A journal record counts as done if it has what this run's dataset needs."""
    return record is not None and (not extra_bands or all(k in record for k in EXTRA_BANDS))


def _remove_leftovers(out: Path) -> None:
    """Temporary files of a killed run: half-written PNGs and dataset folders."""
    for path in (out / "pairs").rglob(f"*{TMP_MARK}*"):
        path.unlink(missing_ok=True)
    for path in out.glob(".dataset-*"):
        shutil.rmtree(path, ignore_errors=True)


def _bar(total: int, initial: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, unit="tile", desc="preparing", disable=not enabled, dynamic_ncols=True)


def _convert_job(job: tuple) -> dict | Problem:
    """Worker side: one patch -> its record, or the reason it was skipped."""
    patch: Patch = job[0]
    try:
        return convert(*job)
    except TileError as exc:
        return Problem(str(patch.image), str(exc))
    except Exception as exc:
        return Problem(str(patch.image), f"unexpected error: {type(exc).__name__}: {exc}")


def _run(jobs: Iterator[tuple], workers: int) -> Iterator[dict | Problem]:
    if workers == 1:
        yield from map(_convert_job, jobs)
        return
    import multiprocessing

    # spawn, not fork: the caller may hold threads (pyarrow, torch) that a fork would copy mid-lock
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        yield from pool.imap_unordered(_convert_job, jobs, chunksize=4)


class Places:
    """Puts the place name into records during one run, and stops asking a failing service.

    ``record["place"]`` is the name, ``""`` where OSM has none, or ``None`` while unknown
    (``--no-geocode``, or the service failed): such tiles stay converted in the journal and
    the next run with geocoding only adds their place.
    """

    MAX_FAILURES = 5
    """Failures in a row after which this run stops asking (network down, quota, ban)."""

    def __init__(self, geocoder, summary: Summary):
        self.geocoder, self.summary = geocoder, summary
        self.failures, self.last_error = 0, ""

    def fill(self, record: dict) -> None:
        record.setdefault("place", None)
        if self.geocoder is None or record["place"] is not None:
            return
        if self.failures >= self.MAX_FAILURES:
            return self._report(record, f"geocoding stopped after {self.failures} failures in a row ({self.last_error})")
        try:
            record["place"] = self.geocoder.reverse(record["lat"], record["lon"]) or ""
            self.failures = 0
        except GeocodingError as exc:
            self.failures, self.last_error = self.failures + 1, str(exc)
            self._report(record, str(exc))

    def fill_older(self, journal: Journal, ids: Iterable[str]) -> None:
        """Tiles converted by an earlier run but not geocoded yet get their place now."""
        for pid in ids:
            record = journal.records[pid]
            if self.geocoder is not None and record.get("place") is None:
                self.fill(record)
                if record["place"] is not None:
                    journal.append(record)

    def _report(self, record: dict, why: str) -> None:
        self.summary.skipped.append(Problem(record["id"], f"no place name yet ({why}); the next run asks again"))


def _features(extra_bands: bool):
    from datasets import Features, Image, Value

    columns = {"image": Image(), "conditioning_image": Image(), "text": Value("string"), "id": Value("string"),
               "domain": Value("string"), "zone": Value("string"), "lat": Value("float64"), "lon": Value("float64"),
               "place": Value("string"), "date": Value("string")}
    columns |= {name: Value("float32") for name in SHARE_COLUMNS.values()}
    if extra_bands:
        columns |= {name: Image() for name in EXTRA_BANDS}
    return Features(columns)


def _row(record: dict, with_place: bool) -> dict:
    """The dataset row of a journal record (no image bytes): the caption is made here."""
    shares = {int(k): v for k, v in record["shares"].items()}
    place = record.get("place") if with_place else None
    return {
        "text": caption_from_shares(place, shares), "id": record["id"], "domain": record["domain"],
        "zone": record["zone"], "lat": record["lat"], "lon": record["lon"], "place": place or "",
        "date": record.get("date", ""), **{name: shares.get(i, 0.0) for i, name in SHARE_COLUMNS.items()},
    }


def _rows(records: tuple[dict, ...], pairs: str, with_place: bool, images: tuple[str, ...],
          progress: bool = False) -> Iterator[dict]:
    from tqdm.auto import tqdm

    for record in tqdm(records, desc="dataset", unit="row", disable=not progress, dynamic_ncols=True):
        row = _row(record, with_place)
        for key in images:
            path = Path(pairs) / record[key]
            row[key] = {"bytes": path.read_bytes(), "path": path.name}
        yield row


def build_dataset(records: list[dict], out: Path, with_place: bool = True, extra_bands: bool = False,
                  progress: bool = False) -> Path:
    """Write the ``train`` split (``save_to_disk``) and ``OUT/pairs/metadata.jsonl`` from the records.

    ``OUT`` is laid out as a saved ``DatasetDict``, so ``load_from_disk(OUT)`` and the
    training command take the output folder itself. The split is built in a temporary
    folder and renamed into place: a reader sees the old complete split or the new one.
    """
    from datasets import Dataset

    pairs = out / "pairs"
    images = ["image", "conditioning_image", *(EXTRA_BANDS if extra_bands else ())]
    lines = []
    for record in records:
        line = {"file_name": record["image"], **{f"{k}_file_name": record[k] for k in images[1:]}}
        lines.append(json.dumps(line | _row(record, with_place), ensure_ascii=False))
    write_atomic(pairs / "metadata.jsonl", ("\n".join(lines) + "\n").encode("utf-8"))
    work = Path(tempfile.mkdtemp(prefix=".dataset-", dir=out))
    try:
        if not records:  # every tile skipped: still a (empty) dataset with the right columns
            dataset = Dataset.from_dict({k: [] for k in _features(extra_bands)}, features=_features(extra_bands))
        else:
            dataset = Dataset.from_generator(
                _rows, features=_features(extra_bands), cache_dir=str(work / "cache"),
                # tuples, not lists: datasets would take lists for shards to split the generator over
                gen_kwargs={"records": tuple(records), "pairs": str(pairs), "with_place": with_place,
                            "images": tuple(images), "progress": progress},
            )
        dataset.save_to_disk(str(work / "dataset"), num_shards=None if records else 1)  # 0 shards won't load
        del dataset
        final, old = out / SPLIT, out / f".dataset-old-{os.getpid()}"
        if final.exists():
            final.rename(old)
        (work / "dataset").rename(final)
        write_atomic(out / "dataset_dict.json", json.dumps({"splits": [SPLIT]}).encode("utf-8"))
    finally:
        shutil.rmtree(work, ignore_errors=True)
        for stale in out.glob(".dataset-old-*"):
            shutil.rmtree(stale, ignore_errors=True)
    return final


def push_to_hub(out: Path, repo: str, private: bool = False) -> str:
    """Upload the prepared dataset to the Hugging Face hub (needs ``hf auth login`` or ``HF_TOKEN``)."""
    from datasets import load_from_disk

    load_from_disk(str(out)).push_to_hub(repo, private=private)
    return f"https://huggingface.co/datasets/{repo}"

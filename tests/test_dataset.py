"""Dataset preparation on synthetic FLAIR-like trees written here with rasterio (64x64 patches)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
from PIL import Image
from rasterio.transform import from_origin

from seg2sat import masks
from seg2sat.data.dataset import prepare
from seg2sat.data.flair import encode_png
from seg2sat.data.geocode import CachedGeocoder, GeocodeCache, GeocodingError, NominatimGeocoder

SIZE = 64
PIXEL = 1.6  # metres: a 64 px patch spans 102.4 m, like a real 512 px FLAIR patch at 0.2 m
ZONES = {  # zone -> Lambert-93 top-left corner of its 3x3 block of adjacent patches
    ("D075_2021", "Z1_UU"): (651_000.0, 6_862_000.0),  # Paris
    ("D069_2020", "Z4_UA"): (842_000.0, 6_519_000.0),  # Lyon
}
LAYOUTS = [  # (class, rows) from the top: shares 32/64, 20/64, 12/64, all distinct
    ((1, 32), (5, 20), (11, 12)),
    ((6, 32), (7, 20), (3, 12)),
    ((10, 32), (0, 20), (2, 12)),  # raw 0 = no data, read as "other"
]


def _raw_mask(n: int) -> np.ndarray:
    rows = [np.full((count, SIZE), value, np.uint8) for value, count in LAYOUTS[n % len(LAYOUTS)]]
    return np.concatenate(rows)


def _image(n: int) -> np.ndarray:
    return np.random.default_rng(n).integers(0, 256, (5, SIZE, SIZE), dtype=np.uint8)


def _write(path: Path, data: np.ndarray, transform, crs="EPSG:2154") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", driver="GTiff", width=data.shape[2], height=data.shape[1], count=data.shape[0],
                       dtype=data.dtype, crs=crs, transform=transform) as dst:
        dst.write(data)


def write_tree(root: Path) -> dict[str, dict]:
    """Two zones of 3x3 adjacent patches; returns what each patch holds, by id."""
    truth, n = {}, 0
    for (domain, zone), (x0, y0) in ZONES.items():
        for row in range(3):
            for col in range(3):
                n += 1
                x, y = x0 + col * SIZE * PIXEL, y0 - row * SIZE * PIXEL
                transform = from_origin(x, y, PIXEL, PIXEL)
                image, raw = _image(n), _raw_mask(n)
                _write(root / domain / zone / "img" / f"IMG_{n:06d}.tif", image, transform)
                _write(root / domain / zone / "msk" / f"MSK_{n:06d}.tif", raw[None], transform)
                centre = (x + SIZE * PIXEL / 2, y - SIZE * PIXEL / 2)
                truth[f"IMG_{n:06d}"] = dict(image=image, raw=raw, n=n, domain=domain, zone=zone, centre=centre)
    return truth


class FakeGeocoder:
    """Local stand-in for Nominatim: names a point after its coordinates, counts calls."""

    zoom, language = 18, None

    def __init__(self, fail_after: int | None = None, error: type[Exception] = RuntimeError, delay: float = 0.0):
        self.calls, self.attempts, self.fail_after, self.error, self.delay = 0, 0, fail_after, error, delay

    def reverse(self, lat: float, lon: float) -> str | None:
        self.attempts += 1
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise self.error("injected failure")
        self.calls += 1
        time.sleep(self.delay)
        return f"Place {lat:.4f} {lon:.4f}, France"


def cached(fake, path: Path, grid: float = 0.01) -> CachedGeocoder:
    return CachedGeocoder(fake, GeocodeCache(path), grid=grid)


@pytest.fixture(scope="module")
def flair(tmp_path_factory):
    root = tmp_path_factory.mktemp("flair")
    return root, write_tree(root)


@pytest.fixture(scope="module")
def prepared(flair, tmp_path_factory):
    """One geocoded run over the whole clean tree, shared by the read-only tests."""
    root, truth = flair
    out = tmp_path_factory.mktemp("out")
    fake = FakeGeocoder()
    summary = prepare(root, out, geocoder=cached(fake, out / "cache.sqlite"), size=SIZE, progress=False)
    return out, truth, summary, fake


def _load(out: Path):
    from datasets import load_from_disk

    return load_from_disk(str(out))["train"]  # the output folder itself is the saved DatasetDict


def _expected_names(n: int) -> list[str]:
    """Class names of a layout, largest first (0 = no data reads as "other")."""
    return [masks.CLASSES[(value or 19) - 1].name for value, _ in LAYOUTS[n % len(LAYOUTS)]]


def test_pairs_are_pixel_exact_and_captioned(prepared):
    out, truth, summary, _ = prepared
    assert summary.ok and summary.rows == len(truth) == summary.converted
    ds = _load(out)
    assert sorted(ds["id"]) == sorted(truth)
    for row in ds:
        t = truth[row["id"]]
        assert np.array_equal(np.asarray(row["image"].convert("RGB")), np.moveaxis(t["image"][:3], 0, -1))
        assert np.array_equal(np.asarray(row["conditioning_image"].convert("RGB")), masks.to_rgb(masks.from_flair(t["raw"])))
        assert row["place"].startswith("Place ") and row["domain"] == t["domain"] and row["zone"] == t["zone"]
        assert row["text"] == f"Aerial view of {row['place']}. {', '.join(_expected_names(t['n']))}."
        first_class, first_rows = LAYOUTS[t["n"] % len(LAYOUTS)][0]
        column = "share_" + masks.CLASSES[(first_class or 19) - 1].name.replace(" ", "_")
        assert row[column] == pytest.approx(first_rows / SIZE)
    pair = out / "pairs" / "D075_2021" / "Z1_UU"
    assert sorted(p.name for p in pair.iterdir()) == sorted(
        [f"IMG_{n:06d}.png" for n in range(1, 10)] + [f"MSK_{n:06d}.png" for n in range(1, 10)])


def test_centre_lat_lon_within_a_metre_of_pyproj(prepared):
    from pyproj import Geod, Transformer

    out, truth, _, _ = prepared
    to_wgs84 = Transformer.from_crs("EPSG:2154", "EPSG:4326", always_xy=True)
    geod = Geod(ellps="WGS84")
    for row in _load(out).select_columns(["id", "lat", "lon"]):
        lon, lat = to_wgs84.transform(*truth[row["id"]]["centre"])
        assert geod.inv(lon, lat, row["lon"], row["lat"])[2] < 1.0


def test_metadata_centroid_wins_over_the_file(flair, tmp_path):
    root, truth = flair
    from pyproj import Transformer

    x, y = 700_000.0, 6_600_000.0  # somewhere else entirely
    meta = tmp_path / "meta.json"
    meta.write_text(json.dumps({"IMG_000001": {"patch_centroid_x": x, "patch_centroid_y": y, "date": "2021-06-01"}}))
    summary = prepare(root, tmp_path / "out", metadata=meta, limit=2, size=SIZE, progress=False)
    rows = {r["id"]: r for r in _load(tmp_path / "out")}
    lon, lat = Transformer.from_crs("EPSG:2154", "EPSG:4326", always_xy=True).transform(x, y)
    assert summary.rows == 2
    assert rows["IMG_000001"]["lat"] == pytest.approx(lat, abs=1e-7) and rows["IMG_000001"]["date"] == "2021-06-01"
    assert rows["IMG_000002"]["date"] == "" and abs(rows["IMG_000002"]["lat"] - lat) > 0.1


def test_neighbours_share_geocoder_calls(prepared):
    out, truth, summary, fake = prepared
    # two zones, each a few hundred metres wide: a handful of ~1 km cells, not one call per tile
    assert 2 <= fake.calls <= 2 * 4 and fake.calls < len(truth) / 2
    assert summary.geocoder_requests == fake.calls
    places: dict[str, set] = {}
    for row in _load(out).select_columns(["zone", "place"]):
        places.setdefault(row["zone"], set()).add(row["place"])
    assert len(places) == 2 and all(1 <= len(p) <= 4 for p in places.values())


def test_cache_is_reused_across_runs(flair, tmp_path):
    root, truth = flair
    first = FakeGeocoder()
    prepare(root, tmp_path / "a", geocoder=cached(first, tmp_path / "c.sqlite"), size=SIZE, progress=False)
    again = FakeGeocoder()
    summary = prepare(root, tmp_path / "b", geocoder=cached(again, tmp_path / "c.sqlite"), size=SIZE, progress=False)
    assert first.calls > 0 and again.calls == 0 and summary.geocoder_requests == 0
    assert _load(tmp_path / "a")["text"] == _load(tmp_path / "b")["text"]


def test_no_geocode_then_geocode_later_without_converting_again(flair, tmp_path):
    root, truth = flair
    plain = prepare(root, tmp_path / "out", size=SIZE, progress=False)
    texts = _load(tmp_path / "out")["text"]
    assert plain.ok and all(t.startswith("Aerial view. ") for t in texts)
    fake = FakeGeocoder()
    later = prepare(root, tmp_path / "out", geocoder=cached(fake, tmp_path / "c.sqlite"), size=SIZE, progress=False)
    assert later.converted == 0 and later.already_done == len(truth) and fake.calls > 0
    assert all(t.startswith("Aerial view of Place ") for t in _load(tmp_path / "out")["text"])


@pytest.mark.slow
def test_bad_tiles_are_reported_skipped_and_the_exit_code_says_so(tmp_path):
    root = tmp_path / "flair"
    truth = write_tree(root)
    zone = root / "D075_2021" / "Z1_UU"
    good = (zone / "img" / "IMG_000001.tif").read_bytes()
    (zone / "img" / "IMG_000001.tif").write_bytes(good[: len(good) // 3])  # truncated
    (zone / "img" / "IMG_000002.tif").write_bytes(b"not a tiff at all")  # corrupt
    (zone / "msk" / "MSK_000003.tif").unlink()  # missing mask
    _write(zone / "img" / "IMG_000004.tif", _image(4)[:3], from_origin(651_000, 6_862_000, PIXEL, PIXEL))  # 3 bands
    _write(zone / "img" / "IMG_000005.tif", _image(5)[:, :32, :32], from_origin(651_000, 6_862_000, PIXEL, PIXEL))
    out = tmp_path / "out"
    script = Path(__file__).resolve().parents[1] / "dataset_preparation" / "prepare.py"  # = seg2sat prepare
    run = subprocess.run([sys.executable, str(script), str(root), str(out), "--no-geocode", "--workers", "2",
                          "--size", str(SIZE)], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert run.returncode == 1, run.stderr
    skipped = {Path(s["file"]).name: s["reason"] for s in json.loads((out / "summary.json").read_text())["skipped"]}
    assert set(skipped) == {f"IMG_00000{i}.tif" for i in range(1, 6)}
    assert "band" in skipped["IMG_000004.tif"] and "32x32" in skipped["IMG_000005.tif"]
    assert "mask" in skipped["IMG_000003.tif"] and "readable" in skipped["IMG_000002.tif"]
    assert "IMG_000002.tif" in run.stderr and "summary.json" in run.stderr
    assert sorted(_load(out)["id"]) == sorted(set(truth) - {f"IMG_00000{i}" for i in range(1, 6)})


def _assert_exactly_once(out: Path, truth: dict) -> None:
    ids = _load(out)["id"]
    assert sorted(ids) == sorted(truth)  # every tile, none twice
    files = [p for p in (out / "pairs").rglob("*") if p.is_file()]
    assert not [p for p in files if ".tmp-" in p.name]
    assert len([p for p in files if p.suffix == ".png"]) == 2 * len(truth)
    journal = [json.loads(line) for line in (out / "progress.jsonl").read_text().splitlines()]
    assert len({r["id"] for r in journal}) == len(truth)


def test_interrupted_run_resumes_with_every_tile_exactly_once(flair, tmp_path):
    root, truth = flair
    out, cache = tmp_path / "out", tmp_path / "c.sqlite"
    with pytest.raises(RuntimeError, match="injected"):  # dies after 5 tiles, each in its own cell
        prepare(root, out, geocoder=cached(FakeGeocoder(fail_after=5), cache, grid=1e-6), size=SIZE, progress=False)
    assert not (out / "train").exists()
    fake = FakeGeocoder()
    summary = prepare(root, out, geocoder=cached(fake, cache, grid=1e-6), size=SIZE, progress=False)
    assert summary.already_done == 5 and summary.converted == len(truth) - 5 == fake.calls
    _assert_exactly_once(out, truth)


def test_geocoding_failures_keep_the_tile_for_the_next_run(flair, tmp_path):
    root, truth = flair
    out, cache = tmp_path / "out", tmp_path / "c.sqlite"
    down = FakeGeocoder(fail_after=3, error=GeocodingError)  # the service dies after 3 answers
    summary = prepare(root, out, geocoder=cached(down, cache, grid=1e-6), size=SIZE, progress=False)
    assert not summary.ok and summary.rows == 3 and len(summary.skipped) == len(truth) - 3
    assert all("no place name yet" in p.reason for p in summary.skipped)
    assert down.attempts < len(truth)  # gave up asking a dead service, did not hammer it
    assert len(_load(out)) == 3  # no caption without its place slipped into the dataset
    fake = FakeGeocoder()
    summary = prepare(root, out, geocoder=cached(fake, cache, grid=1e-6), size=SIZE, progress=False)
    assert summary.ok and summary.rows == len(truth) and summary.converted == 0 and fake.calls == len(truth) - 3
    assert all(t.startswith("Aerial view of Place ") for t in _load(out)["text"])


def test_all_tiles_bad_still_gives_a_summary_and_an_empty_dataset(tmp_path):
    root = tmp_path / "flair"
    image = root / "D001_2020" / "Z1_UU" / "img" / "IMG_000001.tif"
    image.parent.mkdir(parents=True)
    image.write_bytes(b"garbage")
    summary = prepare(root, tmp_path / "out", size=SIZE, progress=False)
    assert summary.rows == 0 and [Path(p.file).name for p in summary.skipped] == ["IMG_000001.tif"]
    assert len(_load(tmp_path / "out")) == 0 and "text" in _load(tmp_path / "out").column_names


def test_killed_process_resumes_with_every_tile_exactly_once(flair, tmp_path):
    root, truth = flair
    out, cache = tmp_path / "out", tmp_path / "c.sqlite"
    script = textwrap.dedent(f"""
        import sys; sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_dataset import FakeGeocoder, cached
        from seg2sat.data.dataset import prepare
        prepare({str(root)!r}, {str(out)!r}, geocoder=cached(FakeGeocoder(delay=0.3), {str(cache)!r}, grid=1e-6),
                size={SIZE}, progress=False)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script])
    journal = out / "progress.jsonl"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if journal.exists() and journal.read_text().count("\n") >= 3:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert not (out / "train").exists()
    summary = prepare(root, out, geocoder=cached(FakeGeocoder(), cache, grid=1e-6), size=SIZE, progress=False)
    assert 3 <= summary.already_done < len(truth) and summary.ok
    _assert_exactly_once(out, truth)


def test_pairs_folder_loads_as_an_imagefolder(prepared):
    from datasets import load_dataset

    out, truth, _, _ = prepared
    ds = load_dataset("imagefolder", data_dir=str(out / "pairs"), split="train")
    assert len(ds) == len(truth) and {"image", "conditioning_image", "text"} <= set(ds.column_names)
    row = next(r for r in ds if r["id"] == "IMG_000001")
    assert np.array_equal(np.asarray(row["image"].convert("RGB")), np.moveaxis(truth["IMG_000001"]["image"][:3], 0, -1))


def test_extra_bands_keep_nir_and_elevation(flair, tmp_path):
    root, truth = flair
    prepare(root, tmp_path / "out", limit=1, extra_bands=True, size=SIZE, progress=False)
    row = _load(tmp_path / "out")[0]
    assert np.array_equal(np.asarray(row["nir"]), truth[row["id"]]["image"][3])
    assert np.array_equal(np.asarray(row["elevation"]), truth[row["id"]]["image"][4])


@pytest.mark.parametrize("shape", [(37, 53), (37, 53, 3)])
def test_encode_png_is_lossless(shape):
    array = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    from io import BytesIO

    assert np.array_equal(np.asarray(Image.open(BytesIO(encode_png(array)))), array)


def test_masks_in_flair_s_parallel_labels_tree_are_found(tmp_path):
    root = tmp_path / "flair_aerial_train"
    truth = write_tree(root)
    for mask in root.rglob("MSK_*.tif"):  # FLAIR's archives: masks in their own tree
        moved = tmp_path / "flair_labels_train" / mask.relative_to(root)
        moved.parent.mkdir(parents=True, exist_ok=True)
        mask.rename(moved)
    summary = prepare(root, tmp_path / "out", size=SIZE, progress=False)
    assert summary.ok and summary.rows == len(truth)
    row = _load(tmp_path / "out")[0]
    assert np.array_equal(np.asarray(row["conditioning_image"]), masks.to_rgb(masks.from_flair(truth[row["id"]]["raw"])))


def test_two_runs_on_one_output_folder_are_refused(flair, tmp_path):
    fcntl = pytest.importorskip("fcntl")
    root, _ = flair
    (tmp_path / "out").mkdir()
    with open(tmp_path / "out" / ".lock", "w") as held:  # as a running 'seg2sat prepare' holds it
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(ValueError, match="another 'seg2sat prepare'"):
            prepare(root, tmp_path / "out", size=SIZE, progress=False)
    assert prepare(root, tmp_path / "out", limit=1, size=SIZE, progress=False).rows == 1


def test_bad_arguments_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        prepare(tmp_path / "nope", tmp_path / "out", progress=False)
    with pytest.raises(ValueError, match="no FLAIR patches"):
        prepare(tmp_path, tmp_path / "out", progress=False)
    with pytest.raises(ValueError, match="user agent"):
        NominatimGeocoder(user_agent="")
    (tmp_path / "meta.json").write_text("{broken")
    with pytest.raises(ValueError, match="not valid JSON"):
        prepare(tmp_path, tmp_path / "out", metadata=tmp_path / "meta.json", progress=False)


def test_nominatim_adapter_speaks_the_protocol(nominatim):
    domain, seen = nominatim
    geocoder = NominatimGeocoder("seg2sat-tests (test@example.org)", zoom=14, min_delay=0, domain=domain,
                                 scheme="http", retries=0)
    assert geocoder.reverse(43.3837, -0.6089) == "Mourenx, Pau, Pyrénées-Atlantiques, France"
    assert seen[0]["path"] == "/reverse" and seen[0]["zoom"] == "14" and seen[0]["agent"] == "seg2sat-tests (test@example.org)"
    assert geocoder.reverse(85.0, 0.0) is None  # nothing there: a real answer, cacheable
    with pytest.raises(GeocodingError, match="Nominatim failed"):  # server error: never cached as "no place"
        geocoder.reverse(-10.0, 0.0)


def test_cli_geocodes_through_a_nominatim_server_with_a_cache(flair, nominatim, tmp_path, capsys):
    from seg2sat.cli import main

    root, truth = flair
    domain, seen = nominatim
    args = ["prepare", str(root), str(tmp_path / "out"), "--size", str(SIZE), "--workers", "1",
            "--nominatim", f"http://{domain}", "--geocode-delay", "0", "--user-agent", "seg2sat-tests (t@example.org)"]
    assert main(args) == 0
    texts = _load(tmp_path / "out")["text"]
    assert len(texts) == len(truth) and all(t.startswith("Aerial view of Mourenx, Pau") for t in texts)
    asked = len(seen)
    assert 0 < asked < len(truth) / 2 and (tmp_path / "out" / "geocode-cache.sqlite").is_file()
    assert f"{asked} geocoder requests" in capsys.readouterr().out
    cache = ["--geocode-cache", str(tmp_path / "out" / "geocode-cache.sqlite")]
    assert main(args[:2] + [str(tmp_path / "again")] + args[3:] + cache) == 0
    assert len(seen) == asked  # the second output folder reused the first one's cache: no new request

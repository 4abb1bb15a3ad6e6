"""examples/synthetic_segmentation.py, the proof recipe: real pairs vs real + `seg2sat synthesize` pairs, scored on
held-out real pairs. Tiny data and a tiny random SegFormer: this shows it runs and reads what users have (FLAIR's
GeoTIFF trees, PNG pairs, both synthesize formats), not that synthetic data helps."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from PIL import Image
from rasterio.transform import from_origin

from seg2sat import masks
from seg2sat.cli import main as seg2sat
from seg2sat.testing.segformer import build_tiny_segformer

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "examples" / "synthetic_segmentation.py"
SIDE = 64
ROW = re.compile(r"^(A real|B real \+ synthetic) +(\d\.\d{4}) +(\d\.\d{4})$", re.MULTILINE)


def _ids(k: int) -> np.ndarray:
    """Fields, a block of buildings, a river and a road, shifted a little per pair."""
    ids = np.full((SIDE, SIDE), 11, np.uint8)
    ids[5 + k : 30, 8 : 40 - k] = 1
    ids[:, 44 + k // 2 : 54] = 5
    ids[40:, : 20 + k] = 3
    return ids


def _photo(k: int) -> np.ndarray:
    """An 'aerial photograph' of pair k: its class colours plus noise, so there is something to learn."""
    noise = np.random.default_rng(k).integers(-30, 30, (SIDE, SIDE, 3))
    return np.clip(masks.to_rgb(_ids(k)).astype(int) + noise, 0, 255).astype(np.uint8)


def _flair_trees(root: Path, n: int) -> tuple[Path, Path]:
    """FLAIR's layout: aerial/<domain>/<zone>/img/IMG_<n>.tif (5 bands) and a parallel labels/…/msk/MSK_<n>.tif tree."""
    aerial, labels = root / "aerial", root / "labels"
    for k in range(n):
        bands = np.concatenate([np.moveaxis(_photo(k), -1, 0), np.full((2, SIDE, SIDE), 99, np.uint8)])  # + NIR, nDSM
        for tree, kind, data in ((aerial, "img", bands), (labels, "msk", _ids(k)[None])):
            folder = tree / "D069_2020" / "Z4_UA" / kind
            folder.mkdir(parents=True, exist_ok=True)
            with rasterio.open(folder / f"{kind.upper()}_{k:06d}.tif", "w", driver="GTiff", width=SIDE, height=SIDE,
                               count=len(data), dtype="uint8", crs="EPSG:2154",
                               transform=from_origin(842_000 + k * 12.8, 6_519_000, 0.2, 0.2)) as dst:
                dst.write(data)
    return aerial, labels


def _png_pairs(root: Path, n: int) -> Path:
    for k in range(n):
        (root / "img").mkdir(parents=True, exist_ok=True), (root / "msk").mkdir(exist_ok=True)
        Image.fromarray(_photo(k)).save(root / "img" / f"IMG_{k}.png")
        masks.to_image(_ids(k)).save(root / "msk" / f"MSK_{k}.png")  # a colour mask, as `seg2sat prepare` writes
    return root


def _scores(stdout: str) -> dict[str, tuple[float, float]]:
    return {name: (float(miou), float(acc)) for name, miou, acc in ROW.findall(stdout)}


@pytest.mark.slow
def test_flair_geotiffs_against_their_synthesized_parquet_dataset(tmp_path, tiny_dir):
    aerial, labels = _flair_trees(tmp_path / "flair", 6)
    synth, segformer = tmp_path / "synth", build_tiny_segformer(tmp_path / "segformer")
    assert seg2sat(["synthesize", str(labels), "--out", str(synth), "-n", "1", "--model", str(tiny_dir),
                    "--steps", "1", "--filter-with", str(segformer), "--quiet"]) == 0
    r = subprocess.run([sys.executable, str(SCRIPT), "--real", str(aerial), str(labels), "--synthetic", str(synth),
                        "--model", str(segformer), "--held-out", "2", "--steps", "3", "--batch-size", "2",
                        "--size", str(SIDE), "--workers", "0", "--device", "cpu", "--json", str(tmp_path / "s.json")],
                       capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    # the two held-out masks' synthetic images would show run B the answers: they are left out
    assert ("4 pairs to train on, 2 held out; synthetic: 4 rows (2 made from held-out masks dropped); "
            "pixels its ignore masks mark are left out of the loss") in r.stdout
    scores = _scores(r.stdout)
    assert set(scores) == {"A real", "B real + synthetic"}
    assert all(0 <= v <= 1 for pair in scores.values() for v in pair)
    assert re.search(r"^B - A +[+-]\d\.\d{4} +[+-]\d\.\d{4}$", r.stdout, re.MULTILINE)
    saved = json.loads((tmp_path / "s.json").read_text())
    assert round(saved["A"]["miou"], 4) == scores["A real"][0] and round(saved["B"]["accuracy"], 4) == scores[
        "B real + synthetic"][1]
    for present in ("agricultural land", "building", "water", "impervious surface"):  # classes of the held-out masks
        assert present in saved["A"]["iou"] and f" {present} " in r.stdout


def _load_script():
    spec = importlib.util.spec_from_file_location("example_synthetic_segmentation", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(capsys, *argv) -> tuple[int, str, str]:
    """The script's main() in this process (no second start-up of torch): exit code, stdout, stderr."""
    with pytest.raises(SystemExit) as exit_:
        _load_script().main([*map(str, argv)])
        raise SystemExit(0)
    out, err = capsys.readouterr()
    return exit_.value.code, out, err


@pytest.mark.slow
def test_a_prepared_dataset_or_its_png_pairs_against_a_synthesized_folder(tmp_path, capsys):
    """`seg2sat prepare` output, as the dataset and as its PNG pairs (colour masks): the same pairs, the same scores."""
    from seg2sat.data.dataset import prepare

    aerial, labels = _flair_trees(tmp_path / "flair", 5)
    prepare(aerial, tmp_path / "prepared", labels=[labels], geocoder=None, size=SIDE, progress=False)
    synth, segformer = tmp_path / "synth", build_tiny_segformer(tmp_path / "m")
    assert seg2sat(["synthesize", str(tmp_path / "prepared"), "--out", str(synth), "--format", "folder", "-n", "2",
                    "--backend", "procedural", "--filter-with", str(segformer), "--quiet"]) == 0
    assert len(list((synth / "ign").glob("IGN_*.png"))) == 10
    capsys.readouterr()
    printed = []
    for real in (tmp_path / "prepared", tmp_path / "prepared" / "pairs"):
        code, out, err = _run(capsys, "--real", real, "--synthetic", synth, "--model", segformer, "--held-out", "0.2",
                              "--steps", "2", "--batch-size", "2", "--size", SIDE, "--workers", "0")
        assert code == 0, err
        assert ("4 pairs to train on, 1 held out; synthetic: 8 rows (2 made from held-out masks dropped); "
                "pixels its ignore masks mark are left out of the loss") in out
        assert set(_scores(out)) == {"A real", "B real + synthetic"}
        printed.append(out)
    assert printed[0] == printed[1]
    # held-out pairs from elsewhere (--eval): here the same masks, so every synthetic row would leak
    code, out, err = _run(capsys, "--real", tmp_path / "prepared", "--eval", tmp_path / "prepared" / "pairs",
                          "--synthetic", synth, "--model", segformer)
    assert (code, out, err) == (2, "", "error: --synthetic: all 10 rows were made from held-out masks\n")


@pytest.mark.parametrize("args, message", [
    (["--real", "EMPTY"], "--real EMPTY: no image/mask pairs"),
    (["--real", "REAL", "--held-out", "5"], "--held-out 5 of 5 real pairs"),
    (["--real", "REAL", "--model", "MISSING"], "--model MISSING: no such folder"),
    (["--real", "REAL", "--steps", "0"], "--steps must be at least 1"),
])
def test_bad_input_is_one_line_before_any_training(args, message, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    paths = {"EMPTY": tmp_path / "empty", "REAL": _png_pairs(tmp_path / "real", 5), "MISSING": tmp_path / "missing"}
    args = [str(paths.get(a, a)) for a in args]
    code, out, err = _run(capsys, *args, "--synthetic", paths["REAL"])
    assert code == 2 and out == ""
    expected = message
    for name, path in paths.items():
        expected = expected.replace(name, str(path))
    assert err.startswith(f"error: {expected}") and err.count("\n") == 1


def test_pixels_marked_in_an_ignore_column_are_left_out_of_the_loss(tmp_path):
    """`seg2sat synthesize --filter-with` marks pixels where the image disagrees with its mask 255 in `ignore`."""
    from datasets import Dataset, Features, Value
    from datasets import Image as ImageFeature

    ignore = np.zeros((SIDE, SIDE), np.uint8)
    ignore[:, :16] = 255
    rows = {"image": [Image.fromarray(_photo(k)) for k in range(2)], "mask": [Image.fromarray(_ids(k), "L") for k in range(2)],
            "ignore": [Image.fromarray(ignore, "L"), None], "source": ["MSK_0.png", "MSK_1.png"]}
    features = Features({"image": ImageFeature(), "mask": ImageFeature(), "ignore": ImageFeature(), "source": Value("string")})
    Dataset.from_dict(rows, features=features).to_parquet(tmp_path / "synth" / "data" / "train.parquet")
    module = _load_script()
    pairs = module.open_pairs([tmp_path / "synth"], "--synthetic")
    assert pairs.origins == ["0", "1"]
    samples = module.Samples(pairs, [0, 1], SIDE)
    (pixels, marked), (_, unmarked) = samples[0], samples[1]
    assert pixels.shape == (3, SIDE, SIDE)
    assert (marked[:, :16] == 255).all() and np.array_equal(marked[:, 16:].numpy(), _ids(0)[:, 16:] - 1.0)
    assert np.array_equal(unmarked.numpy(), _ids(1) - 1.0)  # FLAIR class k is label k - 1
    folder = tmp_path / "folder"  # --format folder: ign/IGN_<name>.png beside img/ and msk/
    for kind, image in (("img", rows["image"][0]), ("msk", rows["mask"][0]), ("ign", rows["ignore"][0])):
        (folder / kind).mkdir(parents=True)
        image.save(folder / kind / f"{kind.upper()}_0_000.png")
    labels = module.Samples(module.open_pairs([folder], "--synthetic"), [0], SIDE)[0][1]
    assert np.array_equal(labels.numpy(), marked.numpy())
    assert module.load_model(str(build_tiny_segformer(tmp_path / "m"))).config.semantic_loss_ignore_index == 255

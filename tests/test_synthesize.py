"""``seg2sat synthesize``: masks in, a dataset a segmentation model loads at once out; resumable, shared out
over accelerate's processes, each row remade alone from its seed. Read back with the real clients:
``datasets.load_dataset`` and rasterio."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import rasterio
from conftest import striped_ids
from PIL import Image
from rasterio.transform import from_origin

from seg2sat import masks
from seg2sat.cli import main
from seg2sat.gis import raster
from seg2sat.synth import seeds
from seg2sat.synth.layouts import apply, parse_augment
from seg2sat.synth.run import Options, synthesize

SIDE = 64
ORIGIN = from_origin(843_000, 6_520_000, 0.2, 0.2)



@pytest.fixture
def mask_dir(tmp_path):
    """Two colour masks, one class-id PNG and one file that is no image."""
    folder = tmp_path / "masks"
    folder.mkdir()
    masks.to_image(striped_ids(0)).save(folder / "a.png")
    masks.to_image(striped_ids(1)).save(folder / "b.png")
    Image.fromarray(striped_ids(2), "L").save(folder / "ids.png")  # pixel values = class ids
    (folder / "broken.png").write_bytes(b"not a png")
    return folder


def _load(out):
    from datasets import load_dataset

    return load_dataset(str(out), split="train")


def _rows(out) -> dict:
    return {(r["source"], r["layout"], r["index"]): (r["seed"], r["prompt"], r["style"], np.asarray(r["image"]).tobytes(),
                                                     np.asarray(r["mask"]).tobytes()) for r in _load(out)}


def test_a_folder_of_masks_becomes_a_loadable_dataset(tmp_path, mask_dir, tiny_dir, tiny_pipe, capsys):
    out = tmp_path / "out"
    code = main(["synthesize", str(mask_dir), "--out", str(out), "-n", "2", "--model", str(tiny_dir), "--steps", "2",
                 "--style", "photorealistic=3,pencil=1", "--augment", "flip", "--seed", "7", "--quiet"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "skipped 1 unreadable mask" in err and "broken.png" in json.loads((out / "index.json").read_text())["skipped"][0][0]
    ds = _load(out)
    assert ds.num_rows == 3 * 2 * 2  # masks x layouts x images
    assert {"image", "mask", "prompt", "negative_prompt", "style", "seed", "source", "model", "controlnet",
            "weights_sha256", "sampler", "steps", "seg2sat_version"} <= set(ds.column_names)
    want = {"a.png": striped_ids(0), "b.png": striped_ids(1), "ids.png": striped_ids(2)}
    for row in ds:
        mask = np.asarray(row["mask"])
        assert row["mask"].mode == "L" and np.array_equal(mask, apply(row["layout"], want[row["source"]]))
        assert row["image"].size == (SIDE, SIDE) and row["backend"] == "diffusion"
        assert row["seed"] == seeds.row_draws(row["source"], row["layout"], row["index"], 7)[0]
        assert row["style"] in ("photorealistic", "pencil") and row["prompt"].startswith("Aerial view. agricultural land")
        assert row["model"] == str(tiny_dir) and len(row["weights_sha256"]) == 64 and row["sampler"] == "unipc"
    card = (out / "README.md").read_text()
    assert "image-segmentation" in card and "load_dataset(" in card and "| 19 | other |" in card
    # any row can be made again alone, from its seed: the same image to the byte
    from seg2sat.generation import run
    from seg2sat.request import Request

    row = ds[5]
    req = Request.build(mask=np.asarray(row["mask"]), prompt=row["prompt"].split(". High")[0].split(". Black")[0],
                        style=row["style"], seed=row["seed"], steps=2)
    assert run(req, tiny_pipe).images[0].tobytes() == row["image"].tobytes()


def _stop_after(calls: int):
    """An engine that makes ``calls`` images, then is killed (the procedural renderer behind it)."""
    from seg2sat.engine import Engine
    from seg2sat.settings import Settings

    engine = Engine(Settings())  # procedural requests never load the model
    made = {"n": 0}
    real = engine.run

    def run(req, on_step=None, queue=True):
        if made["n"] == calls:
            raise KeyboardInterrupt
        made["n"] += 1
        return real(req, on_step, queue=queue)

    engine.run = run
    return engine


@pytest.mark.parametrize("fmt", ["parquet", "folder"])
def test_a_killed_run_resumes_to_the_same_rows(tmp_path, mask_dir, fmt, capsys):
    straight = tmp_path / "straight"
    common = ["--backend", "procedural", "-n", "3", "--format", fmt, "--shard-rows", "3", "--quiet"]
    assert main(["synthesize", str(mask_dir), "--out", str(straight), *common]) == 0
    out = tmp_path / "killed"
    opts = Options(source=str(mask_dir), out=out, num_images=3, format=fmt, backend="procedural", shard_rows=3,
                   progress=False)
    with pytest.raises(KeyboardInterrupt):
        synthesize(opts, _stop_after(4))  # the first mask's 3 rows are written, the second's are lost
    capsys.readouterr()
    assert main(["synthesize", str(mask_dir), "--out", str(out), *common]) == 0
    captured = capsys.readouterr()
    assert "made 6 images from 2 masks" in captured.out and "1 of 4 masks were already done" in captured.err
    if fmt == "parquet":
        assert _rows(out) == _rows(straight)
    else:
        def files(root):
            return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.glob("[im][ms][gk]/*")}
        assert files(out) == files(straight) and len(files(out)) == 2 * 9 + 1  # pairs + metadata.jsonl


def test_a_changed_or_removed_mask_is_remade_or_dropped(tmp_path, mask_dir, capsys):
    out = tmp_path / "out"
    args = ["synthesize", str(mask_dir), "--out", str(out), "--backend", "procedural", "-n", "2", "--quiet"]
    assert main(args) == 0
    before = _rows(out)
    masks.to_image(striped_ids(3)).save(mask_dir / "a.png")  # same name, new content
    (mask_dir / "b.png").unlink()
    capsys.readouterr()
    assert main(args) == 0
    assert "made 2 images from 1 masks" in capsys.readouterr().out
    after = _rows(out)
    assert sorted({k[0] for k in after}) == ["a.png", "ids.png"] and len(after) == 4
    assert after[("ids.png", "", 0)] == before[("ids.png", "", 0)]
    assert after[("a.png", "", 0)][4] == striped_ids(3).tobytes() and after[("a.png", "", 0)][0] == before[("a.png", "", 0)][0]


def test_folder_format_writes_flair_named_pairs(tmp_path, mask_dir):
    out = tmp_path / "out"
    assert main(["synthesize", str(mask_dir), "--out", str(out), "--format", "folder", "--backend", "procedural",
                 "--quiet"]) == 0
    images = sorted(p.name for p in (out / "img").glob("*.png"))
    assert images == ["IMG_a_000.png", "IMG_b_000.png", "IMG_ids_000.png"]
    want = {"a": striped_ids(0), "b": striped_ids(1), "ids": striped_ids(2)}
    for name in images:
        mask = Image.open(out / "msk" / name.replace("IMG_", "MSK_"))
        assert mask.mode == "L" and np.array_equal(np.asarray(mask), want[name[4:-8]])
    lines = [json.loads(line) for line in (out / "img" / "metadata.jsonl").read_text().splitlines()]
    assert [line["file_name"] for line in lines] == images and lines[0]["mask"] == "../msk/MSK_a_000.png"


def test_geotiff_masks_give_pairs_on_their_grid(tmp_path):
    src = tmp_path / "flair"
    src.mkdir()
    for k in range(2):
        raster.write_classes(src / f"MSK_{k}.tif", striped_ids(k), raster.Grid(SIDE, SIDE, "EPSG:2154", ORIGIN))
        (src / f"IMG_{k}.tif").write_bytes(b"aerial photo: not a mask, left alone")
    out = tmp_path / "out"
    assert main(["synthesize", str(src), "--out", str(out), "--format", "geotiff", "--backend", "procedural",
                 "--quiet"]) == 0
    for k in range(2):
        with rasterio.open(out / "img" / f"IMG_{k}_000.tif") as img, rasterio.open(out / "msk" / f"MSK_{k}_000.tif") as msk:
            assert img.crs == msk.crs == "EPSG:2154" and img.transform == msk.transform == ORIGIN
            assert img.count == 3 and msk.count == 1 and np.array_equal(msk.read(1), striped_ids(k))
    parquet = tmp_path / "parquet"  # the same source as a plain dataset
    assert main(["synthesize", str(src), "--out", str(parquet), "--backend", "procedural", "--quiet"]) == 0
    assert sorted(_load(parquet)["source"]) == ["MSK_0.tif", "MSK_1.tif"]


def test_a_prepared_dataset_gives_its_captions_as_prompts(tmp_path):
    from datasets import Dataset, DatasetDict, Features, Value
    from datasets import Image as ImageFeature

    rows = {"image": [masks.to_image(striped_ids(k)) for k in range(2)],  # stands in for the photo
            "conditioning_image": [masks.to_image(striped_ids(k)) for k in range(2)],
            "text": ["Aerial view of Mourenx, France. agricultural land.", "Aerial view of Pau. water."],
            "id": ["D064_2019/Z1/0001", "D064_2019/Z1/0002"]}
    features = Features({"image": ImageFeature(), "conditioning_image": ImageFeature(), "text": Value("string"),
                         "id": Value("string")})
    DatasetDict({"train": Dataset.from_dict(rows, features=features)}).save_to_disk(str(tmp_path / "prepared"))
    out = tmp_path / "out"
    assert main(["synthesize", str(tmp_path / "prepared"), "--out", str(out), "--backend", "procedural",
                 "--style", "lego", "--quiet"]) == 0
    ds = _load(out).sort("source")
    assert ds["source"] == rows["id"]
    assert ds["prompt"] == ["Aerial view of Mourenx, France. agricultural land. Colorful lego bricks",
                            "Aerial view of Pau. water. Colorful lego bricks"]
    assert np.array_equal(np.asarray(ds[1]["mask"]), striped_ids(1))


def test_any_hugging_face_dataset_with_its_columns(tmp_path, capsys):
    from datasets import Dataset, Features, Value
    from datasets import Image as ImageFeature

    data = tmp_path / "hf"
    data.mkdir()
    features = Features({"seg": ImageFeature(), "words": Value("string")})
    Dataset.from_dict({"seg": [Image.fromarray(striped_ids(k), "L") for k in range(3)],
                       "words": ["one", "two", "three"]}, features=features).to_parquet(str(data / "train.parquet"))
    out = tmp_path / "out"
    assert main(["synthesize", str(data), "--out", str(out), "--mask-column", "seg", "--caption-column", "words",
                 "--backend", "procedural", "--quiet"]) == 0
    ds = _load(out).sort("source")
    assert ds["source"] == ["row-0000000", "row-0000001", "row-0000002"] and ds["prompt"] == ["one", "two", "three"]
    assert np.array_equal(np.asarray(ds[2]["mask"]), striped_ids(2))
    capsys.readouterr()
    assert main(["synthesize", str(data), "--out", str(tmp_path / "o2"), "--mask-column", "label",
                 "--backend", "procedural", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: --mask-column: {data} has no column 'label'; it has: seg, words"


def _error(capsys, *argv) -> str:
    capsys.readouterr()
    assert main(["synthesize", *argv, "--backend", "procedural", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    return err


def test_bad_input_is_one_line_and_a_different_run_is_refused(tmp_path, mask_dir, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no mask files" in _error(capsys, str(empty), "--out", str(tmp_path / "x"))
    assert "no such folder" in _error(capsys, str(tmp_path / "missing"), "--out", str(tmp_path / "x"))
    assert "--steps: must be an integer" in _error(capsys, str(mask_dir), "--out", str(tmp_path / "x"), "--steps", "0")
    assert "--style: unknown style 'watercolour'" in _error(capsys, str(mask_dir), "--out", str(tmp_path / "x"),
                                                            "--style", "watercolour=2")
    assert "--augment: unknown layout" in _error(capsys, str(mask_dir), "--out", str(tmp_path / "x"), "--augment", "zoom")
    assert "--format geotiff: every mask must be a GeoTIFF" in _error(capsys, str(mask_dir), "--out",
                                                                       str(tmp_path / "x"), "--format", "geotiff")
    (tmp_path / "file").write_text("")
    assert "is a file, not a folder" in _error(capsys, str(mask_dir), "--out", str(tmp_path / "file"))
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    assert "holds no synthesize run" in _error(capsys, str(mask_dir), "--out", str(foreign))
    out = tmp_path / "out"
    assert main(["synthesize", str(mask_dir), "--out", str(out), "--backend", "procedural", "--quiet"]) == 0
    err = _error(capsys, str(mask_dir), "--out", str(out), "-n", "2")
    assert "holds a different run (num_images 1 -> 2)" in err and "--resume" in err and "--overwrite" in err
    assert main(["synthesize", str(mask_dir), "--out", str(out), "-n", "2", "--resume", "--backend", "procedural",
                 "--quiet"]) == 0
    assert _load(out).num_rows == 3  # --resume keeps the finished masks as they are
    assert main(["synthesize", str(mask_dir), "--out", str(out), "-n", "2", "--overwrite", "--backend", "procedural",
                 "--quiet"]) == 0
    assert _load(out).num_rows == 6


def test_seeds_and_styles_depend_on_the_row_alone():
    a = seeds.row_draws("zone/MSK_1.tif", "", 0, 0)
    assert a == seeds.row_draws("zone/MSK_1.tif", "", 0, 0) and 0 <= a[0] < 2**63
    others = {seeds.row_draws("zone/MSK_1.tif", "", 1, 0), seeds.row_draws("zone/MSK_2.tif", "", 0, 0),
              seeds.row_draws("zone/MSK_1.tif", "flip", 0, 0), seeds.row_draws("zone/MSK_1.tif", "", 0, 1)}
    assert len({s for s, _ in others} | {a[0]}) == 5
    mix = seeds.parse_styles("photorealistic=3, pencil")
    assert mix == [("photorealistic", 0.75), ("pencil", 0.25)]
    drawn = [seeds.pick_style(mix, seeds.row_draws(f"m{i}", "", 0, 0)[1]) for i in range(2000)]
    assert 0.70 < drawn.count("photorealistic") / len(drawn) < 0.80
    assert parse_augment("flip, rot90,flip") == ["", "flip", "rot90"]
    with pytest.raises(ValueError, match="must be positive"):
        seeds.parse_styles("lego=0")


@pytest.mark.slow
def test_two_accelerate_processes_give_the_rows_of_one(tmp_path, mask_dir, tiny_dir):
    """`accelerate launch --multi_gpu --num_processes 2` on CPUs: torchrun + gloo, each process its own masks,
    with the progress bars on (a bar per process and an overall one; the end once hung with bars on)."""
    args = [str(mask_dir), "--model", str(tiny_dir), "--steps", "2", "-n", "2", "--augment", "rot90"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    one = subprocess.run([sys.executable, "-m", "seg2sat", "synthesize", *args, "--quiet", "--out", str(tmp_path / "one")],
                         capture_output=True, text=True, env=env, timeout=600)
    assert one.returncode == 0, one.stderr[-2000:]
    two = subprocess.run(
        [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines",
         "1", "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "seg2sat", "synthesize", *args,
         "--out", str(tmp_path / "two")], capture_output=True, text=True, env=env, timeout=600)
    assert two.returncode == 0, two.stderr[-2000:]
    assert "over 2 process(es)" in two.stdout
    assert all(bar in two.stderr for bar in ("synthesize 1/2", "synthesize 2/2", "overall"))
    assert len(list((tmp_path / "two" / "data").glob("train-00[01]-*.parquet"))) == 2  # each process its shards
    assert _rows(tmp_path / "two") == _rows(tmp_path / "one") and len(_rows(tmp_path / "one")) == 12


def test_an_output_folder_inside_the_source_is_not_read_as_masks(tmp_path, mask_dir, capsys):
    out = mask_dir / "synth"
    for _ in range(2):  # the second run must find the same 3 masks, not the first run's pairs
        assert main(["synthesize", str(mask_dir), "--out", str(out), "--backend", "procedural", "--quiet"]) == 0
    assert "made 0 images" in capsys.readouterr().out and _load(out).num_rows == 3


def test_a_flair_tree_and_its_prepared_dataset_both_become_datasets(tmp_path):
    """FLAIR's own layout (IMG_ photographs beside MSK_ masks): as GeoTIFF pairs, and through `seg2sat prepare`."""
    from seg2sat.data.dataset import prepare

    root = tmp_path / "flair"
    for n in (1, 2):
        folder = root / "D069_2020" / "Z4_UA"
        transform = from_origin(842_000 + n * 102.4, 6_519_000, 1.6, 1.6)
        for kind, data in (("img", np.random.default_rng(n).integers(0, 256, (5, SIDE, SIDE), np.uint8)),
                           ("msk", striped_ids(n)[None])):
            (folder / kind).mkdir(parents=True, exist_ok=True)
            with rasterio.open(folder / kind / f"{kind.upper()}_{n:06d}.tif", "w", driver="GTiff", width=SIDE,
                               height=SIDE, count=len(data), dtype="uint8", crs="EPSG:2154", transform=transform) as dst:
                dst.write(data)
    out = tmp_path / "geotiff"
    assert main(["synthesize", str(root), "--out", str(out), "--format", "geotiff", "--backend", "procedural",
                 "--quiet"]) == 0
    assert sorted(p.name for p in (out / "img").glob("*.tif")) == ["IMG_000001_000.tif", "IMG_000002_000.tif"]
    with rasterio.open(out / "msk" / "MSK_000002_000.tif") as msk:
        assert msk.transform == from_origin(842_000 + 204.8, 6_519_000, 1.6, 1.6) and np.array_equal(msk.read(1), striped_ids(2))
    prepared = tmp_path / "prepared"
    prepare(root, prepared, geocoder=None, size=SIDE, progress=False)
    out = tmp_path / "from-prepared"
    assert main(["synthesize", str(prepared), "--out", str(out), "-n", "2", "--backend", "procedural", "--quiet"]) == 0
    ds = _load(out).sort(["source", "index"])
    assert ds.num_rows == 4 and ds["prompt"][0] == "Aerial view. agricultural land, building, water."
    assert np.array_equal(np.asarray(ds[2]["mask"]), striped_ids(2))

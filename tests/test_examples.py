"""Every example script runs as written (against the tiny pipeline), imports without side effects,
and the sample masks are clean class maps drawn by examples/make_masks.py."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from seg2sat import load_mask, pipelines
from seg2sat.classes import BY_ID
from seg2sat.testing.figures import GAP

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
MASKS = EXAMPLES / "masks"
SCRIPTS = sorted(EXAMPLES.glob("*.py")) + [ROOT / "images" / "make_figures.py"]


def load_script(path: Path):
    spec = importlib.util.spec_from_file_location(f"example_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(script: str, *args, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / script), *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=300)


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


# --- sample masks -------------------------------------------------------------------------

EXPECTED = {
    "town": {"building", "impervious surface", "herbaceous vegetation", "swimming pool"},
    "river": {"water", "deciduous", "plowed land", "agricultural land"},
    "forest_clearcut": {"clear cut", "coniferous", "pervious surface"},
    "vineyards": {"vineyard", "pervious surface", "building"},
    "coast": {"water", "bare soil", "building", "swimming pool"},
}


def test_sample_masks_are_the_script_s_drawings_in_class_colours_only():
    make_masks = load_script(EXAMPLES / "make_masks.py")
    assert set(make_masks.MASKS) == set(EXPECTED) == {p.stem for p in MASKS.glob("*.png")}
    for name, classes in EXPECTED.items():
        with Image.open(MASKS / f"{name}.png") as im:
            assert im.size == (512, 512), name
            loaded = load_mask(im)
        assert loaded.off_palette == 0.0, f"{name}.png has colours that are not class colours"
        # The committed file is what the script draws (up to a rasteriser change in a new Pillow).
        assert (loaded.ids == make_masks.draw(name)).mean() > 0.99, f"{name}.png is not what make_masks.py draws"
        present = {BY_ID[i].name for i in np.unique(loaded.ids)}
        assert classes <= present, f"{name}.png lacks {classes - present}"
        # Shapes, not noise: neighbouring pixels almost always share a class.
        assert (loaded.ids[:, 1:] == loaded.ids[:, :-1]).mean() > 0.95, name


def test_make_masks_writes_resized_clean_masks(tmp_path):
    r = run("examples/make_masks.py", "--out", tmp_path, "--size", 128, "--only", "town", "coast", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["coast.png", "town.png"]
    for path in tmp_path.glob("*.png"):
        with Image.open(path) as im:
            assert im.size == (128, 128)
            assert load_mask(im).off_palette == 0.0


def test_make_masks_refuses_an_unknown_sample():
    make_masks = load_script(EXAMPLES / "make_masks.py")
    with pytest.raises(ValueError, match="unknown sample mask 'castle'"):
        make_masks.draw("castle")


# --- every example runs -----------------------------------------------------------------


def check_generate_seeds(out: Path, tiny: Path) -> None:
    a, b = pixels(out / "town-seed3.png"), pixels(out / "town-seed4.png")
    assert a.shape == b.shape == (64, 64, 3)
    assert not np.array_equal(a, b), "two seeds gave the same image"
    with Image.open(out / "town-seeds.png") as sheet:
        assert sheet.width == GAP + 3 * (64 + GAP)  # mask + two seeds in a row


def check_style_grid(out: Path, tiny: Path) -> None:
    assert pixels(out / "vineyards-lego.png").shape == pixels(out / "vineyards-oil.png").shape == (64, 64, 3)
    assert (out / "vineyards-styles.png").is_file()


def check_inpaint_region(out: Path, tiny: Path) -> None:
    before, after = pixels(out / "town-before.png"), pixels(out / "town-inpainted.png")
    region = pixels(out / "town-region.png")[..., 0] > 127
    assert region.sum() == 32 * 32 and region[32:, 32:].all()
    assert np.array_equal(before[~region], after[~region]), "pixels outside the region changed"
    assert not np.array_equal(before[region], after[region])


def check_outpaint_side(out: Path, tiny: Path) -> None:
    start, grown = pixels(out / "river-start.png"), pixels(out / "river-outpainted-left.png")
    assert start.shape == (64, 48, 3) and grown.shape == (64, 64, 3)
    assert np.array_equal(grown[:, 16:], start), "the first image was not kept as it was"


def check_trained_controlnet(out: Path, tiny: Path) -> None:
    assert pixels(out / "town-trained-seed5.png").shape == (64, 64, 3)


def check_large_map(out: Path, tiny: Path) -> None:
    with Image.open(out / "mosaic-mask.png") as mask:
        assert mask.size == (128, 128) and load_mask(mask).off_palette == 0.0
    assert pixels(out / "mosaic-seed0.png").shape == (128, 128, 3)


def check_make_figures(out: Path, tiny: Path) -> None:
    assert sorted(p.name for p in out.iterdir()) == ["sample_masks.png", "seed_grid.png", "style_grid.png"]
    with Image.open(out / "seed_grid.png") as sheet:
        assert sheet.width == GAP + 5 * (64 + GAP)  # mask + 4 seeds


SMOKE = {
    "make_masks.py": None,  # tested above
    "synthetic_segmentation.py": None,  # trains segmentation models: tests/test_synthetic_segmentation.py
    "generate_seeds.py": (["examples/masks/town.png", "--seeds", 3, 4], check_generate_seeds),
    "style_grid.py": (["examples/masks/vineyards.png", "--styles", "lego", "oil"], check_style_grid),
    "inpaint_region.py": (["examples/masks/town.png", "--box", "0.5,0.5,1,1", "--repaint", "water"], check_inpaint_region),
    "outpaint_side.py": (["examples/masks/river.png", "--side", "left", "--pixels", 16], check_outpaint_side),
    "trained_controlnet.py": (["examples/masks/town.png", "--controlnet", "TRAINED", "--seeds", 5], check_trained_controlnet),
    "large_map.py": (["--size", 128], check_large_map),  # a real large map is too slow on CPU; tiling has its own tests
}
RUNS = {f"examples/{name}": spec for name, spec in SMOKE.items() if spec}
RUNS["images/make_figures.py"] = ([], check_make_figures)


def test_every_example_script_has_a_smoke_test():
    assert {p.name for p in EXAMPLES.glob("*.py")} == set(SMOKE)


@pytest.fixture(scope="module")
def smoke_runs(tiny_dir, tmp_path_factory) -> dict[str, tuple[int, str, str, Path]]:
    """Run every script once against the tiny pipeline, all at the same time.

    Each run is mostly interpreter and library start-up, so on a machine with several
    cores running them side by side takes about as long as the slowest one.
    """
    base = tmp_path_factory.mktemp("examples")
    trained = base / "trained"  # the layout controlnet_training writes: checkpoint-<step>/controlnet
    shutil.copytree(Path(tiny_dir) / "controlnet", trained / "checkpoint-3" / "controlnet")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # side by side, one thread each: no oversubscription
    started = {}
    for n, (script, (args, _)) in enumerate(RUNS.items()):
        out, log = base / f"out{n}", base / f"log{n}"
        args = [trained if a == "TRAINED" else a for a in args]
        command = [sys.executable, str(ROOT / script), *map(str, args), "--model", str(tiny_dir), "--steps", "1",
                   *([] if "--size" in args else ["--size", "64"]), "--out", str(out)]
        stdout, stderr = open(f"{log}.out", "w+"), open(f"{log}.err", "w+")
        process = subprocess.Popen(command, cwd=ROOT, stdout=stdout, stderr=stderr, text=True, env=env)
        started[script] = (process, stdout, stderr, out)
    finished = {}
    for script, (process, stdout, stderr, out) in started.items():
        code = process.wait(timeout=600)
        stdout.seek(0), stderr.seek(0)
        finished[script] = (code, stdout.read(), stderr.read(), out)
        stdout.close(), stderr.close()
    return finished


@pytest.mark.slow
@pytest.mark.parametrize("script", list(RUNS))
def test_script_runs_against_the_tiny_pipeline(script, smoke_runs, tiny_dir):
    code, stdout, stderr, out = smoke_runs[script]
    assert code == 0, stderr[-3000:]
    printed = [Path(line) for line in stdout.splitlines() if line.endswith(".png")]
    assert printed and all(p.is_file() for p in printed)  # it says where its results are
    RUNS[script][1](out, Path(tiny_dir))


def test_make_figures_without_weights_says_so_and_keeps_the_masks_figure(tmp_path, capsys):
    make_figures = load_script(ROOT / "images" / "make_figures.py")
    with pytest.raises(SystemExit) as exit_:
        make_figures.main(["--model", str(tmp_path / "missing"), "--out", str(tmp_path / "fig")])
    assert exit_.value.code == 2
    err = capsys.readouterr().err  # (transformers may warn about torchvision first, on its first import)
    assert err.splitlines()[-1].startswith("error: Cannot load the base model")
    assert [p.name for p in (tmp_path / "fig").iterdir()] == ["sample_masks.png"]


# --- bad input and imports -------------------------------------------------------------------


@pytest.mark.parametrize("script, args, message", [
    ("generate_seeds.py", ["nowhere.png"], "mask file not found"),
    ("style_grid.py", [str(MASKS / "town.png"), "--styles", "lego", "--size", "64"], None),
    ("inpaint_region.py", [str(MASKS / "town.png"), "--box", "0.6,0,0.5,1"], "box must be"),
    ("inpaint_region.py", [str(MASKS / "town.png"), "--repaint", "lava"], "unknown land-cover class 'lava'"),
    ("outpaint_side.py", [str(MASKS / "town.png"), "--pixels", "600"], "pixels must be between 1 and 511"),
    ("trained_controlnet.py", [str(MASKS / "town.png"), "--controlnet", "nowhere"], "no ControlNet in nowhere"),
    ("trained_controlnet.py", [str(MASKS / "town.png"), "--controlnet", "nowhere", "--controlnet-subfolder", "ckpt-9"],
     f"no ControlNet in {Path('nowhere', 'ckpt-9')}"),
    ("large_map.py", ["nowhere.png"], "mask file not found"),
])
def test_bad_input_is_one_clear_error_before_any_model_work(script, args, message, tmp_path, capsys, monkeypatch):
    if message is None:  # a model folder that does not exist
        args, message = [*args, "--model", str(tmp_path / "missing")], "Cannot load the base model"
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        load_script(EXAMPLES / script).main([*args, "--out", str(tmp_path / "out")])
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


MODEL_SCRIPTS = [p for p in SCRIPTS if p.name not in ("make_masks.py", "synthetic_segmentation.py")]
"""The scripts that load the ControlNet pipeline (synthetic_segmentation's --model is a SegFormer)."""


@pytest.mark.parametrize("path", MODEL_SCRIPTS, ids=lambda p: p.name)
def test_scripts_take_the_model_options_from_the_shared_module(path, capsys):
    declared = re.findall(r'add_argument\(\s*"(--model|--controlnet|--device|--steps)"', path.read_text())
    assert declared == []  # seg2sat.options declares them once, for the CLI and the scripts alike
    with pytest.raises(SystemExit) as exit_:
        load_script(path).main(["--help"])
    shown = capsys.readouterr().out
    assert exit_.value.code == 0
    assert all(flag in shown for flag in ("--model", "--controlnet", "--controlnet-subfolder", "--device"))
    assert re.search(r"denoising steps \(default \d+\)", " ".join(shown.split()))


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.name)
def test_scripts_import_without_side_effects(path, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    loaded_before = pipelines.CACHE.keys()
    module = load_script(path)
    assert capsys.readouterr().out == ""  # (libraries may warn on stderr when first imported)
    assert list(tmp_path.iterdir()) == []
    assert pipelines.CACHE.keys() == loaded_before  # no model loaded on import
    assert callable(module.main) and module.__doc__


def test_mosaic_refuses_masks_of_different_sizes(tmp_path):
    large_map = load_script(EXAMPLES / "large_map.py")
    small = tmp_path / "small.png"
    Image.new("RGB", (64, 64), "#db0e9a").save(small)
    assert large_map.mosaic([MASKS / "town.png", MASKS / "river.png"]).shape == (512, 1024)
    with pytest.raises(ValueError, match="same size"):
        large_map.mosaic([MASKS / "town.png", small])

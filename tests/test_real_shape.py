"""The real model's shape: SD 2.1 base + ControlNet at full size, with random weights.

The slow, real-size test (marked ``realsize``; ``-m "not realsize"`` leaves it out):
the tiny pipeline cannot show what breaks only at the real size or with the hub
repos' file layout (fp16 variant files beside the weights, a ``.bin``-only ControlNet,
the published configs and tokenizer files), nor what a step really costs. Here
:func:`seg2sat.testing.realsize.build_sd21_shaped` writes such folders once per session, and
one denoising step each goes through the CLI (in a subprocess) and through
generate / inpaint / outpaint / a tiled map in this process, the pipeline loaded once.

Costs on 2 shared CPU cores, one torch thread: 8-10 minutes, ~8 GB of RAM at the peak,
~9 GB of disk in the temporary folder (removed at the end). Each step's wall time,
CPU time and peak RSS are printed (``pytest -s tests/test_real_shape.py`` shows them).
"""

from __future__ import annotations

import gc
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from seg2sat import masks

pytestmark = pytest.mark.realsize

PROMPT = "Aerial view of Paris, Île-de-France"
TIMINGS: list[str] = []


def _record(line: str) -> None:
    TIMINGS.append(line)
    print(f"\n[realsize] {line}", flush=True)


def _fmt(what: str, wall: float, cpu: float, peak_kib: int, whose: str) -> str:
    return f"{what:<34} wall {wall:7.1f} s   cpu {cpu:7.1f} s   peak RSS {peak_kib / 2**20:5.2f} GiB ({whose})"


def run_measured(args: list[str], what: str) -> subprocess.CompletedProcess:
    """Run a command; record its wall time, CPU time (user + system) and peak RSS, from wait4."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(args, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0), err.seek(0)
        result = subprocess.CompletedProcess(args, proc.returncode, out.read().decode(errors="replace"),
                                             err.read().decode(errors="replace"))
    _record(_fmt(what, wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss, "subprocess"))
    return result


@contextmanager
def measured(what: str):
    """Wall and CPU time of a block of this process, and the process's peak RSS so far (ru_maxrss)."""
    before = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    yield
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    _record(_fmt(what, wall, cpu, after.ru_maxrss, "test process, peak so far"))


def _not_constant(image: Image.Image) -> bool:
    pixels = np.asarray(image.convert("RGB")).reshape(-1, 3)
    return float(pixels.std()) > 1.0 and len(np.unique(pixels, axis=0)) > 100


def _map(width: int, height: int) -> np.ndarray:
    """Fields, a road, a block of buildings and a river, scaled to the size."""
    ids = np.full((height, width), 11, np.uint8)
    ids[:, width // 2 - 16: width // 2 + 16] = 3
    ids[height // 10: height // 2, width // 10: width // 3] = 1
    ids[height * 3 // 5:, width * 2 // 3:] = 5
    return ids


@pytest.fixture(scope="module")
def realsize_dirs():
    """SD 2.1 base-shaped folders, built in a subprocess (so its memory is gone after), removed at the end."""
    root = Path(tempfile.mkdtemp(prefix="seg2sat-realsize-"))
    try:
        r = run_measured([sys.executable, "-m", "seg2sat.realsize", str(root)], "build (python -m seg2sat.realsize)")
        assert r.returncode == 0, r.stderr[-3000:]
        yield root / "base", root / "controlnet"
    finally:
        shutil.rmtree(root, ignore_errors=True)
        if TIMINGS:
            print("\n[realsize] summary\n" + "\n".join(f"[realsize]   {line}" for line in TIMINGS), flush=True)


@pytest.fixture(scope="module")
def realsize_pipe(realsize_dirs):
    from seg2sat.pipelines import clear_cache, load_pipeline

    base, controlnet = realsize_dirs
    with measured("load_pipeline(base, controlnet)"):
        pipe = load_pipeline(base, controlnet)
    yield pipe
    del pipe
    clear_cache()  # the rest of the session should not carry ~7 GB of weights
    gc.collect()


def test_layout_is_the_hub_repos(realsize_dirs):
    base, controlnet = realsize_dirs
    assert sorted(p.name for p in controlnet.iterdir()) == ["config.json", "diffusion_pytorch_model.bin"]
    assert (base / "unet" / "diffusion_pytorch_model.fp16.safetensors").is_file()
    assert (base / "text_encoder" / "model.fp16.safetensors").is_file()
    assert sorted(p.name for p in (base / "tokenizer").iterdir()) == [
        "merges.txt", "special_tokens_map.json", "tokenizer_config.json", "vocab.json"]


def test_cli_generate_512(tmp_path, realsize_dirs):
    base, controlnet = realsize_dirs
    mask = tmp_path / "map.png"
    masks.to_image(_map(512, 512)).save(mask)
    r = run_measured([sys.executable, "-m", "seg2sat", "generate", str(mask), "--prompt", PROMPT, "--model", str(base),
                      "--controlnet", str(controlnet), "--steps", "1", "--seed", "3", "--out", str(tmp_path / "out")],
                     "CLI generate 512x512, 1 step")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "An error occurred" not in r.stderr, r.stderr  # diffusers' noise about the .bin-only ControlNet
    image = Image.open(tmp_path / "out" / "map-seed3.png")
    assert image.size == (512, 512) and _not_constant(image)


def test_loaded_pipeline_has_the_real_shape(realsize_pipe):
    from seg2sat import tiling
    from seg2sat.testing.realsize import VOCAB_SIZE

    pipe = realsize_pipe
    millions = {name: sum(p.numel() for p in getattr(pipe, name).parameters()) / 1e6
                for name in ("unet", "controlnet", "text_encoder", "vae")}
    _record("parameters (M): " + ", ".join(f"{k} {v:.0f}" for k, v in millions.items()))
    assert 860 < millions["unet"] < 870 and 355 < millions["controlnet"] < 370 and 335 < millions["text_encoder"] < 345
    assert pipe.unet.config.cross_attention_dim == pipe.text_encoder.config.hidden_size == 1024
    assert pipe.text_encoder.config.num_hidden_layers == 23 and len(pipe.tokenizer) == VOCAB_SIZE
    assert max(pipe.tokenizer(PROMPT).input_ids) < pipe.text_encoder.config.vocab_size
    assert tiling.tile_size(pipe) == 512


def test_generate_512(realsize_pipe):
    from seg2sat.generation import generate

    with measured("generate 512x512, 1 step"):
        result = generate(_map(512, 512), PROMPT, seed=3, steps=1, pipeline=realsize_pipe)
    (image,) = result.images
    assert image.size == (512, 512) and _not_constant(image)


def test_inpaint_keeps_everything_outside_the_region(realsize_pipe):
    from seg2sat.generation import inpaint
    from seg2sat.render import render_array

    ids = _map(512, 512)
    source = render_array(ids, seed=1)
    region = np.zeros(ids.shape, bool)
    region[96:320, 128:384] = True
    with measured("inpaint 512x512, 1 step"):
        result = inpaint(source, ids, region, PROMPT, seed=4, steps=1, pipeline=realsize_pipe)
    (image,) = result.images
    out = np.asarray(image)
    assert image.size == (512, 512) and _not_constant(image)
    assert np.array_equal(out[~region], source[~region])
    assert not np.array_equal(out[region], source[region])


def test_outpaint_keeps_the_original(realsize_pipe):
    from seg2sat.generation import grow, outpaint
    from seg2sat.render import render_array

    ids = _map(512, 512)
    (width, height), (x, y) = grow("bottom", 64, (512, 448))
    source = render_array(ids[:448], seed=2)
    with measured("outpaint 512x448 -> 512x512, 1 step"):
        result = outpaint(source, ids, (x, y), PROMPT, seed=5, steps=1, pipeline=realsize_pipe)
    (image,) = result.images
    out = np.asarray(image)
    assert image.size == (width, height) == (512, 512) and _not_constant(image)
    assert np.array_equal(out[y: y + 448, x: x + 512], source)
    assert _not_constant(Image.fromarray(out[448:]))


def test_tiled_768x512(realsize_pipe):
    from seg2sat import tiling
    from seg2sat.generation import generate

    assert tiling.needs_tiling(realsize_pipe, 768, 512)
    with measured("generate 768x512 (tiled), 1 step"):
        result = generate(_map(768, 512), PROMPT, seed=6, steps=1, pipeline=realsize_pipe)
    (image,) = result.images
    assert image.size == (768, 512) and _not_constant(image)

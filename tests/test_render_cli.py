"""`seg2sat generate` with the procedural backend, the fallback when weights are missing, and large maps."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from seg2sat import masks
from seg2sat.cli import main
from seg2sat.render import render_array


def test_procedural_backend_needs_no_model(tmp_path, town_png, town_ids, capsys):
    out = tmp_path / "out"
    assert main(["generate", str(town_png), "--prompt", "Aerial view", "--backend", "procedural",
                 "--seed", "3", "-n", "2", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["town-seed3.png", "town-seed4.png"]
    assert np.array_equal(np.asarray(Image.open(out / "town-seed3.png")), render_array(town_ids, seed=3))
    assert capsys.readouterr().err == ""


def test_missing_weights_fall_back_to_the_procedural_renderer_and_say_so_once(tmp_path, town_png, capsys):
    out = tmp_path / "out"
    code = main(["generate", str(town_png), "--prompt", "Aerial view", "--model", str(tmp_path / "no-weights"),
                 "--seed", "1", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 0
    assert (out / "town-seed1.png").is_file()
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "procedural" in lines[0] and "--no-fallback" in lines[0]


@pytest.mark.slow  # a real seg2sat process: torch and diffusers load in it
def test_the_fallback_note_is_printed_once_in_a_real_terminal_session(tmp_path, town_png):
    """No logging configured (a user's shell): the note is one line, in flags, not the core's `field` wording."""
    run = subprocess.run([sys.executable, "-m", "seg2sat", "generate", str(town_png), "--prompt", "Aerial view",
                          "--model", str(tmp_path / "no-weights"), "--seed", "1", "--out", str(tmp_path / "out")],
                         capture_output=True, text=True, timeout=300)
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert run.returncode == 0 and len(lines) == 1, run.stderr
    assert "--no-fallback" in lines[0] and "`" not in lines[0]


def test_no_fallback_fails_with_one_clear_line(tmp_path, town_png, capsys):
    out = tmp_path / "out"
    code = main(["generate", str(town_png), "--prompt", "Aerial view", "--model", str(tmp_path / "no-weights"),
                 "--no-fallback", "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error:") and "no-weights" in err and "\n" not in err
    assert not out.exists()


def test_cli_generates_a_map_larger_than_a_tile_in_one_image(tmp_path, tiny_dir, town_ids, capsys):
    mask = tmp_path / "big.png"
    masks.to_image(np.tile(town_ids, (1, 5))[:, :600]).save(mask)  # 600 x 64: two 512 px tiles
    out = tmp_path / "out"
    assert main(["generate", str(mask), "--prompt", "Aerial view", "--model", str(tiny_dir), "--steps", "1",
                 "--seed", "2", "--out", str(out)]) == 0
    assert Image.open(out / "big-seed2.png").size == (600, 64)


def test_cli_image_to_image_from_the_procedural_render(tmp_path, tiny_dir, town_png, capsys):
    out = tmp_path / "out"
    base = ["generate", str(town_png), "--prompt", "Aerial view", "--model", str(tiny_dir), "--steps", "2",
            "--seed", "1", "--init", "procedural", "--out", str(out)]
    assert main(base + ["--strength", "0.5"]) == 0
    assert Image.open(out / "town-seed1.png").size == (128, 64)
    capsys.readouterr()
    assert main(base + ["--strength", "2"]) == 2
    assert "strength" in capsys.readouterr().err

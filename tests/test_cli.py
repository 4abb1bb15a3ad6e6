import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from seg2sat import masks


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "seg2sat", *map(str, args)], capture_output=True, text=True, cwd=cwd)


@pytest.mark.slow
def test_cli_generate_inpaint_outpaint_end_to_end(tmp_path, tiny_dir, town_png, town_ids):
    out = tmp_path / "out"
    r = run("generate", town_png, "--prompt", "Aerial view of Paris", "--model", tiny_dir, "--seed", "5", "-n", "2",
            "--steps", "2", "--style", "pencil", "--out", out)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["town-seed5.png", "town-seed6.png"]
    assert "denoising" in r.stderr  # the progress bar over steps

    region = np.zeros(town_ids.shape, np.uint8)
    region[10:30, 10:50] = 255
    Image.fromarray(region).save(tmp_path / "region.png")
    r = run("inpaint", out / "town-seed5.png", town_png, "--region", tmp_path / "region.png", "--prompt", "x",
            "--model", tiny_dir, "--steps", "2", "--seed", "1", "--out", out)
    assert r.returncode == 0, r.stderr
    inpainted = np.asarray(Image.open(out / "town-seed5-inpaint-seed1.png"))
    original = np.asarray(Image.open(out / "town-seed5.png"))
    assert np.array_equal(inpainted[region == 0], original[region == 0])

    grown = np.full((64, 192), 7, np.uint8)
    grown[:, :128] = town_ids
    masks.to_image(grown).save(tmp_path / "grown.png")
    r = run("outpaint", out / "town-seed5.png", tmp_path / "grown.png", "--at", "0,0", "--prompt", "x",
            "--model", tiny_dir, "--steps", "2", "--seed", "2", "--out", out)
    assert r.returncode == 0, r.stderr
    assert Image.open(out / "town-seed5-outpaint-seed2.png").size == (192, 64)


@pytest.mark.slow
def test_cli_errors_are_one_line_with_nonzero_exit(tmp_path, tiny_dir, town_png):
    r = run("generate", tmp_path / "nope.png", "--prompt", "x", "--model", tiny_dir, "--out", tmp_path)
    assert r.returncode == 2 and r.stderr.strip() == f"error: file not found: {tmp_path / 'nope.png'}"
    r = run("generate", town_png, "--prompt", "x", "--model", tiny_dir, "--steps", "0", "--out", tmp_path)
    assert r.returncode == 2 and r.stderr.strip().startswith("error: --steps: must be")
    r = run("outpaint", town_png, town_png, "--at", "a,b", "--prompt", "x", "--model", tiny_dir, "--out", tmp_path)
    assert r.returncode == 2 and "--at: must be X,Y" in r.stderr


@pytest.mark.slow
def test_make_tiny_and_help(tmp_path):
    r = run("make-tiny", tmp_path / "t")
    assert r.returncode == 0 and (tmp_path / "t" / "model_index.json").is_file()
    r = run("--help")
    assert r.returncode == 0 and "generate" in r.stdout and "make-tiny" in r.stdout


HEAVY = ("torch", "diffusers", "transformers")


@pytest.mark.slow
def test_help_and_model_free_commands_import_no_model_code(tmp_path):
    """`seg2sat --help`, every command's --help and `prepare` answer without loading torch or diffusers."""
    probe = (
        "import sys\n"
        "from seg2sat.cli import build_parser, main\n"
        "commands = list(build_parser()._subparsers._group_actions[0].choices)\n"
        "for argv in [['--help']] + [[c, '--help'] for c in commands] + [sys.argv[1:]]:\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit:\n"
        "        pass\n"
        f"print(commands, [m for m in {HEAVY!r} if m in sys.modules])\n"
    )
    # `prepare` on an empty folder: a model-free command that really runs (and reports the empty tree).
    (tmp_path / "flair").mkdir()
    r = subprocess.run([sys.executable, "-c", probe, "prepare", str(tmp_path / "flair"), str(tmp_path / "out"),
                        "--no-geocode"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    commands, loaded = r.stdout.strip().rsplit("] ", 1)
    assert "generate" in commands and "prepare" in commands and "serve" in commands
    assert loaded == "[]", f"imported {loaded} for --help / prepare"


@pytest.mark.slow
def test_inpaint_and_outpaint_fall_back_to_the_renderer_like_generate(tmp_path, town_png, town_ids):
    """No weights: every generating command says so in one line and renders instead, unless --no-fallback."""
    from seg2sat.render import render

    render(town_ids, seed=1).save(tmp_path / "image.png")
    region = np.zeros(town_ids.shape, np.uint8)
    region[10:30, 10:50] = 255
    Image.fromarray(region).save(tmp_path / "region.png")
    missing = tmp_path / "no-weights-here"
    out = tmp_path / "out"
    r = run("inpaint", tmp_path / "image.png", town_png, "--region", tmp_path / "region.png", "--prompt", "x",
            "--model", missing, "--seed", "3", "--out", out)
    assert r.returncode == 0, r.stderr
    assert "Using the procedural renderer instead" in r.stderr
    redone, original = (np.asarray(Image.open(p)) for p in (out / "image-inpaint-seed3.png", tmp_path / "image.png"))
    assert np.array_equal(redone[region == 0], original[region == 0])
    assert not np.array_equal(redone[region > 0], original[region > 0])

    grown = np.concatenate([town_ids, town_ids[:, :32]], axis=1)
    masks.to_image(grown).save(tmp_path / "grown.png")
    r = run("outpaint", tmp_path / "image.png", tmp_path / "grown.png", "--at", "0,0", "--prompt", "x",
            "--model", missing, "--seed", "3", "--out", out)
    assert r.returncode == 0 and "Using the procedural renderer instead" in r.stderr, r.stderr
    grown_image = np.asarray(Image.open(out / "image-outpaint-seed3.png"))
    assert grown_image.shape[:2] == grown.shape and np.array_equal(grown_image[:, :128], original)

    r = run("inpaint", tmp_path / "image.png", town_png, "--region", tmp_path / "region.png", "--prompt", "x",
            "--model", missing, "--no-fallback", "--out", out)
    assert r.returncode == 2 and r.stderr.startswith("error: Cannot load the base model"), r.stderr


@pytest.mark.slow
def test_a_cpu_with_bfloat16_arithmetic_gets_a_tip_once_unless_a_precision_was_chosen(tmp_path, tiny_dir, town_png):
    import torch

    from seg2sat.speed import cpu_computes_bf16

    common = ("generate", town_png, "--prompt", "x", "--model", tiny_dir, "--steps", "1", "--out", tmp_path)
    tips = [line for line in run(*common).stderr.splitlines() if line.startswith("tip:")]
    assert len(tips) == (1 if cpu_computes_bf16() and not torch.cuda.is_available() else 0)
    assert all("--dtype bfloat16" in tip for tip in tips)
    assert "tip:" not in run(*common, "--dtype", "float32").stderr


@pytest.mark.slow
def test_generate_never_writes_through_a_planted_symlink(tmp_path, town_png):
    out = tmp_path / "out"
    out.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    (out / "town-seed1.png").symlink_to(victim)
    r = run("generate", town_png, "--prompt", "x", "--backend", "procedural", "--seed", "1", "--out", out)
    assert r.returncode == 0, r.stderr
    assert victim.read_text() == "keep me"
    assert not (out / "town-seed1.png").is_symlink() and Image.open(out / "town-seed1.png").size == (128, 64)
    assert [p.name for p in out.iterdir()] == ["town-seed1.png"]  # no temporary file left behind

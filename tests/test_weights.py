"""Weights you can trust: the deleted SD 2.1 base, verified copies, ControlNet checkpoints, machines without network.

Every test runs the real ``seg2sat`` command against a local stand-in for the Hugging Face
Hub (``tests/hubstub.py``, ``HF_ENDPOINT`` on 127.0.0.1) with huggingface_hub 2.x as the
client. The tiny random-weights pipeline stands in for SD 2.1 base: the table of expected
hashes (``SEG2SAT_WEIGHT_SOURCES``) names its files' SHA256, as the real table names the
original's.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hubstub import Hub, sha256, start

from seg2sat import masks

OFFICIAL = "stabilityai/stable-diffusion-2-1-base"
CONTROLNET = "rgres/Seg2Sat-sd-controlnet"
WRONG, GOOD, SPARE = "wibe/sd-2-0-base-copy", "community/sd21-copy", "spare/sd21-copy"
WEIGHT_FILES = ("unet/diffusion_pytorch_model.safetensors", "text_encoder/model.safetensors",
                "vae/diffusion_pytorch_model.safetensors")


@pytest.fixture(scope="module")
def repos(tmp_path_factory, tiny_dir):
    """Folders laid out as the Hub repositories: SD 2.1 base, a copy with another UNet, the ControlNet's."""
    from diffusers import ControlNetModel, UNet2DConditionModel

    root = tmp_path_factory.mktemp("hub")
    base = root / "base"
    shutil.copytree(tiny_dir, base, ignore=shutil.ignore_patterns("controlnet"))
    index = json.loads((base / "model_index.json").read_text())
    index.pop("controlnet")
    index["_class_name"] = "StableDiffusionPipeline"
    (base / "model_index.json").write_text(json.dumps(index))
    wrong = root / "wrong"
    shutil.copytree(base, wrong)
    unet = UNet2DConditionModel.from_pretrained(base / "unet")
    for p in unet.parameters():
        p.data += 0.01  # "SD 2.0": same shapes, other weights
    unet.save_pretrained(wrong / "unet")
    controlnet = root / "controlnet"
    shutil.copytree(tiny_dir / "controlnet", controlnet)
    model = ControlNetModel.from_pretrained(tiny_dir / "controlnet")
    for p in model.parameters():  # its zero convolutions too: a checkpoint that changes the image
        p.data += 0.05
    model.save_pretrained(controlnet / "v2/checkpoint-14000/controlnet")
    model.save_pretrained(controlnet / "v2/checkpoint-16000/controlnet", safe_serialization=False)
    full = root / "full"
    shutil.copytree(tiny_dir, full)
    table = {"base": {"repos": [OFFICIAL, WRONG, GOOD, SPARE],
                      "files": {f: [sha256(base / f), (base / f).stat().st_size] for f in WEIGHT_FILES}},
             "controlnet": {"repos": [CONTROLNET],
                            "files": {"diffusion_pytorch_model.safetensors":
                                      [sha256(controlnet / "diffusion_pytorch_model.safetensors"), None]}}}
    (root / "sources.json").write_text(json.dumps(table))
    return {"base": base, "wrong": wrong, "controlnet": controlnet, "full": full, "table": root / "sources.json"}


@pytest.fixture
def hub(repos, tmp_path):
    """The Hub after November 2025: the official repository gone, a 2.0 copy, a good copy, the ControlNet."""
    state = Hub()
    state.add(OFFICIAL, repos["base"], status="gone")
    state.add(WRONG, repos["wrong"])
    state.add(GOOD, repos["base"])
    state.add(SPARE, repos["base"])
    state.add(CONTROLNET, repos["controlnet"])
    state.add("someone/full-pipeline", repos["full"])
    state.add("someone/gated-base", repos["base"], status="gated")
    server = start(state)
    yield state
    server.shutdown()


@pytest.fixture
def mask(tmp_path, town_ids):
    path = tmp_path / "town.png"
    masks.to_image(town_ids).save(path)
    return path


def seg2sat(hub: Hub, repos, tmp_path: Path, *args, **env) -> subprocess.CompletedProcess:
    """``seg2sat ARGS`` with the stand-in Hub, an empty cache of its own and no token."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "SEG2SAT_"))}
    environ.update(HF_ENDPOINT=hub.url, HF_HOME=str(tmp_path / "hf"), HF_HUB_DISABLE_TELEMETRY="1",
                   SEG2SAT_WEIGHT_SOURCES=str(repos["table"]), **env)
    return subprocess.run([sys.executable, "-m", "seg2sat", *map(str, args)], capture_output=True, text=True,
                          env=environ, timeout=300)


def generate(hub, repos, tmp_path, mask, *extra, **env):
    return seg2sat(hub, repos, tmp_path, "generate", mask, "--prompt", "Aerial view", "--steps", "1", "--seed", "1",
                   "--device", "cpu", "--out", tmp_path / "out", *extra, **env)


@pytest.mark.slow
def test_the_deleted_default_resolves_to_the_first_verified_copy(hub, repos, tmp_path, mask):
    r = generate(hub, repos, tmp_path, mask, "--no-fallback")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "out/town-seed1.png").is_file()
    assert f"{WRONG} is not SD 2.1 base: its unet/diffusion_pytorch_model.safetensors has SHA256" in r.stderr
    assert hub.asked(OFFICIAL)  # tried first: a Hub that still had it would be used
    assert not hub.downloads(WRONG), "the copy with another UNet must be skipped before any download"
    assert hub.downloads(GOOD) and not hub.downloads(SPARE)
    assert "huggingface-cli" not in r.stderr + r.stdout


@pytest.mark.slow
def test_the_old_id_named_explicitly_says_where_it_went(hub, repos, tmp_path, mask):
    r = generate(hub, repos, tmp_path, mask, "--no-fallback", "--model", OFFICIAL)
    assert r.returncode == 0, r.stderr
    assert f"{OFFICIAL} was deleted from the Hugging Face Hub (November 2025); using its verified copy {GOOD}" in r.stderr


@pytest.mark.slow
def test_no_good_copy_names_every_cause_and_falls_back_saying_so(hub, repos, tmp_path, mask):
    hub.repos[GOOD].status = hub.repos[SPARE].status = "gone"
    r = generate(hub, repos, tmp_path, mask, "--no-fallback")
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert f"the repository {OFFICIAL!r} does not exist on the Hub (deleted or renamed" in r.stderr
    assert f"{WRONG} is not SD 2.1 base" in r.stderr and f"{GOOD!r} does not exist" in r.stderr
    fallback = generate(hub, repos, tmp_path, mask)
    assert fallback.returncode == 0 and (tmp_path / "out/town-seed1.png").is_file()
    assert f"{WRONG} is not SD 2.1 base" in fallback.stderr and "procedural renderer" in fallback.stderr


@pytest.mark.slow
def test_a_named_repository_is_loaded_as_named_with_the_real_cause_when_it_fails(hub, repos, tmp_path, mask):
    gone = generate(hub, repos, tmp_path, mask, "--no-fallback", "--model", "someone/deleted-model")
    assert gone.returncode == 2 and "'someone/deleted-model' does not exist on the Hub" in gone.stderr
    gated = generate(hub, repos, tmp_path, mask, "--no-fallback", "--model", "someone/gated-base")
    assert gated.returncode == 2 and "gated or private" in gated.stderr and "`hf auth login`" in gated.stderr
    assert "HF_TOKEN" in gated.stderr


@pytest.mark.slow
def test_a_full_pipeline_on_the_hub_uses_its_own_controlnet(hub, repos, tmp_path, mask):
    r = generate(hub, repos, tmp_path, mask, "--no-fallback", "--model", "someone/full-pipeline")
    assert r.returncode == 0, r.stderr
    assert not hub.asked(CONTROLNET)


@pytest.mark.slow
def test_offline_without_the_weights_says_so_and_how_to_fix_it(hub, repos, tmp_path, mask):
    r = generate(hub, repos, tmp_path, mask, "--no-fallback", HF_HUB_OFFLINE="1")
    assert r.returncode == 2 and "HF_HUB_OFFLINE is set" in r.stderr and "`seg2sat download`" in r.stderr
    assert not hub.seen


@pytest.mark.slow
def test_download_then_offline_generate(hub, repos, tmp_path, mask):
    r = seg2sat(hub, repos, tmp_path, "download")
    assert r.returncode == 0, r.stderr
    assert f"base model: {GOOD} (SHA256 verified)" in r.stdout and f"ControlNet: {CONTROLNET} (SHA256 verified)" in r.stdout
    hub.seen.clear()
    offline = generate(hub, repos, tmp_path, mask, "--no-fallback", HF_HUB_OFFLINE="1")
    assert offline.returncode == 0, offline.stderr
    assert not hub.seen
    doctor = seg2sat(hub, repos, tmp_path, "doctor", "--strict", "--verify", HF_HUB_OFFLINE="1")
    assert doctor.returncode == 0, doctor.stdout
    assert f"base model: {GOOD} in the cache (SHA256 verified by the cache)" in doctor.stdout
    assert "SHA256 DIFFERS" not in doctor.stdout and "verdict: the real model will run here." in doctor.stdout


@pytest.mark.slow
def test_a_killed_download_keeps_what_it_finished_and_uses_nothing_half_written(hub, repos, tmp_path, mask):
    """huggingface_hub 2.x writes each file under a process-unique temporary name and renames it when whole."""
    import time

    unet, text = "unet/diffusion_pytorch_model.safetensors", "text_encoder/model.safetensors"
    hub.stall[unet] = (repos["base"] / unet).stat().st_size // 2
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "SEG2SAT_"))}
    environ.update(HF_ENDPOINT=hub.url, HF_HOME=str(tmp_path / "hf"), SEG2SAT_WEIGHT_SOURCES=str(repos["table"]))
    run = subprocess.Popen([sys.executable, "-m", "seg2sat", "download"], env=environ, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    blobs = tmp_path / "hf/hub" / f"models--{GOOD.replace('/', '--')}" / "blobs"
    finished = blobs / sha256(repos["base"] / text)
    deadline = time.monotonic() + 120
    while not (finished.is_file() and any(blobs.glob("*.incomplete"))) and time.monotonic() < deadline:
        time.sleep(0.2)
    run.kill()
    run.wait()
    assert finished.is_file() and not (blobs / sha256(repos["base"] / unet)).exists()
    used = generate(hub, repos, tmp_path, mask, "--no-fallback", HF_HUB_OFFLINE="1")
    assert used.returncode == 2 and "HF_HUB_OFFLINE is set" in used.stderr  # the half UNet is never loaded
    del hub.stall[unet]
    hub.seen.clear()
    again = seg2sat(hub, repos, tmp_path, "download")
    assert again.returncode == 0, again.stderr
    assert not [path for path in hub.downloads(GOOD) if path.endswith(text)], "a finished file was fetched again"
    assert [path for path in hub.downloads(GOOD) if path.endswith(unet)]


@pytest.mark.slow
def test_download_into_a_folder_for_a_machine_without_network(hub, repos, tmp_path, mask):
    out = tmp_path / "weights"
    r = seg2sat(hub, repos, tmp_path, "download", "--dir", out, "--controlnet-subfolder", "v2/checkpoint-16000/controlnet")
    assert r.returncode == 0, r.stderr
    assert (out / "controlnet/diffusion_pytorch_model.bin").is_file() and (out / "controlnet/config.json").is_file()
    assert all((out / "base" / f).is_file() for f in WEIGHT_FILES)
    assert f"--model {out / 'base'} --controlnet {out / 'controlnet'}" in r.stdout
    hub.seen.clear()
    shutil.rmtree(tmp_path / "hf")  # the other machine has no cache
    used = generate(hub, repos, tmp_path, mask, "--no-fallback", "--model", out / "base", "--controlnet",
                    out / "controlnet", HF_HUB_OFFLINE="1")
    assert used.returncode == 0, used.stderr
    assert not hub.seen


@pytest.mark.slow
def test_controlnet_checkpoints_by_subfolder(hub, repos, tmp_path, mask):
    import numpy as np
    from PIL import Image

    root = generate(hub, repos, tmp_path, mask, "--no-fallback")
    first = np.asarray(Image.open(tmp_path / "out/town-seed1.png"))
    sub = generate(hub, repos, tmp_path, mask, "--no-fallback", "--controlnet-subfolder", "v2/checkpoint-14000/controlnet")
    assert root.returncode == sub.returncode == 0, sub.stderr
    wanted = "v2/checkpoint-14000/controlnet/diffusion_pytorch_model.safetensors"
    assert any(path.endswith(wanted) for path in hub.downloads(CONTROLNET))
    assert not np.array_equal(first, np.asarray(Image.open(tmp_path / "out/town-seed1.png")))
    missing = generate(hub, repos, tmp_path, mask, "--no-fallback", "--controlnet-subfolder", "v9/nothing")
    assert missing.returncode == 2 and "holds no ControlNet in v9/nothing" in missing.stderr
    assert "v2/checkpoint-14000/controlnet" in missing.stderr  # the checkpoints it does hold


@pytest.mark.slow
def test_doctor_explains_a_machine_without_the_model(hub, repos, tmp_path):
    hub.repos[GOOD].status = hub.repos[SPARE].status = "gone"
    r = seg2sat(hub, repos, tmp_path, "doctor")
    assert r.returncode == 0 and len(r.stdout.splitlines()) <= 12, r.stdout
    assert f"Hub: {hub.url} answers" in r.stdout and "base model: MISSING" in r.stdout
    assert f"{WRONG} is not SD 2.1 base" in r.stdout and "verdict: the real model will NOT run here" in r.stdout
    assert seg2sat(hub, repos, tmp_path, "doctor", "--strict").returncode == 1
    hub.repos[GOOD].status = "ok"
    ready = seg2sat(hub, repos, tmp_path, "doctor", "--strict")
    assert ready.returncode == 0 and f"would download {GOOD} (its Hub metadata matches)" in ready.stdout
    assert not hub.downloads(GOOD)  # doctor reads, never downloads


def test_a_full_disk_is_named_and_nothing_half_written_is_used(monkeypatch):
    import huggingface_hub

    from seg2sat import weights

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", full)
    with pytest.raises(weights.WeightsNotFoundError, match="the disk filled up while downloading 'org/name'.*HF_HOME"):
        weights._download("org/name", None, progress=False)


def test_no_text_recommends_a_command_that_no_longer_exists():
    root = Path(__file__).resolve().parents[1]
    texts = [p for ext in ("*.py", "*.md", "*.sh", "*.html", "*.js") for p in root.rglob(ext)
             if not {".git", "tests"} & set(p.relative_to(root).parts)]
    assert not [str(p) for p in texts if "huggingface-cli" in p.read_text(encoding="utf-8", errors="ignore")]
    assert not [str(p) for p in texts if f"default {OFFICIAL}" in p.read_text(encoding="utf-8", errors="ignore")]


@pytest.mark.slow
def test_servers_and_training_carry_the_same_cause(hub, repos, tmp_path, monkeypatch):
    """serve, the endpoint and the UI load through the engine: the fallback note is the CLI's sentence."""
    from seg2sat.engine import Engine
    from seg2sat.settings import Settings

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    engine = Engine(Settings(fallback=True)).load()
    assert engine.pipeline is None and "HF_HUB_OFFLINE is set" in engine.note and "`seg2sat download`" in engine.note
    from test_training import _write_dataset

    data = _write_dataset(tmp_path / "pairs", 2)
    train = seg2sat(hub, repos, tmp_path, "train", "--train_data_dir", data, "--output_dir", tmp_path / "cn",
                    "--max_train_steps", "1", "--resolution", "64", HF_HUB_OFFLINE="1")
    assert train.returncode == 2 and "HF_HUB_OFFLINE is set" in train.stderr and "Traceback" not in train.stderr

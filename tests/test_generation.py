import numpy as np
import pytest
import torch
from PIL import Image

from seg2sat import generate, inpaint, outpaint
from seg2sat.generation import grow
from seg2sat.pipelines import WeightsNotFoundError, inpaint_pipeline, is_full_pipeline, load_pipeline, pick_dtype


def test_tiny_pipeline_is_small_and_loads_through_the_user_loader(tiny_dir, tiny_pipe):
    size = sum(f.stat().st_size for f in tiny_dir.rglob("*") if f.is_file())
    assert size < 20 * 2**20
    assert is_full_pipeline(tiny_dir)
    assert type(tiny_pipe.scheduler).__name__ == "UniPCMultistepScheduler"
    assert load_pipeline(tiny_dir) is tiny_pipe  # cached: loaded once per process
    assert pick_dtype("cpu") == torch.float32


def test_inpainting_shares_the_loaded_weights(tiny_pipe):
    inp = inpaint_pipeline(tiny_pipe)
    assert inp.unet is tiny_pipe.unet and inp.controlnet is tiny_pipe.controlnet and inp.vae is tiny_pipe.vae


def test_generate_size_seeds_and_determinism(tiny_pipe, town_ids):
    first = generate(town_ids, "Aerial view of Paris", seed=7, num_images=2, steps=2, pipeline=tiny_pipe)
    assert first.seeds == [7, 8]
    assert [im.size for im in first.images] == [(128, 64)] * 2
    again = generate(town_ids, "Aerial view of Paris", seed=8, steps=2, pipeline=tiny_pipe)
    assert np.array_equal(np.asarray(first.images[1]), np.asarray(again.images[0]))
    assert not np.array_equal(np.asarray(first.images[0]), np.asarray(first.images[1]))


def test_generate_keeps_the_mask_size_when_it_is_not_a_multiple_of_64(tiny_pipe, town_ids):
    ids = town_ids[:50, :100]
    result = generate(ids, "Aerial view", seed=1, steps=1, pipeline=tiny_pipe)
    assert result.images[0].size == (100, 50)


def test_random_seed_is_reported_and_reproduces(tiny_pipe, town_ids):
    result = generate(town_ids, "Aerial view", steps=2, pipeline=tiny_pipe)
    again = generate(town_ids, "Aerial view", seed=result.seeds[0], steps=2, pipeline=tiny_pipe)
    assert np.array_equal(np.asarray(result.images[0]), np.asarray(again.images[0]))


@pytest.mark.parametrize(
    "kwargs, field",
    [({"steps": 0}, "steps"), ({"guidance_scale": "high"}, "guidance_scale"), ({"num_images": 50}, "num_images"),
     ({"controlnet_scale": 3}, "controlnet_scale"), ({"seed": -1}, "seed"), ({"style": "cubism"}, "style")],
)
def test_bad_arguments_fail_before_model_work(town_ids, kwargs, field):
    class Exploding:
        def __call__(self, *a, **k):
            raise AssertionError("the model must not run")

    with pytest.raises(ValueError, match=field):
        generate(town_ids, "Aerial view", pipeline=Exploding(), **kwargs)


def test_inpaint_changes_only_the_region(tiny_pipe, town_ids):
    source = generate(town_ids, "Aerial view", seed=1, steps=2, pipeline=tiny_pipe).images[0]
    region = np.zeros(town_ids.shape, bool)
    region[10:40, 20:70] = True
    new_ids = town_ids.copy()
    new_ids[region] = 5  # the user also redraws the map under the region
    result = inpaint(source, new_ids, region, "Aerial view", seed=2, steps=2, pipeline=tiny_pipe)
    before, after = np.asarray(source), np.asarray(result.images[0])
    assert after.shape == before.shape
    assert np.array_equal(after[~region], before[~region])
    assert (after[region] != before[region]).any()


def test_inpaint_errors(tiny_pipe, town_ids):
    source = Image.new("RGB", (128, 64))
    with pytest.raises(ValueError, match="empty"):
        inpaint(source, town_ids, np.zeros(town_ids.shape, bool), "x", pipeline=tiny_pipe)
    with pytest.raises(ValueError, match="must match"):
        inpaint(Image.new("RGB", (64, 64)), town_ids, np.ones((64, 64), bool), "x", pipeline=tiny_pipe)


def test_outpaint_grows_the_image_and_keeps_the_original(tiny_pipe, town_ids):
    source = generate(town_ids, "Aerial view", seed=1, steps=2, pipeline=tiny_pipe).images[0]
    (w, h), (x, y) = grow("left", 64, source.size)
    grown = np.full((h, w), 10, np.uint8)
    grown[y:, x:] = town_ids
    result = outpaint(source, grown, (x, y), "Aerial view", seed=3, steps=2, pipeline=tiny_pipe)
    out = np.asarray(result.images[0])
    assert out.shape == (64, 192, 3)
    assert np.array_equal(out[:, 64:], np.asarray(source))
    with pytest.raises(ValueError, match="does not fit"):
        outpaint(source, grown, (100, 0), "x", pipeline=tiny_pipe)


def test_missing_weights_is_one_clear_sentence(tmp_path, monkeypatch, town_ids):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-cache"))
    with pytest.raises(WeightsNotFoundError) as info:
        load_pipeline("stabilityai/stable-diffusion-2-1-base")
    message = str(info.value)  # the cause (offline, nothing cached) and the fix that works, in one line
    assert "HF_HUB_OFFLINE is set" in message and "`seg2sat download`" in message and "\n" not in message
    assert "huggingface-cli" not in message
    with pytest.raises(WeightsNotFoundError, match="does not exist"):
        load_pipeline(tmp_path / "nowhere")


def test_a_built_request_runs_with_run_and_generate_takes_masks(town_ids):
    from seg2sat.generation import run
    from seg2sat.request import Request

    req = Request.build("generate", mask=town_ids, prompt="Aerial view", seed=4, backend="procedural")
    by_mask = generate(town_ids, "Aerial view", seed=4, backend="procedural").images[0]
    assert np.array_equal(np.asarray(run(req).images[0]), np.asarray(by_mask))
    with pytest.warns(DeprecationWarning, match=r"run\(request"):
        old = generate(req).images[0]  # the old overload still works, and says where it went
    assert np.array_equal(np.asarray(old), np.asarray(by_mask))

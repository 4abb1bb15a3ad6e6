"""Speed options on the tiny pipeline (CPU): samplers, a fused LoRA, torch.compile, low memory, the pipeline cache."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
import torch

from seg2sat import speed
from seg2sat.generation import run
from seg2sat.options import spell
from seg2sat.pipelines import WeightsNotFoundError, inpaint_pipeline, load_pipeline
from seg2sat.request import SCHEDULERS, Request, RequestError


@pytest.fixture
def pipe(tiny_pipe):
    """The shared tiny pipeline, put back on the default sampler afterwards (other tests call it directly)."""
    yield tiny_pipe
    speed.use_scheduler(tiny_pipe, SCHEDULERS[0])


def _image(pipe, ids, seed=3, steps=2, **fields) -> np.ndarray:
    req = Request.build(mask=ids, prompt="Aerial view of a town", seed=seed, steps=steps, **fields)
    return np.asarray(run(req, pipe).images[0]).astype(np.int16)


def _latent(pipe, ids, seed=3, steps=2, guidance_scale=7.5) -> torch.Tensor:
    """The pipeline's raw output latent: finer than 8-bit images for comparing two pipelines."""
    from seg2sat import masks

    control = masks.to_image(ids)
    out = pipe(prompt="Aerial view of a town", image=control, width=control.width, height=control.height,
               num_inference_steps=steps, guidance_scale=guidance_scale,
               generator=torch.Generator("cpu").manual_seed(seed), output_type="latent")
    return out.images


# --------------------------------------------------------------------------- samplers


def test_every_scheduler_runs_and_the_same_seed_gives_the_same_image(pipe, town_ids):
    images = {}
    for name in SCHEDULERS:
        first = _image(pipe, town_ids, scheduler=name, steps=3)
        assert isinstance(pipe.scheduler, speed.SCHEDULER_CLASSES[name])
        assert np.array_equal(first, _image(pipe, town_ids, scheduler=name, steps=3)), name
        images[name] = first
    names = list(images)
    for n, a in enumerate(names):
        for b in names[n + 1:]:
            assert not np.array_equal(images[a], images[b]), (a, b)


def test_schedulers_are_made_once_per_pipeline_and_follow_the_base_config(pipe):
    ddim = speed.use_scheduler(pipe, "ddim")
    assert speed.use_scheduler(pipe, "unipc") is not ddim
    assert speed.use_scheduler(pipe, "ddim") is ddim  # cached: a request only swaps a reference
    assert pipe.scheduler is ddim
    assert ddim.config.beta_schedule == "scaled_linear" and ddim.config.steps_offset == 1
    assert speed.use_scheduler(pipe, "dpm++").config.algorithm_type == "dpmsolver++"
    with pytest.raises(RequestError, match="scheduler: must be one of"):
        speed.use_scheduler(pipe, "plms")


def test_the_inpainting_pipeline_gets_the_requests_scheduler(pipe, town_ids):
    inp = inpaint_pipeline(pipe)
    image = np.full((64, 128, 3), 90, np.uint8)
    for name in ("euler-a", "tcd"):
        req = Request.build("inpaint", mask=town_ids, prompt="Aerial view", image=image, region=[0, 0, 32, 32],
                            seed=1, steps=2, scheduler=name)
        run(req, pipe)
        assert inp.scheduler is pipe.scheduler
        assert isinstance(inp.scheduler, speed.SCHEDULER_CLASSES[name])


def test_tcd_uses_gamma_0_3_whatever_eta_the_pipeline_passes(pipe, town_ids):
    tcd = speed.use_scheduler(pipe, "tcd")
    assert "eta" in pipe.prepare_extra_step_kwargs(None, 0.0)  # the pipeline passes eta=0.0 by default...
    default = _latent(pipe, town_ids, steps=4, guidance_scale=1.0)
    assert torch.equal(default, _latent(pipe, town_ids, steps=4, guidance_scale=1.0))  # noise from the seeded generator
    try:
        tcd.gamma = 0.0  # ...which TCD would read as gamma = 0 (deterministic): a different sampler
        assert not torch.allclose(default, _latent(pipe, town_ids, steps=4, guidance_scale=1.0))
        tcd.gamma = None  # the caller's eta (0.0 here) gives the same as gamma 0
        zero = _latent(pipe, town_ids, steps=4, guidance_scale=1.0)
        tcd.gamma = 0.0
        assert torch.equal(zero, _latent(pipe, town_ids, steps=4, guidance_scale=1.0))
    finally:
        tcd.gamma = speed.TCD_GAMMA


def test_few_step_samplers_refuse_more_steps_than_their_schedule(pipe, town_ids):
    req = Request.build(mask=town_ids, prompt="x", seed=1, steps=60, scheduler="lcm")
    with pytest.raises(RequestError, match="steps: the lcm sampler runs at most 50 steps"):
        run(req, pipe)


# --------------------------------------------------------------------------- LoRA


@pytest.fixture(scope="module")
def lora_dir(tiny_dir, tmp_path_factory):
    """A LoRA for the tiny UNet, saved the way diffusers' training scripts save one (peft -> diffusers keys)."""
    from diffusers import StableDiffusionControlNetPipeline, UNet2DConditionModel
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig, get_peft_model_state_dict

    unet = UNet2DConditionModel.from_pretrained(tiny_dir / "unet")
    unet.add_adapter(LoraConfig(r=4, lora_alpha=4, init_lora_weights="gaussian",
                                target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in unet.named_parameters():
            if "lora_B" in name:  # zero at init (the LoRA would change nothing): make it matter
                param.copy_(torch.randn(param.shape, generator=generator) * 0.5)
    folder = tmp_path_factory.mktemp("lora")
    state = convert_state_dict_to_diffusers(get_peft_model_state_dict(unet))
    StableDiffusionControlNetPipeline.save_lora_weights(folder, unet_lora_layers=state, safe_serialization=True)
    assert (folder / "pytorch_lora_weights.safetensors").is_file()
    return folder


def test_a_lora_is_fused_and_changes_the_output(tiny_dir, pipe, lora_dir, town_ids):
    plain = _latent(pipe, town_ids)
    lora = load_pipeline(tiny_dir, lora=lora_dir)
    assert lora is not pipe and lora is load_pipeline(tiny_dir, lora=str(lora_dir))
    assert not any("lora" in name for name, _ in lora.unet.named_modules())  # fused, the peft layers are gone
    assert not torch.allclose(plain, _latent(lora, town_ids), atol=1e-3)
    assert not np.array_equal(_image(pipe, town_ids), _image(lora, town_ids))
    assert _image(lora, town_ids).shape == (64, 128, 3)


def test_lora_scale_0_gives_the_plain_output(tiny_dir, pipe, lora_dir, town_ids):
    off = load_pipeline(tiny_dir, lora=lora_dir, lora_scale=0.0)
    assert off is not load_pipeline(tiny_dir, lora=lora_dir)
    torch.testing.assert_close(_latent(off, town_ids), _latent(pipe, town_ids), atol=1e-5, rtol=1e-5)


def test_lora_errors_say_what_to_do(tiny_dir, tmp_path, monkeypatch):
    with pytest.raises(WeightsNotFoundError, match=r"the folder '/no/such/lora' does not exist; set `lora` to"):
        load_pipeline(tiny_dir, lora="/no/such/lora")
    (tmp_path / "empty").mkdir()
    with pytest.raises(WeightsNotFoundError, match="holds no LoRA weights"):
        load_pipeline(tiny_dir, lora=tmp_path / "empty")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsNotFoundError, match=r"cannot be downloaded \(HF_HUB_OFFLINE is set\); run `seg2sat download`"):
        load_pipeline(tiny_dir, lora="nobody-here/no-such-lora")


# --------------------------------------------------------------------------- compile, low memory, the cache


@pytest.mark.parametrize("backend", [
    pytest.param("aot_eager", id="aot_eager"),
    pytest.param("inductor", id="inductor", marks=pytest.mark.skipif(
        not os.environ.get("SEG2SAT_TEST_INDUCTOR"), reason="inductor compiles for minutes on a 2-core CPU; "
                                                            "SEG2SAT_TEST_INDUCTOR=1 runs it")),
])
@pytest.mark.slow
def test_compiled_equals_eager(tiny_dir, pipe, town_ids, backend, monkeypatch):
    monkeypatch.setattr(speed, "COMPILE_BACKEND", backend)
    from seg2sat import pipelines

    fresh = pipelines.PipelineCache()  # a fresh compiled pipeline per backend
    compiled = load_pipeline(tiny_dir, compile=True, cache=fresh)
    assert compiled is not pipe and compiled is load_pipeline(tiny_dir, compile=True, cache=fresh)
    assert compiled.unet.attn_processors and all(
        type(p).__name__ == "FusedAttnProcessor2_0" for p in compiled.unet.attn_processors.values())
    assert compiled.unet._compiled_call_impl is not None and compiled.controlnet._compiled_call_impl is not None
    square = town_ids[:, :64]  # the warm-up's shape: one compilation per model
    start = time.perf_counter()
    speed.warm_up(compiled, size=64)
    print(f"{backend}: warm-up (compilation) {time.perf_counter() - start:.1f} s")
    torch.testing.assert_close(_latent(compiled, square, steps=2), _latent(pipe, square, steps=2), atol=1e-3, rtol=1e-3)
    assert np.abs(_image(compiled, square) - _image(pipe, square)).max() <= 1
    cached = {"cache_interval": 3, "steps": 4}  # the step cache's wrappers inside the compiled models
    assert np.abs(_image(compiled, square, **cached) - _image(pipe, square, **cached)).max() <= 1


@pytest.mark.slow  # compiles every variant from scratch: ~40 s on 2 cores
def test_the_warm_up_compiles_plain_and_cached_steps(tiny_dir, town_ids, monkeypatch):
    """After warm_up, a request at the warm-up's size compiles nothing more, with or without the step cache."""
    from seg2sat import masks, pipelines
    from seg2sat.stepcache import step_cache

    monkeypatch.setattr(speed, "COMPILE_BACKEND", "aot_eager")
    compiled = load_pipeline(tiny_dir, compile=True, cache=pipelines.PipelineCache())
    speed.warm_up(compiled, size=64)
    graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    control = masks.to_image(town_ids[:, :64])
    for interval in (1, 3):
        with step_cache(compiled, interval) as cache:
            compiled(prompt="Aerial view of a town", image=control, width=64, height=64, num_inference_steps=4,
                     generator=torch.Generator("cpu").manual_seed(1), callback_on_step_end=cache.callback)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == graphs


def test_low_memory_on_cpu_runs_and_says_offload_does_nothing(tiny_dir, pipe, town_ids):
    small = load_pipeline(tiny_dir, low_memory=True)
    assert small is not pipe and small is load_pipeline(tiny_dir, low_memory=True)
    if torch.cuda.is_available():  # a GPU machine: the tiny pipeline is offloaded for real
        assert speed.notes(small) and "offload on" in speed.notes(small)[0]
    else:
        assert speed.notes(small) == ["`low_memory`: no GPU here, model offload does nothing; VAE slicing/tiling on"]
    assert speed.notes(pipe) == []
    assert small.vae.use_slicing and small.vae.use_tiling
    # VAE tiling starts above the VAE's sample_size (64 px for the tiny VAE, 768 px for SD 2.1 base's, which
    # Seg2Sat never decodes in one piece: its own tiler decodes 512 px tiles); below that nothing changes
    square = town_ids[:, :64]
    assert np.array_equal(_image(small, square), _image(pipe, square))


def test_the_cache_tells_the_options_apart(tiny_dir):
    pipe = load_pipeline(tiny_dir)  # not the session's tiny_pipe: another test may have cleared the cache since
    assert load_pipeline(tiny_dir) is pipe
    assert load_pipeline(tiny_dir, lora=None, lora_scale=0.5, compile=False, low_memory=False) is pipe  # no LoRA: scale moot
    assert load_pipeline(tiny_dir, low_memory=True) is not pipe


# --------------------------------------------------------------------------- precision


def test_bfloat16_gives_the_same_picture_in_bfloat16_weights(tiny_dir, pipe, town_ids):

    fast, plain_pipe = load_pipeline(tiny_dir, dtype="bfloat16"), load_pipeline(tiny_dir)  # (another test may have
    assert fast is not plain_pipe and fast is load_pipeline(tiny_dir, dtype=torch.bfloat16)  # cleared the cache since)
    assert load_pipeline(tiny_dir, dtype="auto") is plain_pipe and plain_pipe.unet.dtype == torch.float32  # auto on a CPU
    assert {fast.unet.dtype, fast.controlnet.dtype, fast.vae.dtype, fast.text_encoder.dtype} == {torch.bfloat16}
    layout = fast.vae.decoder.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    assert layout == (torch.cuda.is_available() is False and speed.cpu_computes_bf16())  # oneDNN's fast bf16 path
    assert not pipe.vae.decoder.conv_in.weight.is_contiguous(memory_format=torch.channels_last)  # float32: slower so
    plain, other_seed, half = _image(pipe, town_ids), _image(pipe, town_ids, seed=4), _image(fast, town_ids)
    assert np.array_equal(half, _image(fast, town_ids))  # still deterministic
    assert np.abs(half - plain).mean() < 0.25 * np.abs(other_seed - plain).mean()
    cached = _image(fast, town_ids, cache_interval=2, steps=3)  # the step cache and bf16 together
    assert cached.shape == plain.shape


def test_precisions_a_cpu_computes_slowly_are_noted(tiny_dir, monkeypatch):
    from seg2sat import pipelines

    if torch.cuda.is_available():
        pytest.skip("the notes are about CPUs")
    monkeypatch.setattr(speed, "cpu_computes_bf16", lambda: False)
    own = pipelines.PipelineCache()  # notes are left at load; the other tests' pipelines stay cached
    emulated = load_pipeline(tiny_dir, dtype="bfloat16", cache=own)
    assert speed.notes(emulated) == ["`dtype` bfloat16: this CPU has no bfloat16 arithmetic (AMX or AVX-512 BF16), "
                                     "so it is emulated and slower than float32"]
    assert "float16" in speed.notes(load_pipeline(tiny_dir, dtype="float16", cache=own))[0]
    monkeypatch.setattr(speed, "cpu_computes_bf16", lambda: True)
    assert speed.notes(load_pipeline(tiny_dir, dtype="bfloat16", cache=pipelines.PipelineCache())) == []


def test_a_precision_name_is_checked_where_it_is_given(monkeypatch):
    from seg2sat.settings import Settings

    assert Settings.from_env({"SEG2SAT_DTYPE": "bfloat16"}).load_options()["dtype"] == "bfloat16"
    with pytest.raises(ValueError, match="^SEG2SAT_DTYPE must be one of.*bfloat16"):  # the variable that said it
        Settings.from_env({"SEG2SAT_DTYPE": "bf16"})
    with pytest.raises(ValueError, match="`dtype` must be one of") as refused:  # given: each front end spells it
        Settings.from_env({"SEG2SAT_DTYPE": "bf16"}, dtype="bf16")
    assert spell(str(refused.value), "cli").startswith("--dtype must be one of auto, float32, bfloat16")
    with pytest.raises(ValueError, match="`dtype` must be one of"):
        load_pipeline("unused", dtype="double")

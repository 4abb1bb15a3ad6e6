"""The Inference Endpoints handler on the tiny pipeline: protocol, legacy payload, every bad input."""

from __future__ import annotations

import base64
import importlib.util
import io
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT
from PIL import Image

from seg2sat import masks
from seg2sat.serving import RequestError, Service, parse_request
from seg2sat.settings import Settings


def b64png(image: Image.Image | np.ndarray) -> str:
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def decode(text: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(text)))


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(f"endpoint_{name}", ROOT / "endpoint" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def handler(tiny_dir):
    return load_script("handler").EndpointHandler(path=str(tiny_dir))


@pytest.fixture
def mask_b64(town_ids):
    return b64png(masks.to_image(town_ids))


def payload(mask_b64, **params):
    return {"inputs": "Aerial view of Lyon, France", "parameters": {"image": mask_b64, "steps": 1, **params}}


def test_generate_answers_images_with_their_seeds(handler, mask_b64):
    out = handler(payload(mask_b64, seed=5, num_images=2))
    assert out["seeds"] == [5, 6]
    images = [decode(s) for s in out["images"]]
    assert [im.size for im in images] == [(128, 64), (128, 64)]
    assert np.asarray(images[0]).tolist() != np.asarray(images[1]).tolist()
    assert out["timing"]["generate_s"] > 0
    again = handler(payload(mask_b64, seed=6))
    assert again["images"][0] == out["images"][1], "a seed must give the same image again"


def test_no_seed_still_works_and_reports_the_seed_used(handler, mask_b64):
    out = handler(payload(mask_b64))
    (seed,) = out["seeds"]
    assert handler(payload(mask_b64, seed=seed))["images"] == out["images"]


def test_data_url_prefix_style_and_negative_prompt(handler, mask_b64):
    out = handler(payload("data:image/png;base64," + mask_b64, seed=1, style="lego", negative_prompt="blurry"))
    assert "lego" in out["prompt"].lower()
    assert decode(out["images"][0]).size == (128, 64)


def test_width_height_resize_the_output(handler, mask_b64):
    out = handler(payload(mask_b64, seed=1, width=64))
    assert (out["width"], out["height"]) == (64, 32)
    assert decode(out["images"][0]).size == (64, 32)


def test_off_palette_mask_is_snapped_and_reported(handler, town_ids):
    rgb = masks.to_rgb(town_ids).copy()
    rgb[:8] = rgb[:8] // 2 + 10  # a smudged stripe
    out = handler(payload(b64png(rgb), seed=1))
    assert out["off_palette"] == pytest.approx(8 / 64, abs=0.01)
    assert out["warnings"]


def test_inpaint_keeps_every_pixel_outside_the_region(handler, mask_b64):
    first = decode(handler(payload(mask_b64, seed=1))["images"][0]).convert("RGB")
    out = handler(payload(mask_b64, seed=2, mode="inpaint", init_image=b64png(first), region=[0, 0, 64, 32]))
    redone = np.asarray(decode(out["images"][0]).convert("RGB"))
    original = np.asarray(first)
    assert (redone[32:] == original[32:]).all() and (redone[:, 64:] == original[:, 64:]).all()
    assert (redone[:32, :64] != original[:32, :64]).any()

    region = np.zeros((64, 128), dtype=np.uint8)
    region[40:, 100:] = 255
    out = handler(payload(mask_b64, seed=2, mode="inpaint", init_image=b64png(first), region=b64png(region)))
    redone = np.asarray(decode(out["images"][0]).convert("RGB"))
    assert (redone[:40] == original[:40]).all()


def test_outpaint_grows_the_image_and_keeps_it(handler, town_ids):
    small = Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 64, 3), dtype=np.uint8))
    out = handler(payload(b64png(masks.to_image(town_ids)), seed=3, mode="outpaint", init_image=b64png(small), at=[64, 0]))
    grown = np.asarray(decode(out["images"][0]).convert("RGB"))
    assert grown.shape == (64, 128, 3)
    assert (grown[:32, 64:] == np.asarray(small)).all()
    centred = handler(payload(b64png(masks.to_image(town_ids)), seed=3, mode="outpaint", init_image=b64png(small)))
    assert (np.asarray(decode(centred["images"][0]).convert("RGB"))[16:48, 32:96] == np.asarray(small)).all()


def test_legacy_flat_payload_with_numbers_as_strings(handler, mask_b64):
    out = handler({"prompt": "Aerial view of Lyon", "image": mask_b64, "steps": "1", "seed": "7"})
    assert out["seeds"] == [7]
    assert out["image"] == out["images"][0]
    same = handler({"inputs": "Aerial view of Lyon", "parameters": {"image": mask_b64, "steps": 1, "seed": 7}})
    assert same["images"] == out["images"]


def test_legacy_payload_without_seed(handler, mask_b64):
    out = handler({"prompt": "Aerial view", "image": mask_b64, "steps": "1"})
    assert len(out["seeds"]) == 1


BIG_SEED = 9223372036854775000  # Drawing2Map's seed: above 2**53, where float() would round it


@pytest.mark.parametrize("body", [
    lambda m: {"inputs": "Aerial view", "prompt": "Aerial view", "image": m, "steps": "1", "seed": str(BIG_SEED)},
    lambda m: {"inputs": "Aerial view", "image": m, "steps": "1", "seed": str(BIG_SEED)},
    lambda m: {"inputs": "Aerial view", "parameters": {"image": m, "steps": 1, "seed": BIG_SEED}},
    lambda m: {"inputs": "Aerial view", "parameters": {"image": m, "num_inference_steps": 1, "seed": str(BIG_SEED)}},
    lambda m: {"inputs": m, "parameters": {"prompt": "Aerial view", "num_inference_steps": 1, "seed": BIG_SEED}},
], ids=["drawing2map", "flat-inputs", "ours", "hf-text-to-image", "hf-image-to-image"])
def test_every_shape_uses_a_big_seed_exactly_and_gives_the_same_image(handler, mask_b64, body):
    out = handler(body(mask_b64))
    assert out["seeds"] == [BIG_SEED]
    reference = handler({"inputs": "Aerial view", "parameters": {"image": mask_b64, "steps": 1, "seed": BIG_SEED}})
    assert out["images"] == reference["images"], "same seed, same bytes, whatever the shape"


def test_seed_range_and_its_reduction_to_32_bits(handler, mask_b64):
    """generation takes seeds 0..2**63-1; torch's CPU generator seeds its Mersenne Twister from the low 32 bits."""
    top = handler(payload(mask_b64, seed=2**63 - 1))
    assert top["seeds"] == [2**63 - 1]
    low = handler(payload(mask_b64, seed=(2**63 - 1) % 2**32))
    assert low["images"] == top["images"] and low["seeds"] == [2**32 - 1]
    with pytest.raises(RequestError, match=r"^parameters.seed: must be at most 2\*\*63-1"):
        handler(payload(mask_b64, seed=2**63))
    with pytest.raises(RequestError, match=r"^seed: must be at most"):
        handler({"prompt": "x", "image": mask_b64, "seed": str(2**63)})


def test_hugging_face_names_are_aliases_of_ours(handler, mask_b64):
    ours = handler(payload(mask_b64, seed=3, width=64))
    for alias in ({"num_inference_steps": 1}, {"num_inference_steps": 1, "steps": 1},
                  {"target_size": {"width": 64, "height": 32}}, {"target_size": {"width": 64}, "width": 64},
                  {"controlnet_scale": 1.0}, {"controlnet_scale": 1.0, "controlnet_conditioning_scale": 1}):
        params = {"image": mask_b64, "seed": 3, "steps": 1, "width": 64, **alias}
        assert handler({"inputs": "Aerial view of Lyon, France", "parameters": params})["images"] == ours["images"], alias
    weaker = handler(payload(mask_b64, seed=3, width=64, controlnet_conditioning_scale=0.25))
    assert handler(payload(mask_b64, seed=3, width=64, controlnet_scale=0.25))["images"] == weaker["images"]


def test_image_to_image_shape_puts_the_mask_in_inputs(handler, mask_b64):
    ours = handler(payload(mask_b64, seed=2, negative_prompt="blurry", guidance_scale=5.0))
    hf = handler({"inputs": mask_b64, "parameters": {"prompt": "Aerial view of Lyon, France", "negative_prompt": "blurry",
                                                     "num_inference_steps": 1, "guidance_scale": 5.0, "seed": 2}})
    assert hf["images"] == ours["images"]
    raw = handler({"inputs": base64.b64decode(mask_b64), "parameters": {"prompt": "Aerial view of Lyon, France",
                                                                      "steps": 1, "seed": 2}})
    assert raw["images"][0] == handler(payload(mask_b64, seed=2))["images"][0], "raw bytes, as the toolkit may hand them"


def _corrupt_png(mask_b64: str) -> str:
    raw = base64.b64decode(mask_b64)
    return base64.b64encode(raw[: len(raw) // 2]).decode()


BAD = {
    # field named in the message: the request
    "inputs": lambda m: {"inputs": "", "parameters": {"image": m}},
    "inputs ": lambda m: {"inputs": 42, "parameters": {"image": m}},
    "prompt": lambda m: {"prompt": "   ", "image": m},
    "parameters": lambda m: {"inputs": "x", "parameters": [m]},
    "body": lambda m: ["inputs", m],
    "parameters.image": lambda m: {"inputs": "x", "parameters": {}},
    "parameters.image ": lambda m: {"inputs": "x", "parameters": {"image": ""}},
    "parameters.image  ": lambda m: {"inputs": "x", "parameters": {"image": "not base64 !!"}},
    "parameters.image   ": lambda m: {"inputs": "x", "parameters": {"image": base64.b64encode(b"hello world").decode()}},
    "parameters.image    ": lambda m: {"inputs": "x", "parameters": {"image": _corrupt_png(m)}},
    "parameters.image          ": lambda m: {"inputs": "x", "parameters": {
        "image": base64.b64encode(b"\x89PNG\r\n\x1a\n but no image follows").decode()}},
    "parameters.image     ": lambda m: {"inputs": "x", "parameters": {"image": b64png(np.zeros((2048, 2049), np.uint8))}},
    "parameters.image      ": lambda m: {"inputs": "x", "parameters": {"image": b64png(np.zeros((16, 64, 3), np.uint8))}},
    "parameters.image       ": lambda m: {"inputs": "x", "parameters": {"image": 12}},
    "parameters.steps": lambda m: payload(m, steps=0),
    "parameters.steps ": lambda m: payload(m, steps=151),
    "parameters.steps  ": lambda m: payload(m, steps="20"),
    "parameters.steps   ": lambda m: payload(m, steps=2.5),
    "parameters.steps    ": lambda m: payload(m, steps=float("inf")),
    "parameters.guidance_scale": lambda m: payload(m, guidance_scale=31),
    "parameters.guidance_scale ": lambda m: payload(m, guidance_scale=True),
    "parameters.controlnet_conditioning_scale": lambda m: payload(m, controlnet_conditioning_scale=-0.1),
    "parameters.num_images": lambda m: payload(m, num_images=0),
    "parameters.num_images ": lambda m: payload(m, num_images=9),
    "parameters.seed": lambda m: payload(m, seed=-1),
    "parameters.seed ": lambda m: payload(m, seed="abc"),
    "parameters.seed  ": lambda m: payload(m, seed=[1, 2], num_images=3),
    "parameters.style": lambda m: payload(m, style="cubism"),
    "parameters.style ": lambda m: payload(m, style=["lego"]),
    "parameters.negative_prompt": lambda m: payload(m, negative_prompt=5),
    "parameters.mode": lambda m: payload(m, mode="upscale"),
    "parameters.mode ": lambda m: payload(m, mode=1),
    "parameters.backend": lambda m: payload(m, backend="gan"),
    "parameters.width": lambda m: payload(m, width=8),
    "parameters.width ": lambda m: payload(m, width=4000, height=4000),
    "parameters.width  ": lambda m: payload(m, width=2.8e306),  # found by the fuzz test: its aspect-kept height overflowed
    "parameters.height     ": lambda m: payload(m, height=10**9),
    "parameters.height": lambda m: payload(m, height="big"),
    "parameters.height ": lambda m: payload(m, height=float("nan")),
    "parameters  ": lambda m: payload(m, stepz=3),
    "parameters.init_image": lambda m: payload(m, mode="inpaint", region=[0, 0, 8, 8]),
    "parameters.init_image ": lambda m: payload(m, mode="inpaint", init_image=b64png(np.zeros((64, 64, 3), np.uint8)),
                                                region=[0, 0, 8, 8]),
    "parameters.init_image  ": lambda m: payload(m, init_image=m),
    "parameters.region": lambda m: payload(m, mode="inpaint", init_image=m),
    "parameters.region ": lambda m: payload(m, mode="inpaint", init_image=m, region=[100, 0, 64, 64]),
    "parameters.region  ": lambda m: payload(m, mode="inpaint", init_image=m, region=[0, 0, 0, 10]),
    "parameters.region   ": lambda m: payload(m, mode="inpaint", init_image=m, region="[0, 0, 8, 8]"),
    "parameters.region    ": lambda m: payload(m, mode="inpaint", init_image=m,
                                               region=b64png(np.zeros((64, 128), np.uint8))),
    "parameters.region     ": lambda m: payload(m, mode="inpaint", init_image=m,
                                                region=b64png(np.full((32, 32), 255, np.uint8))),
    "parameters.at": lambda m: payload(m, mode="outpaint", init_image=b64png(np.zeros((32, 64, 3), np.uint8)), at=[100, 0]),
    "parameters.at ": lambda m: payload(m, mode="outpaint", init_image=b64png(np.zeros((32, 64, 3), np.uint8)), at="1,2"),
    "parameters.image        ": lambda m: payload(m, mode="outpaint", init_image=m),
    "body ": lambda m: {"inputs": "x", "parameters": {"image": m}, "extra": 1},
    # aliases, the image-to-image shape and the flat payload name the field as it was sent
    "parameters.num_inference_steps": lambda m: payload(m, num_inference_steps=0),
    "parameters.num_inference_steps ": lambda m: payload(m, num_inference_steps=2, steps=1),
    "parameters.num_inference_steps  ": lambda m: payload(m, num_inference_steps="2"),
    "parameters.controlnet_scale": lambda m: payload(m, controlnet_scale=2.5),
    "parameters.controlnet_scale ": lambda m: payload(m, controlnet_scale=0.5, controlnet_conditioning_scale=1.0),
    "parameters.target_size": lambda m: payload(m, target_size=[64, 64]),
    "parameters.target_size ": lambda m: payload(m, target_size={"width": 64, "depth": 3}),
    "parameters.target_size  ": lambda m: payload(m, target_size={"width": 96}, width=64),
    "parameters.target_size   ": lambda m: payload(m, target_size={"width": 8}),
    "parameters.target_size    ": lambda m: payload(m, target_size={"width": 64}, mode="inpaint", init_image=m),
    "parameters.prompt": lambda m: {"inputs": m, "parameters": {"prompt": ""}},
    "parameters.prompt ": lambda m: {"inputs": m, "parameters": {"steps": 1}},
    "parameters.image         ": lambda m: {"inputs": m, "parameters": {"prompt": "x", "image": m}},
    "inputs  ": lambda m: {"inputs": "not base64 !!", "parameters": {"prompt": "x"}},
    "parameters.seed   ": lambda m: payload(m, seed="12.5"),
    "parameters.seed    ": lambda m: payload(m, seed=2**63),
    "prompt ": lambda m: {"inputs": "Aerial view", "prompt": "Satellite view", "image": m},
    "steps": lambda m: {"prompt": "x", "image": m, "steps": "2.5"},
    "seed": lambda m: {"prompt": "x", "image": m, "seed": "9.2e18"},
    "guidance_scale": lambda m: {"prompt": "x", "image": m, "guidance_scale": "lots"},
}


@pytest.mark.parametrize("field", list(BAD), ids=[f"{k.strip()}-{i}" for i, k in enumerate(BAD)])
def test_bad_input_is_a_value_error_naming_the_field_and_the_handler_goes_on(handler, mask_b64, field):
    with pytest.raises(ValueError) as info:
        handler(BAD[field](mask_b64))
    assert info.value.args[0].startswith(field.strip() + ":") or field.strip() in str(info.value), str(info.value)
    assert isinstance(info.value, RequestError) and info.value.field == field.strip()
    assert " object at 0x" not in str(info.value) and "Traceback" not in str(info.value), "no Python internals"
    out = handler(payload(mask_b64, seed=1))
    assert len(out["images"]) == 1


def test_pixel_limit_is_configurable(mask_b64):
    request = payload(mask_b64)
    parse_request(request, Settings().limits)
    with pytest.raises(ValueError, match="parameters.image.*8,192"):
        parse_request(request, Settings(max_pixels=8192 - 1, min_side=32).limits)
    with pytest.raises(ValueError, match="parameters.image.*8,192"):
        Service(Settings(max_pixels=8192 - 1)).parse(request)
    assert Settings.from_env({"SEG2SAT_MAX_PIXELS": "4096", "SEG2SAT_MIN_SIDE": "8"}).max_pixels == 4096
    with pytest.raises(ValueError, match="SEG2SAT_MAX_PIXELS"):
        Settings.from_env({"SEG2SAT_MAX_PIXELS": "lots"})


def test_validation_happens_before_any_model_work(mask_b64):
    service = Service(Settings(model="/nonexistent/model/folder"))
    with pytest.raises(ValueError, match="parameters.steps"):
        service(payload(mask_b64, steps=0))
    assert not service.loaded


def test_controlnet_folder_repository_goes_on_the_configured_base(tiny_dir, tmp_path):
    from seg2sat.pipelines import is_controlnet_folder
    from seg2sat.serving import repository_models

    assert is_controlnet_folder(tiny_dir / "controlnet")
    assert not is_controlnet_folder(tiny_dir)
    assert not is_controlnet_folder(tmp_path)
    settings = Settings(model="base/model", controlnet="other/controlnet")
    assert repository_models(tiny_dir / "controlnet", settings) == ("base/model", str(tiny_dir / "controlnet"))
    assert repository_models(tiny_dir, settings) == (str(tiny_dir), "other/controlnet")
    assert repository_models(tmp_path, settings) == ("base/model", "other/controlnet")


@pytest.mark.slow
def test_built_repository_serves_with_its_own_copy_of_seg2sat(tiny_dir, tmp_path, mask_b64):
    """What Inference Endpoints does: import handler.py from the repository folder, build it on that folder, call it."""
    import json
    import os
    import subprocess
    import sys

    build = load_script("build_repository")
    repo = tmp_path / "repo"
    assert build.main([str(repo), "--weights", str(tiny_dir)]) == 0
    assert build.main([str(repo)]) == 2, "an existing repository is not overwritten"
    with pytest.raises(ValueError, match="neither a ControlNet"):
        build.build_repository(tmp_path / "other", weights=tmp_path)
    request = tmp_path / "request.json"
    request.write_text(json.dumps(payload(mask_b64, seed=4)))
    script = ("import json, sys, seg2sat; from handler import EndpointHandler; "
              "out = EndpointHandler(path='.')(json.load(open(sys.argv[1]))); "
              "print(json.dumps({'where': seg2sat.__file__, 'seeds': out['seeds'], 'n': len(out['images'])}))")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", script, str(request)], cwd=repo, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert answer["seeds"] == [4] and answer["n"] == 1
    assert Path(answer["where"]).resolve().is_relative_to(repo.resolve())


def test_handler_called_from_threads_runs_one_generation_at_a_time(tiny_dir, mask_b64, monkeypatch):
    from concurrent.futures import ThreadPoolExecutor

    from seg2sat import generation
    from seg2sat.pipelines import load_pipeline

    seen = {"active": 0, "most": 0}
    generate = generation.run

    def watched(*args, **kwargs):  # the generation itself, inside the engine's device queue
        seen["active"] += 1
        seen["most"] = max(seen["most"], seen["active"])
        try:
            return generate(*args, **kwargs)
        finally:
            seen["active"] -= 1

    monkeypatch.setattr(generation, "run", watched)
    service = Service(Settings(), pipeline=load_pipeline(tiny_dir))
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda s: service(payload(mask_b64, seed=s)), range(4)))
    assert [a["seeds"] for a in answers] == [[0], [1], [2], [3]]
    assert seen["most"] == 1


def test_the_fallback_note_in_the_endpoint_log_names_the_variable(tmp_path, monkeypatch, caplog):
    """The endpoint's operator sets SEG2SAT_* variables: the log says which, not the core's `field` wording."""
    monkeypatch.setenv("SEG2SAT_MODEL", str(tmp_path / "no-weights"))
    handler = load_script("handler").EndpointHandler()
    assert handler.service.note
    logged = [r.getMessage() for r in caplog.records if "procedural renderer" in r.getMessage()]
    assert logged and "SEG2SAT_MODEL" in logged[0] and "`" not in logged[0]

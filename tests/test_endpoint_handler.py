"""endpoint/handler.py as Hugging Face's Inference Endpoints toolkit runs it, without the toolkit.

The toolkit (huggingface-inference-toolkit 0.5.x) serializes the handler's return value by the
request's Accept header, which the handler never sees: orjson for JSON, ``isinstance(x, PIL.Image.Image)``
then ``x.save(buffer, format=…)`` for ``image/*``. Its image pins diffusers 0.33.1 (which reads
only ``torch_dtype=``) and transformers 4.51.3. endpoint/verify_toolkit.sh runs the real toolkit.
"""

from __future__ import annotations

import base64
import importlib.util
import io
import json
from pathlib import Path

import pytest
import torch
from conftest import ROOT
from PIL import Image

from seg2sat import masks, pipelines

# What the toolkit's image installs (its setup.py: install_requires, extras "diffusers" and "torch").
TOOLKIT_PINS = {"transformers": "4.51.3", "huggingface-hub": "0.30.2", "diffusers": "0.33.1",
                "accelerate": "1.6.0", "torch": "2.5.1", "peft": "0.15.1", "sentence-transformers": "4.0.2"}


def load_handler_module():
    spec = importlib.util.spec_from_file_location("endpoint_handler_under_test", ROOT / "endpoint" / "handler.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def handler_module():
    return load_handler_module()


@pytest.fixture(scope="module")
def handler(handler_module, tiny_dir):
    return handler_module.EndpointHandler(path=str(tiny_dir))


@pytest.fixture
def mask_b64(town_ids):
    buffer = io.BytesIO()
    masks.to_image(town_ids).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def toolkit_serialize(answer, accept: str) -> bytes:
    """What huggingface_inference_toolkit.serialization does with a handler's answer."""
    if accept == "application/json":
        try:
            import orjson
        except ImportError:
            return json.dumps(answer).encode()
        return orjson.dumps(answer, option=orjson.OPT_SERIALIZE_NUMPY)
    if not isinstance(answer, Image.Image):
        raise ValueError(f"Can only serialize PIL.Image.Image, got {type(answer)}")
    buffer = io.BytesIO()
    answer.save(buffer, format=accept.split("/")[-1].upper())
    return buffer.getvalue()


# --------------------------------------------------------------------------- dtype


@pytest.mark.parametrize("version, keyword", [("0.33.1", "torch_dtype"), ("0.39.0", "torch_dtype"),
                                              ("0.40.0", "dtype"), ("0.42.1", "dtype"), ("0.43.0.dev0", "dtype"),
                                              ("1.0.0", "dtype")])
def test_dtype_keyword_follows_the_diffusers_version(monkeypatch, version, keyword):
    import diffusers

    monkeypatch.setattr(diffusers, "__version__", version)
    assert pipelines.dtype_kwargs(torch.float16) == {keyword: torch.float16}


@pytest.mark.parametrize("version", ["0.33.1", None])
def test_half_precision_reaches_every_component(monkeypatch, tiny_dir, version):
    """The keyword for 0.33 (torch_dtype, still read by 0.42) and the installed one both load fp16."""
    import diffusers

    if version:
        monkeypatch.setattr(diffusers, "__version__", version)
    pipelines.clear_cache()
    try:
        pipe = pipelines.load_pipeline(tiny_dir, device="cpu", dtype=torch.float16)
        assert {name: getattr(pipe, name).dtype for name in ("unet", "controlnet", "vae", "text_encoder")} == dict.fromkeys(
            ("unet", "controlnet", "vae", "text_encoder"), torch.float16)
    finally:
        pipelines.clear_cache()


def test_handler_loads_the_gpu_dtype_that_pick_dtype_chooses(monkeypatch, handler_module, tiny_dir):
    """On a GPU pick_dtype says bf16/fp16; the handler's pipeline must come out in it (fp32 was the bug)."""
    monkeypatch.setattr(pipelines, "pick_dtype", lambda device: torch.bfloat16)
    pipelines.clear_cache()
    try:
        service = handler_module.EndpointHandler(path=str(tiny_dir)).service
        assert service.pipeline.unet.dtype == torch.bfloat16
        assert service.pipeline.controlnet.dtype == torch.bfloat16
    finally:
        pipelines.clear_cache()


# --------------------------------------------------------------------------- answers


def test_json_answer_is_the_plain_protocol_answer(handler, mask_b64):
    out = handler({"inputs": "Aerial view of Lyon", "parameters": {"image": mask_b64, "seed": 3, "steps": 1}})
    body = json.loads(toolkit_serialize(out, "application/json"))
    assert body == json.loads(json.dumps(dict(out)))
    assert body["seeds"] == [3] and len(body["images"]) == 1 and set(body) >= {"prompt", "timing", "width", "height"}


def test_accept_image_png_gets_the_png_itself(handler, mask_b64):
    out = handler({"inputs": "Aerial view of Lyon", "parameters": {"image": mask_b64, "seed": 3, "steps": 1}})
    png = toolkit_serialize(out, "image/png")
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert png == base64.b64decode(out["images"][0]), "the PNG is the JSON answer's image, not re-encoded"
    assert Image.open(io.BytesIO(png)).size == (128, 64)
    jpeg = toolkit_serialize(out, "image/jpeg")
    assert Image.open(io.BytesIO(jpeg)).format == "JPEG"
    assert out.image.size == (128, 64)


def test_drawing2map_payload_with_accept_png(handler, mask_b64):
    """Drawing2Map posts the flat body, numbers as text, with Accept: image/png."""
    prompt = "Aerial view of 31 Rue Molière, France"
    out = handler({"inputs": prompt, "prompt": prompt, "image": mask_b64, "steps": "1", "seed": "42"})
    assert Image.open(io.BytesIO(toolkit_serialize(out, "image/png"))).size == (128, 64)
    body = json.loads(toolkit_serialize(out, "application/json"))
    assert body["image"] == body["images"][0] and body["seeds"] == [42]


def test_several_images_refuse_an_image_answer_naming_num_images(handler, mask_b64):
    out = handler({"inputs": "x", "parameters": {"image": mask_b64, "seed": 1, "steps": 1, "num_images": 2}})
    assert len(json.loads(toolkit_serialize(out, "application/json"))["images"]) == 2
    with pytest.raises(ValueError, match="num_images"):
        toolkit_serialize(out, "image/png")


def test_save_to_a_path(handler, mask_b64, tmp_path):
    out = handler({"inputs": "x", "parameters": {"image": mask_b64, "seed": 1, "steps": 1}})
    out.save(tmp_path / "a.png")
    assert (tmp_path / "a.png").read_bytes() == base64.b64decode(out["images"][0])
    out.save(str(tmp_path / "a.jpg"))
    assert Image.open(tmp_path / "a.jpg").format == "JPEG"


def test_bad_request_raises_before_any_model_work(handler, mask_b64, monkeypatch):
    """The toolkit answers any exception from the handler with 400; this one must come before generating."""
    def no_model_work(req):
        raise AssertionError("the model ran for a bad request")

    monkeypatch.setattr(handler.service, "run", no_model_work)
    for bad in ({"inputs": "x", "parameters": {"image": mask_b64, "steps": 0}},
                {"inputs": "x", "prompt": "x", "image": mask_b64, "steps": "many"},
                {"inputs": "x", "parameters": {"image": "not base64!"}}):
        with pytest.raises(ValueError):
            handler(bad)


# --------------------------------------------------------------------------- what ships


def requirements() -> list:
    from packaging.requirements import Requirement

    lines = (ROOT / "endpoint" / "requirements.txt").read_text(encoding="utf-8").splitlines()
    return [Requirement(line.split("#")[0].strip()) for line in lines if line.split("#")[0].strip()]


def test_requirements_keep_the_toolkit_stack():
    """entrypoint.sh pip-installs requirements.txt into the toolkit's own environment: nothing may move its pins."""
    from packaging.utils import canonicalize_name

    reqs = requirements()
    assert reqs, "requirements.txt lists what a bare image needs"
    for req in reqs:
        name = canonicalize_name(req.name)
        assert req.url is None, f"{req}: a URL requirement (seg2sat @ git+…) pulls transformers>=5 and diffusers>=0.42"
        assert name != "torch", "never reinstall torch over the image's CUDA build"
        if name in TOOLKIT_PINS:
            assert req.specifier.contains(TOOLKIT_PINS[name], prereleases=True), \
                f"{req} would replace the toolkit's {name}=={TOOLKIT_PINS[name]}"
        else:
            assert {spec.operator for spec in req.specifier} <= {">="}, f"{req}: lower bounds only"
    names = {canonicalize_name(r.name) for r in reqs}
    for name in ("transformers", "diffusers", "huggingface-hub"):
        for req in reqs:
            if canonicalize_name(req.name) == name:
                assert req.specifier.contains(TOOLKIT_PINS[name])
    assert "diffusers" in names and "transformers" in names


def test_tiny_pipeline_is_readable_by_transformers_4(tiny_dir):
    """transformers 4.x's CLIPTokenizer needs vocab.json + merges.txt, and its CLIPTextModel the text_model.* keys."""
    from safetensors import safe_open
    from transformers import CLIPTokenizer

    folder = Path(tiny_dir) / "tokenizer"
    tokenizer = CLIPTokenizer.from_pretrained(folder)
    assert json.loads((folder / "vocab.json").read_text(encoding="utf-8")) == tokenizer.get_vocab()
    assert (folder / "merges.txt").read_text(encoding="utf-8").splitlines() == ["#version: 0.2"]
    with safe_open(Path(tiny_dir) / "text_encoder" / "model.safetensors", "pt") as weights:
        keys = list(weights.keys())
    assert keys and all(key.startswith("text_model.") for key in keys)

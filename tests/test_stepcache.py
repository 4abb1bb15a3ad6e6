"""Step caching (seg2sat.stepcache) on the tiny pipeline: exact when off, close when on, deep blocks really skipped."""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import pytest

from seg2sat import masks
from seg2sat.generation import Request, grow, run
from seg2sat.pipelines import inpaint_pipeline
from seg2sat.stepcache import StepCache, step_cache
from seg2sat.tiling import generate_tiled, windows

STEPS = 6


def _generate(pipe, ids, seed=0, interval=1, on_step=None, steps=STEPS) -> np.ndarray:
    req = Request.build("generate", mask=ids, prompt="Aerial view", seed=seed, steps=steps, cache_interval=interval)
    return np.asarray(run(req, pipe, on_step).images[0], np.float32)


@contextmanager
def _counting(pipe):
    """Real runs of inner parts of the layers that always run, of the skipped ones, and of the ControlNet.

    Inner parts, because a cached module's own hooks still fire (its ``__call__`` runs; its work does not).
    Always run: ``conv_in``, the first layer and the last (``first``, ``last``). Skipped on cached steps:
    the rest of the first block (``down0`` is its downsampler), the deep blocks, the rest of the last block
    (``up_last``) and the ControlNet.
    """
    unet = pipe.unet
    parts = {"conv_in": unet.conv_in, "first": unet.down_blocks[0].resnets[0].conv1,
             "last": unet.up_blocks[-1].resnets[-1].conv1, "down0": unet.down_blocks[0].downsamplers[0].conv,
             "mid": unet.mid_block.resnets[0], "down1": unet.down_blocks[1].resnets[0], "up0": unet.up_blocks[0].resnets[0],
             "up_last": unet.up_blocks[-1].resnets[0].conv1, "controlnet": pipe.controlnet.conv_in}
    counts = dict.fromkeys(parts, 0)
    hooks = [module.register_forward_hook(lambda *_, name=name: counts.__setitem__(name, counts[name] + 1))
             for name, module in parts.items()]
    try:
        yield counts
    finally:
        for hook in hooks:
            hook.remove()


def _runs(every: int, full: int) -> dict[str, int]:
    """What :func:`_counting` should count: the first and last layers run ``every`` time, the rest ``full`` times."""
    return {"conv_in": every, "first": every, "last": every, "down0": full, "mid": full, "down1": full, "up0": full,
            "up_last": full, "controlnet": full}


def _untouched(pipe) -> bool:
    """No module has an instance ``forward`` left over."""
    return not any("forward" in m.__dict__ for model in (pipe.unet, pipe.controlnet) for m in model.modules())


def test_interval_1_is_a_pure_pass_through(tiny_pipe, town_ids):
    plain = _generate(tiny_pipe, town_ids, seed=3)
    with step_cache(tiny_pipe, 1) as cache:
        assert not cache.active and _untouched(tiny_pipe)
    assert np.array_equal(_generate(tiny_pipe, town_ids, seed=3, interval=1), plain)


def test_interval_3_is_close_to_uncached_and_deterministic(tiny_pipe, town_ids):
    plain, other_seed = _generate(tiny_pipe, town_ids, seed=0), _generate(tiny_pipe, town_ids, seed=1)
    cached, again = _generate(tiny_pipe, town_ids, seed=0, interval=3), _generate(tiny_pipe, town_ids, seed=0, interval=3)
    assert np.array_equal(cached, again)
    error, seed_gap = np.abs(cached - plain).mean(), np.abs(other_seed - plain).mean()
    assert 0 < error < 0.1 * seed_gap, (error, seed_gap)
    assert _untouched(tiny_pipe)


def test_deep_blocks_and_the_controlnet_run_only_on_full_steps(tiny_pipe, town_ids):
    steps = []
    with _counting(tiny_pipe) as counts:
        _generate(tiny_pipe, town_ids, interval=3, on_step=lambda k, n: steps.append((k, n)))
    assert counts == _runs(every=6, full=2)
    assert steps == [(k, STEPS) for k in range(1, STEPS + 1)]  # progress still reported every step
    with _counting(tiny_pipe) as counts:
        _generate(tiny_pipe, town_ids, interval=1)
    assert counts == _runs(every=6, full=6)


def test_the_step_cache_names_what_it_skips_and_counts_steps(tiny_pipe, town_ids):
    with step_cache(tiny_pipe, 4) as cache:
        assert isinstance(cache, StepCache) and cache.active
        assert set(cache.modules()) == {"down_blocks.0.downsamplers.0", "down_blocks.1", "mid_block", "up_blocks.0",
                                        "up_blocks.1.resnets.0", "up_blocks.1.attentions.0", "controlnet"}
        control = masks.to_image(town_ids)
        with _counting(tiny_pipe) as counts:
            generate_tiled(tiny_pipe, control, "Aerial view", seed=0, steps=5, cache=cache)
        assert cache.step == 5
        assert counts == _runs(every=5, full=2)  # steps 0 and 4
    assert _untouched(tiny_pipe)


@pytest.mark.slow
def test_tiled_generation_caches_each_tile_separately(tiny_pipe, town_ids):
    control = masks.to_image(np.tile(town_ids, (2, 1)))
    tiles = len(windows(16, 16, 8, 2))
    assert tiles > 1

    def tiled(interval, seed=1):
        with step_cache(tiny_pipe, interval) as cache:
            image = generate_tiled(tiny_pipe, control, "Aerial view", seed=seed, steps=STEPS, tile=8,
                                   cache=cache if cache.active else None)
        return np.asarray(image, np.float32)

    plain, other_seed = tiled(1), tiled(1, seed=2)
    with _counting(tiny_pipe) as counts:
        cached = tiled(3)
    assert counts == _runs(every=STEPS * tiles, full=2 * tiles)
    assert np.array_equal(cached, tiled(3))
    assert 0 < np.abs(cached - plain).mean() < 0.1 * np.abs(other_seed - plain).mean()


def test_a_mask_larger_than_the_tile_goes_through_the_cache_with_progress(tiny_pipe, town_ids):
    ids = np.tile(town_ids, (1, 5))[:, :600]  # two 512 px tiles
    calls = []
    with _counting(tiny_pipe) as counts:
        image = _generate(tiny_pipe, ids, interval=3, steps=3, on_step=lambda k, n: calls.append((k, n)))
    assert image.shape == (64, 600, 3)
    assert counts["conv_in"] == 3 * 2 and counts["mid"] == counts["controlnet"] == 1 * 2
    assert calls == [(k, 3 * 2) for k in range(1, 3 * 2 + 1)]


def test_a_one_tile_map_caches_exactly_like_the_plain_pipeline(tiny_pipe, town_ids):
    plain = _generate(tiny_pipe, town_ids, seed=5, interval=3)
    with step_cache(tiny_pipe, 3) as cache:
        tiled = generate_tiled(tiny_pipe, masks.to_image(town_ids), "Aerial view", seed=5, steps=STEPS, cache=cache)
    assert np.array_equal(np.asarray(tiled, np.float32), plain)


def test_inpaint_and_outpaint_use_the_cache(tiny_pipe, town_ids):
    assert inpaint_pipeline(tiny_pipe).unet is tiny_pipe.unet
    source = masks.to_image(town_ids)  # any picture will do as the input image
    region = np.zeros(town_ids.shape, bool)
    region[10:40, 20:70] = True
    (w, h), (x, y) = grow("left", 64, source.size)
    grown = np.full((h, w), 10, np.uint8)
    grown[y:, x:] = town_ids
    for mode, extra in (("inpaint", {"mask": town_ids, "region": region}), ("outpaint", {"mask": grown, "at": (x, y)})):
        def make(interval, extra=extra, mode=mode):
            req = Request.build(mode, prompt="Aerial view", image=source, seed=2, steps=STEPS, cache_interval=interval,
                                **extra)
            return np.asarray(run(req, tiny_pipe).images[0], np.float32), req.keep

        plain, keep = make(1)
        with _counting(tiny_pipe) as counts:
            cached, _ = make(3)
        assert counts["mid"] == counts["controlnet"] == 2 and counts["conv_in"] == STEPS, mode
        assert np.array_equal(cached[keep], plain[keep]) and not np.array_equal(cached, plain), mode
        assert np.array_equal(cached, make(3)[0]), mode
    assert _untouched(tiny_pipe)


def test_everything_is_restored_after_an_exception(tiny_pipe, town_ids):
    plain = _generate(tiny_pipe, town_ids, seed=4)

    def stop(done, total):
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _generate(tiny_pipe, town_ids, seed=4, interval=3, on_step=stop)
    assert _untouched(tiny_pipe)
    assert np.array_equal(_generate(tiny_pipe, town_ids, seed=4), plain)


def test_a_forward_someone_else_replaced_is_put_back(tiny_pipe):
    def mine(*args, **kwargs):
        raise AssertionError("not called here")

    tiny_pipe.controlnet.forward = mine
    try:
        with step_cache(tiny_pipe, 2):
            assert tiny_pipe.controlnet.forward is not mine
        assert tiny_pipe.controlnet.__dict__["forward"] is mine
    finally:
        del tiny_pipe.controlnet.forward

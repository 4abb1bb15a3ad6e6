"""The procedural renderer: a land-cover mask in, an aerial-looking image out, no model and no GPU.

It gives the CLI, the UI and the endpoint an answer on a fresh machine with no
weights, an instant preview while drawing, and stylised maps of any size.

How it stays seamless at any size: every random number is a hash of
``(seed, absolute pixel position)`` (value noise over absolute coordinates), never
a stateful generator walking over the array; and every effect that looks at the
neighbourhood (roof ridges, cast shadows, shores, soft class edges) looks at most
``HALO`` pixels away. So a window rendered with ``HALO`` pixels of mask around it
(:func:`render_window`) is exactly the same pixels as that part of the whole
render, and :func:`render` itself works in bands to bound its memory.

Colours are calibrated on real FLAIR photos (:mod:`seg2sat.render_stats`): each
class's texture is a zero-mean pattern scaled by the real per-channel spread and
added to the real mean colour. A pixel's class is never changed; only its colour
is softened across class edges and darkened in a cast shadow.
"""

from __future__ import annotations

from functools import cached_property

import numpy as np
from PIL import Image

from .box import Box
from .classes import NUM_CLASSES
from .render_stats import class_stats

HALO = 32
"""How far (in pixels) a pixel's colour may depend on the mask around it."""

BAND = 512
"""Rows rendered at a time: bounds the memory of big maps (results do not depend on it)."""

_DEPTH = 6  # shores and pool rims look this far into a region
_ROOF = 24  # roofs rise up to this far from their edge (hip roofs, flat tops beyond)
_SHADOW = 14  # building shadow length (a 6 m house at 0.2 m/px); light comes from the top-left
_TREE_SHADOW = 5
_PARCEL = 256  # field parcel size in pixels (about 50 m at FLAIR's 0.2 m)

_STATS = class_stats()
_MEAN = np.array([[0, 0, 0]] + [_STATS[i][0] for i in range(1, NUM_CLASSES + 1)], dtype=np.float32)
_STD = np.array([[0, 0, 0]] + [_STATS[i][1] for i in range(1, NUM_CLASSES + 1)], dtype=np.float32)

_TREES = (6, 7, 16, 17)


# ----------------------------------------------------------------------------- hashing and noise


def _seed_salt(seed: int) -> int:
    """Fold any non-negative seed into 32 bits (different seeds give different salts)."""
    seed = int(seed)
    return (seed ^ (seed >> 32) ^ (seed >> 64)) * 0x9E3779B1 & 0xFFFFFFFF


def _hash(x: np.ndarray, y: np.ndarray, salt: int) -> np.ndarray:
    """Uniform [0, 1) float32 from integer coordinates: the same (x, y, salt) always gives the same value."""
    with np.errstate(over="ignore"):
        h = (np.asarray(x, np.int64) & 0xFFFFFFFF).astype(np.uint32) * np.uint32(0x27D4EB2D)
        h = h + (np.asarray(y, np.int64) & 0xFFFFFFFF).astype(np.uint32) * np.uint32(0x165667B1) + np.uint32(salt)
        h ^= h >> np.uint32(15)
        h *= np.uint32(0x2C1B3C6D)
        h ^= h >> np.uint32(12)
        h *= np.uint32(0x297A2D39)
        h ^= h >> np.uint32(15)
    return (h >> np.uint32(8)).astype(np.float32) * np.float32(1.0 / (1 << 24))


def _axis(coords: np.ndarray, scale: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lattice cell of each coordinate, relative to the first one, and its smoothstep weight."""
    cell = np.floor_divide(coords, scale)
    frac = ((coords - cell * scale) / scale).astype(np.float32)
    return cell - cell[0], cell[0], frac * frac * (3 - 2 * frac)


def _value_noise(xs: np.ndarray, ys: np.ndarray, scale: int, salt: int) -> np.ndarray:
    """Smooth noise of feature size ``scale`` over the grid ``ys`` x ``xs`` (absolute coordinates), about unit std.

    Separable: the lattice is interpolated along x for each lattice row first (a small
    array), then along y at full size, so one octave costs a handful of passes.
    """
    cx, x0, wx = _axis(xs, scale)
    cy, y0, wy = _axis(ys, scale)
    lattice = _lattice(x0, y0, cx[-1] + 2, cy[-1] + 2, salt)
    rows = lattice[:, cx] * (1 - wx) + lattice[:, cx + 1] * wx
    out = np.empty((len(ys), len(xs)), np.float32)
    bounds = np.flatnonzero(np.diff(cy, prepend=-1, append=cy[-1] + 1))
    for top, bottom in zip(bounds[:-1], bounds[1:]):  # one lattice row at a time: a broadcast lerp, no gather
        j = cy[top]
        np.multiply(rows[j + 1] - rows[j], wy[top:bottom, None], out=out[top:bottom])
        out[top:bottom] += rows[j]
    return out


def _lattice(x0: int, y0: int, width: int, height: int, salt: int) -> np.ndarray:
    """Random values at lattice points x0.., y0.., scaled so that the interpolated noise has about unit std."""
    values = _hash(np.arange(width)[None] + x0, np.arange(height)[:, None] + y0, salt) - np.float32(0.5)
    return values * np.float32(4.2)


def _value_noise_at(xs: np.ndarray, ys: np.ndarray, cols: np.ndarray, rows: np.ndarray, scale: int, salt: int) -> np.ndarray:
    """:func:`_value_noise` at the pixels (rows, cols) of the grid only: cheaper for a field one small class uses."""
    cx, x0, wx = _axis(xs, scale)
    cy, y0, wy = _axis(ys, scale)
    lattice = _lattice(x0, y0, cx[-1] + 2, cy[-1] + 2, salt)
    cx, wx, cy, wy = cx[cols], wx[cols], cy[rows], wy[rows]
    top = lattice[cy, cx] * (1 - wx) + lattice[cy, cx + 1] * wx
    bottom = lattice[cy + 1, cx] * (1 - wx) + lattice[cy + 1, cx + 1] * wx
    return (bottom - top) * wy + top  # the same float32 operations as _value_noise: bit-identical values


def _relief(height: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Lighting of a height field lit from the top-left, at the flat indices ``idx``: > 0 on slopes facing the light.

    Pixels on the block's outer ring read wrapped neighbours; they lie in the halo, which is cut off.
    """
    flat = height.ravel()
    step = height.shape[1] + 1
    below = flat[np.minimum(idx + step, flat.size - 1)].astype(np.float32)
    return below - flat[np.maximum(idx - step, 0)]


def _shift(mask: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """``mask`` moved by (dy, dx) (content goes down/right for positive values), False where it came from outside."""
    out = np.zeros_like(mask)
    h, w = mask.shape
    source = mask[max(-dy, 0) : h - max(dy, 0), max(-dx, 0) : w - max(dx, 0)]
    out[max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = source
    return out


def _depth(mask: np.ndarray, limit: int) -> np.ndarray:
    """Chessboard distance of each pixel of ``mask`` to its outside, capped at ``limit`` (0 outside)."""
    depth = np.zeros(mask.shape, np.uint8)
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    if rows.size == 0:
        return depth
    box = (slice(max(rows[0] - 1, 0), rows[-1] + 2), slice(max(cols[0] - 1, 0), cols[-1] + 2))
    depth[box] = _depth_in(mask[box], limit)
    return depth


def _depth_in(mask: np.ndarray, limit: int) -> np.ndarray:
    depth = np.zeros(mask.shape, np.uint8)
    current = mask.copy()
    for _ in range(limit):
        depth += current
        rows = current.copy()
        rows[1:] &= current[:-1]
        rows[:-1] &= current[1:]
        current = rows.copy()
        current[:, 1:] &= rows[:, :-1]
        current[:, :-1] &= rows[:, 1:]
    return depth


def _cast(mask: np.ndarray, length: int) -> np.ndarray:
    """Where ``mask`` casts a shadow ``length`` pixels long towards the bottom-right (its own pixels excluded)."""
    shadow = np.zeros_like(mask)
    for k in range(1, length + 1):
        shadow |= _shift(mask, k, k)
    return shadow & ~mask


# ----------------------------------------------------------------------------- one block


class _Block:
    """One rectangle of mask with its absolute coordinates; noise fields are made on first use."""

    def __init__(self, ids: np.ndarray, x0: int, y0: int, seed: int):
        self.ids = ids
        self.xs = np.arange(ids.shape[1], dtype=np.int64) + x0
        self.ys = np.arange(ids.shape[0], dtype=np.int64) + y0
        self.salt = _seed_salt(seed)

    def _noise_salt(self, scale: int, octave: int) -> int:
        return (self.salt + 0x51ED27 * (scale * 16 + octave + 1)) & 0xFFFFFFFF

    def noise(self, scale: int, octave: int = 0) -> np.ndarray:
        """A whole-block noise field, shared by the classes that use it."""
        key = (scale, octave)
        cache = self.__dict__.setdefault("_noise", {})
        if key not in cache:
            cache[key] = _value_noise(self.xs, self.ys, scale, self._noise_salt(scale, octave))
        return cache[key]

    def noise_at(self, idx: np.ndarray, scale: int, octave: int) -> np.ndarray:
        """Noise at the flat indices ``idx`` only (the same values as ``noise(...)`` there), for one class's own field.

        Pointwise evaluation costs about three times a whole-field pass per pixel, so a
        class covering much of the block reads the whole field instead; both give the
        very same bits, so the choice (which depends on the block) never shows.
        """
        if 3 * len(idx) > self.ids.size:
            return _at(self.noise(scale, octave), idx)
        rows, cols = np.divmod(idx, self.ids.shape[1])
        return _value_noise_at(self.xs, self.ys, cols, rows, scale, self._noise_salt(scale, octave))

    @cached_property
    def grain(self) -> np.ndarray:
        """Per-pixel white noise, unit std."""
        return (_hash(self.xs[None], self.ys[:, None], self.salt ^ 0xA5A5A5A5) - 0.5) * np.float32(3.46)

    def speck(self, salt: int) -> np.ndarray:
        return _hash(self.xs[None], self.ys[:, None], self.salt ^ salt)

    def mask(self, *classes: int) -> np.ndarray:
        return np.isin(self.ids, classes) if len(classes) > 1 else self.ids == classes[0]

    def depth(self, cls: int, limit: int = _DEPTH) -> np.ndarray:
        cache = self.__dict__.setdefault("_depth", {})
        if (cls, limit) not in cache:
            cache[cls, limit] = _depth(self.mask(cls), limit)
        return cache[cls, limit]

    def parcels(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Irregular field parcels over absolute space, at ``idx``: two per-parcel hashes, each uniform [0, 1)."""
        rows, cols = np.divmod(idx, self.ids.shape[1])
        u = self.xs[cols] + 30 * self.noise_at(idx, 64, 1)
        v = self.ys[rows] + 30 * self.noise_at(idx, 64, 2)
        cu = np.floor(u / _PARCEL).astype(np.int64)
        cv = np.floor(v / _PARCEL).astype(np.int64)
        return _hash(cu, cv, self.salt ^ 0x3C3C3C3C), _hash(cu, cv, self.salt ^ 0x5A5A5A5A)


def _rows(block: _Block, idx: np.ndarray, period: float, right_angles: bool = False, a: np.ndarray | None = None) -> np.ndarray:
    """Row coordinate (in periods) of each selected pixel; the direction of rows is drawn per parcel (hash ``a``)."""
    if a is None:
        a, _ = block.parcels(idx)
    angle = np.floor(a * 2) * (np.pi / 2) if right_angles else a * np.pi
    r, c = np.divmod(idx, block.ids.shape[1])
    return (block.xs[c] * np.cos(angle) + block.ys[r] * np.sin(angle)) / period


def _at(field: np.ndarray, idx: np.ndarray) -> np.ndarray:
    return field.ravel()[idx]


def _hue(t: np.ndarray, towards: tuple, away: tuple) -> np.ndarray:
    """RGB offset t * ``towards`` where t > 0 and -t * ``away`` where t < 0: two natural hues, never their opposite."""
    t = np.clip(np.asarray(t, np.float32), -1.5, 1.5)[:, None]
    return np.maximum(t, 0) * np.float32(towards) + np.maximum(-t, 0) * np.float32(away)


# Each pattern returns (P, tint): P is about zero-mean unit-std and is scaled by the class's
# real spread; tint is an extra RGB offset (or None) for hue changes a grey scale cannot make.

def _building(b: _Block, idx):
    depth = b.depth(1, _ROOF)
    shade = _relief(depth, idx) * 0.6
    gutter = (_at(depth, idx) == 1) * -0.8
    tone = b.noise_at(idx, 32, 3)
    p = shade + gutter + 0.35 * _at(b.noise(4), idx) + 0.25 * _at(b.grain, idx)
    tint = _hue(tone, (20, 2, -16), (-35, -18, -2))  # terracotta tiles or grey slate
    return p, tint


def _asphalt(b: _Block, idx):
    specks = _at(b.speck(0x1234567), idx)
    p = 0.5 * _at(b.noise(64), idx) + 0.35 * _at(b.noise(16), idx) + 0.35 * _at(b.grain, idx)
    p = p + np.where(specks > 0.985, 3.0, 0.0) - np.where(specks < 0.01, 2.0, 0.0)  # cars, marks, stains
    return p, None


def _earth(b: _Block, idx):
    p = 0.55 * _at(b.noise(16), idx) + 0.5 * _at(b.noise(4), idx) + 0.45 * _at(b.grain, idx) + 0.4 * _at(b.noise(64), idx)
    return p, None


def _water(b: _Block, idx):
    shore = 1 - _at(b.depth(5), idx).astype(np.float32) / _DEPTH
    p = 0.8 * _at(b.noise(64), idx) + 0.2 * _at(b.noise(16), idx) + 0.08 * _at(b.grain, idx) - 1.6 * shore**2
    tint = _hue(b.noise_at(idx, 64, 4), (-6, 4, 10), (-4, 6, -2))  # bluer or greener patches
    return p, tint


def _canopy(scale: int, spread: float = 1.0):
    """Tree crowns of about ``scale`` pixels: bright crowns lit from the top-left, dark gaps between them.

    Two noise lattices of unrelated periods are mixed so that no grid shows through.
    """
    other = round(scale * 1.45)

    def pattern(b: _Block, idx):
        crowns = 0.65 * _at(b.noise(scale), idx) + 0.55 * _at(b.noise(other, 1), idx)
        light = _relief(b.noise(scale), idx) + _relief(b.noise(other, 1), idx)
        gaps = np.minimum(crowns + 0.6, 0) * 1.5  # deep shade where no crown covers the ground
        light = 0.7 * light * scale / 8
        p = 0.6 * crowns + gaps + light + 0.15 * _at(b.grain, idx) + 0.15
        tint = _hue(b.noise_at(idx, 48, 5), (6, 6, -6), (-4, 0, 0))  # yellower or darker stands
        tint += _hue(crowns + light, (-2, 10, -10), (0, 0, 0))  # sunlit leaves are greener than the shade
        return p * spread, tint

    return pattern


def _mixed(b: _Block, idx):
    conifer = np.clip(b.noise_at(idx, 64, 6) * 2 + 0.5, 0, 1)[:, None]  # smooth share of conifers
    p1, t1 = _canopy(8)(b, idx)
    p2, t2 = _canopy(16)(b, idx)
    p = conifer[:, 0] * (p1 - 0.5) + (1 - conifer[:, 0]) * (p2 + 0.3)
    return p, conifer * (t1 - np.float32([6, 0, 0])) + (1 - conifer) * t2


def _grass(b: _Block, idx):
    p = 0.5 * _at(b.noise(64), idx) + 0.45 * _at(b.noise(16), idx) + 0.4 * _at(b.noise(4), idx) + 0.45 * _at(b.grain, idx)
    tint = _hue(b.noise_at(idx, 64, 7), (-14, 6, -12), (12, 8, 2))  # green or dry meadows
    return p, tint


def _vineyard(b: _Block, idx):
    phase = _rows(b, idx, 9.0) % 1.0
    vines = (np.abs(phase - 0.5) < 0.17) & (b.noise_at(idx, 4, 8) > -0.9)
    p = np.where(vines, -1.4, 0.6) + 0.35 * _at(b.noise(16), idx) + 0.3 * _at(b.grain, idx)
    tint = np.outer(vines, np.float32([-18, 0, -8]))
    return p, tint


def _crops(b: _Block, idx):
    a, c = b.parcels(idx)
    stripes = np.sin(2 * np.pi * _rows(b, idx, 4.0, a=a))
    p = 1.3 * (c - 0.5) * 2 + 0.3 * stripes + 0.35 * _at(b.noise(16), idx) + 0.2 * _at(b.grain, idx)
    tint = _hue(np.cos(2 * np.pi * (a + c)), (-20, 8, -15), (20, 16, -10))  # green crop or yellow cereal
    return p, tint


def _plowed(b: _Block, idx):
    a, c = b.parcels(idx)
    furrows = np.sin(2 * np.pi * _rows(b, idx, 5.0, a=a))
    p = 0.9 * furrows + 0.5 * (c - 0.5) * 2 + 0.3 * _at(b.noise(16), idx) + 0.3 * _at(b.grain, idx)
    return p, None


def _pool(b: _Block, idx):
    ripples = 0.5 * _at(b.noise(16), idx) + 0.2 * _at(b.grain, idx)
    depth = _at(b.depth(13), idx).astype(np.float32)
    p = ripples + 0.25 * (depth - 3)
    rim = np.outer(depth <= 2, np.float32([150, 65, 40]))  # the white coping stones around the water
    return p, rim


def _snow(b: _Block, idx):
    p = 0.7 * _at(b.noise(64), idx) + 0.5 * _at(b.noise(16), idx) + 0.3 * _at(b.grain, idx)
    return p, None


def _clear_cut(b: _Block, idx):
    specks = _at(b.speck(0x7654321), idx)
    regrowth = b.noise_at(idx, 16, 9) > 0.8
    p = 0.5 * _at(b.noise(16), idx) + 0.45 * _at(b.noise(4), idx) + 0.35 * _at(b.grain, idx)
    p = p - np.where(specks > 0.97, 2.5, 0.0) + np.where(specks < 0.02, 1.8, 0.0)  # stumps and pale debris
    tint = np.outer(regrowth, np.float32([-25, 0, -20]))
    return p, tint


def _greenhouse(b: _Block, idx):
    u = _rows(b, idx, 1.0, right_angles=True)
    panels = ((u % 6.0) < 1.0) | ((u % 42.0) < 2.0)
    p = np.where(panels, -1.8, 0.4) + 0.4 * _at(b.noise(32), idx) + 0.15 * _at(b.grain, idx)
    return p, None


def _other(b: _Block, idx):
    return 0.6 * _at(b.noise(16), idx) + 0.5 * _at(b.grain, idx) + 0.4 * _at(b.noise(4), idx), None


PATTERNS = {
    1: _building, 2: _earth, 3: _asphalt, 4: _earth, 5: _water, 6: _canopy(8), 7: _canopy(16), 8: _canopy(5),
    9: _vineyard, 10: _grass, 11: _crops, 12: _plowed, 13: _pool, 14: _snow, 15: _clear_cut, 16: _mixed,
    17: _canopy(6), 18: _greenhouse, 19: _other,
}
"""Texture of every class id."""


def _shade(block: _Block, rgb: np.ndarray) -> None:
    """Cast shadows (sun at the top-left): long ones behind buildings, short ones behind trees."""
    ids = block.ids
    buildings = ids == 1
    if buildings.any():
        rgb[_cast(buildings, _SHADOW)] *= np.float32([0.55, 0.58, 0.66])
    trees = np.isin(ids, _TREES)
    if trees.any():
        rgb[_cast(trees, _TREE_SHADOW) & ~buildings] *= np.float32([0.72, 0.75, 0.8])


def _soften_edges(ids: np.ndarray, rgb: np.ndarray) -> np.ndarray:
    """Average each class-edge pixel with its 8 neighbours: no one-pixel staircase, no class change."""
    h, w = ids.shape
    edge = np.zeros((h, w), bool)
    inner = ids[1:-1, 1:-1]
    for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        edge[1:-1, 1:-1] |= inner != ids[1 + dy : h - 1 + dy, 1 + dx : w - 1 + dx]
    at = np.flatnonzero(edge)
    flat = rgb.reshape(-1, 3)
    total = np.zeros((len(at), 3), np.float32)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            total += flat[at + dy * w + dx]
    out = rgb.copy()
    out.reshape(-1, 3)[at] = total / 9
    return out


def _render_block(ext: np.ndarray, x0: int, y0: int, seed: int) -> np.ndarray:
    """Colour of ``ext`` (a mask whose top-left pixel is at absolute x0, y0); valid HALO px in from its edges."""
    block = _Block(ext, x0, y0, seed)
    rgb = np.empty(ext.shape + (3,), np.float32)
    flat_ids = ext.ravel()
    order = np.argsort(flat_ids, kind="stable")  # a radix sort for uint8: pixels grouped by class, in order
    ends = np.cumsum(np.bincount(flat_ids, minlength=NUM_CLASSES + 1))
    for cls in np.flatnonzero(np.diff(ends, prepend=0)):
        idx = order[ends[cls - 1] : ends[cls]]  # class 0 never occurs, so cls - 1 >= 0
        p, tint = PATTERNS[int(cls)](block, idx)
        colour = _MEAN[cls] + np.asarray(p, np.float32)[:, None] * _STD[cls]
        rgb.reshape(-1, 3)[idx] = colour if tint is None else colour + tint
    _shade(block, rgb)
    rgb = _soften_edges(ext, rgb)
    return np.clip(rgb + 0.5, 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------- public API


def _checked(ids) -> np.ndarray:
    ids = np.asarray(ids)
    if ids.ndim != 2 or ids.dtype.kind not in "iu":
        raise ValueError(f"render needs a 2-D integer class-id array, got {ids.dtype} of shape {ids.shape}")
    if ids.size == 0:
        raise ValueError("render needs a non-empty mask")
    if ids.min() < 1 or ids.max() > NUM_CLASSES:
        raise ValueError(f"class ids must be 1..{NUM_CLASSES}; use seg2sat.masks.from_flair() for raw FLAIR values")
    return ids.astype(np.uint8, copy=False)


def _check_origin(origin) -> tuple[int, int]:
    try:
        x, y = (int(v) for v in origin)
    except (TypeError, ValueError):
        raise ValueError(f"origin must be two integers (x, y), got {origin!r}") from None
    return x, y


def _check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def render_window(ids: np.ndarray, box: Box | tuple[int, int, int, int], seed: int = 0,
                  origin: tuple[int, int] = (0, 0)) -> np.ndarray:
    """Pixels ``box`` = (left, top, right, bottom) of ``render_array(ids, seed, origin)``, computed from that box alone.

    Only the box and ``HALO`` pixels of mask around it are read, so a map of any size
    can be rendered (or served) tile by tile with no seam: the tiles are bit-identical
    to the whole render. Outside the mask, its edge pixels are repeated.
    """
    ids = _checked(ids)
    seed = _check_seed(seed)
    ox, oy = _check_origin(origin)
    left, top, right, bottom = (int(v) for v in box)
    h, w = ids.shape
    if not (0 <= left < right <= w and 0 <= top < bottom <= h):
        raise ValueError(f"box {tuple(box)} is not inside the {w}x{h} mask")
    rows = np.clip(np.arange(top - HALO, bottom + HALO), 0, h - 1)
    cols = np.clip(np.arange(left - HALO, right + HALO), 0, w - 1)
    ext = ids[rows[:, None], cols[None]]
    out = _render_block(ext, ox + left - HALO, oy + top - HALO, seed)
    return out[HALO:-HALO, HALO:-HALO]


def render_array(ids: np.ndarray, seed: int = 0, origin: tuple[int, int] = (0, 0)) -> np.ndarray:
    """(H, W, 3) uint8 render of a class-id mask; ``origin`` is the absolute position of ``ids[0, 0]``."""
    ids = _checked(ids)
    h, w = ids.shape
    out = np.empty((h, w, 3), np.uint8)
    for top in range(0, h, BAND):
        bottom = min(top + BAND, h)
        out[top:bottom] = render_window(ids, (0, top, w, bottom), seed, origin)
    return out


def render(ids: np.ndarray, seed: int = 0, origin: tuple[int, int] = (0, 0)) -> Image.Image:
    """An aerial-looking RGB image of the mask (same size), with no model: pure CPU, deterministic.

    ``ids`` is a 2-D array of class ids 1..19 (see :func:`seg2sat.masks.load_mask`).
    The same ``seed`` and absolute position (``origin`` + index) always give the same
    pixel, so neighbouring maps rendered with their origins join without a seam.
    """
    return Image.fromarray(render_array(ids, seed, origin), mode="RGB")

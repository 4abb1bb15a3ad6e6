"""Masks: class-id maps <-> colour images (snapping to the class colours), and the size policy.

(Images on the HTTP wire, base64 and data: URLs, are :mod:`seg2sat.wire`'s.)

A *mask* inside Seg2Sat is always a 2-D ``uint8`` array of class ids (1..19).
Colour images only exist at the edges: what users draw or upload, and what the
ControlNet is conditioned on.

Size policy (used everywhere: CLI, endpoint, UI, training): the model needs sides
that are multiples of 64, so a mask is **resized** (nearest-neighbour, never
bilinear) to each side rounded to the nearest multiple of 64 (at least 64).
Results are resized back to the mask's own size, so an output image always
matches its mask pixel for pixel. Masks whose sides are already multiples of 64
(512x512, the FLAIR size) are never touched. Resizing was chosen over padding
(which invents land cover) and cropping (which silently drops what the user drew).
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .classes import CLASSES, NUM_CLASSES, OTHER

MULTIPLE = 64

MaskLike = str | os.PathLike | Image.Image | np.ndarray

# PALETTE[i] is the colour of class i; row 0 (no class) repeats "other".
PALETTE = np.zeros((NUM_CLASSES + 1, 3), dtype=np.uint8)
for _c in CLASSES:
    PALETTE[_c.id] = _c.rgb
PALETTE[0] = PALETTE[OTHER]

_BITS = 6  # snapping quantises each channel to 6 bits
_SHIFT = 8 - _BITS
_KEY_MASK = 0x3F3F3F  # the 6 high bits of R, G and B, once a packed RGBA pixel is shifted


def _packed(rgba: np.ndarray) -> np.ndarray:
    """(..., 4) uint8 RGBA -> uint32 r | g << 8 | b << 16 | a << 24, without a copy where possible."""
    return np.ascontiguousarray(rgba, dtype=np.uint8).view("<u4")[..., 0]


@functools.cache
def _lut() -> np.ndarray:
    """Nearest class for every 6-bit-per-channel colour, computed once, on the first snap.

    Not at import: every ``seg2sat --help`` would pay for building it
    (``benchmarks/bench_cli_startup.py``). The table is indexed by ``(packed >> 2) & 0x3F3F3F``
    so a lookup costs one shift, one mask and one gather per pixel: that is what makes snapping
    fast (``benchmarks/bench_snap.py``).
    """
    levels = (np.arange(1 << _BITS) << _SHIFT) + (1 << _SHIFT) / 2 - 0.5
    r, g, b = np.meshgrid(levels, levels, levels, indexing="ij")
    grid = np.stack([r, g, b], axis=-1).reshape(-1, 1, 3)
    grid = grid[:, 0]
    palette = PALETTE[1:].astype(np.float64)
    # |g - p|^2 = |g|^2 - 2 g.p + |p|^2; |g|^2 is the same for every class, so it drops out of the argmin.
    nearest = ((palette**2).sum(1) - 2 * grid @ palette.T).argmin(1).astype(np.uint8) + 1
    q = np.arange(1 << _BITS, dtype=np.uint32)
    keys = (q[:, None, None] | q[None, :, None] << 8 | q[None, None, :] << 16).ravel()
    lut = np.zeros(_KEY_MASK + 1, dtype=np.uint8)
    lut[keys] = nearest
    # Palette colours must always map to themselves, whatever the quantisation.
    opaque = np.concatenate([PALETTE, np.full((len(PALETTE), 1), 255, np.uint8)], axis=1)
    for c in CLASSES:
        lut[(_packed(opaque[c.id]) >> _SHIFT) & _KEY_MASK] = c.id
    return lut


_OPAQUE_PALETTE = _packed(np.concatenate([PALETTE, np.full((len(PALETTE), 1), 255, np.uint8)], axis=1))


@dataclass(frozen=True)
class SnapResult:
    ids: np.ndarray
    """2-D uint8 class-id map."""
    off_palette: float
    """Share of pixels (0..1) whose colour was not exactly a class colour."""


def from_flair(raw: np.ndarray) -> np.ndarray:
    """Raw FLAIR mask values -> class ids: 1..19 kept, anything else (0, >19) becomes "other"."""
    raw = np.asarray(raw)
    ids = raw.astype(np.uint8, copy=True)
    ids[(raw < 1) | (raw > NUM_CLASSES)] = OTHER
    return ids


def to_rgb(ids: np.ndarray) -> np.ndarray:
    """Class ids -> (H, W, 3) uint8 colours."""
    return np.take(PALETTE, _checked_ids(ids), axis=0)  # same as PALETTE[ids], ~4x faster


def to_image(ids: np.ndarray) -> Image.Image:
    """Class ids -> RGB colour mask, the image the ControlNet is conditioned on."""
    return Image.fromarray(to_rgb(ids), mode="RGB")


def snap(image: Image.Image | np.ndarray, background: int = OTHER) -> SnapResult:
    """Any colour mask -> clean class ids, by nearest class colour.

    Handles anti-aliased strokes, JPEG artefacts, bilinear resizes, palette and
    greyscale images. Pixels less than half opaque are ``background``: an
    unpainted transparent canvas means "nothing drawn here", not black.
    """
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    has_alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
    rgba = np.asarray(image if image.mode == "RGBA" else image.convert("RGBA"))
    packed = _packed(rgba)
    ids = np.take(_lut(), (packed >> _SHIFT) & _KEY_MASK)
    exact = np.take(_OPAQUE_PALETTE, ids) == packed
    if has_alpha:
        transparent = packed < (128 << 24)
        ids[transparent] = get_background(background)
        exact |= transparent
    off = 1.0 - np.count_nonzero(exact) / exact.size if exact.size else 0.0
    if off:
        settled = _close(ids, exact, rgba)
        fringe = _unsettle_fringe_classes(ids, settled, exact)
        _prefer_neighbours(ids, settled, rgba)
        if len(fringe):
            _settle_leftovers(ids, fringe, rgba)
        _fill_specks(ids, settled)
    return SnapResult(ids=ids, off_palette=float(off))


BLOCK = 1 << 17
"""Pixels handled at once by the neighbour rules below: their scratch arrays (~0.5 KB a pixel) stay near 60 MB
whatever the image, where one pass over a noisy 2048² JPEG took 1.7 GB. Results do not depend on it."""


def _blocks(n: int) -> list[slice]:
    return [slice(i, min(i + BLOCK, n)) for i in range(0, n, BLOCK)]


def _prefer_neighbours(ids: np.ndarray, exact: np.ndarray, rgba: np.ndarray, passes: int = 3) -> None:
    """Snap blended edge pixels to one of the classes they blend, not to a third one.

    Between red road and green grass, a 50 % blend is closest to the brown of bare
    soil: a plain nearest-colour snap draws a thin line of a class nobody painted.
    So an off-palette pixel that touches exact pixels takes, among its exact
    neighbours' classes, the one nearest in colour; each pass settles the next ring
    of a wide blend. Only off-palette pixels are visited after the first full-image
    step, so clean masks cost nothing extra. Each pass reads the pixels settled before
    it (never those of the same pass), block by block (:data:`BLOCK`).
    """
    h, w = ids.shape
    # Class and exactness in one byte (bit 7 = exact), with a border of "not exact" around
    # the image so that neighbours are plain flat offsets: one gather each, no clipping.
    code = np.pad(ids | (exact.view(np.uint8) << 7), 1).ravel()
    flat = np.flatnonzero(~exact)
    pixels = rgba.reshape(-1, 4)
    offsets = np.array((-w - 3, -w - 2, -w - 1, -1, 1, w + 1, w + 2, w + 3))
    for _ in range(passes):
        picked = [_pick_neighbour(code, flat[part], w, pixels, offsets) for part in _blocks(len(flat))]
        found = np.concatenate([f for f, _ in picked]) if picked else np.zeros(0, bool)
        if not found.any():
            break
        settled = np.concatenate([s for _, s in picked])
        done = flat[found]
        ids.ravel()[done] = settled
        code[_padded(done, w)] = settled | 0x80  # settled pixels count as exact for the next pass
        flat = flat[~found]
        if not len(flat):
            break


def _padded(flat: np.ndarray, w: int) -> np.ndarray:
    """Flat indices of an image -> the same pixels in its copy padded by one pixel on every side."""
    rows, cols = np.divmod(flat, w)
    return (rows + 1) * (w + 2) + cols + 1


def _pick_neighbour(code: np.ndarray, flat: np.ndarray, w: int, pixels: np.ndarray,
                    offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For a block of off-palette pixels: which touch an exact neighbour, and the class each takes."""
    at = _padded(flat, w)
    colour = pixels[flat, :3].astype(np.float32)
    palette = PALETTE.astype(np.float32)
    # Squared distance of every pixel to every class colour, in one matrix product; a
    # non-exact neighbour reads the second half, which is infinitely far.
    dist = np.full((len(flat), 2 * len(PALETTE)), np.inf, dtype=np.float32)
    dist[:, : len(PALETTE)] = (colour**2).sum(1, keepdims=True) - 2 * colour @ palette.T + (palette**2).sum(1)
    index = np.arange(len(at))
    neighbours = code[at[None, :] + offsets[:, None]]  # (8, n)
    columns = (neighbours & 0x7F) + np.where(neighbours & 0x80, 0, len(PALETTE)).astype(np.uint8)
    d = dist.ravel()[index * dist.shape[1] + columns]
    pick = d.argmin(0)
    found = np.isfinite(d[pick, index])
    return found, (neighbours[pick, index] & 0x7F)[found]


FRINGE_TOLERANCE = 12
"""A pixel within this many levels (per channel) of its class colour was painted as that class (JPEG noise aside)."""


def _close(ids: np.ndarray, exact: np.ndarray, rgba: np.ndarray) -> np.ndarray:
    """Exact pixels and those within ``FRINGE_TOLERANCE`` of their class colour: settled, whatever their neighbours.

    In a JPEG nearly every pixel is a little off its colour; only the blends along edges
    need the neighbour rules, so they run on a tenth of the pixels instead of all of them.
    """
    settled = exact.copy()
    off = np.flatnonzero(~exact.ravel())
    pixels, flat_ids = rgba.reshape(-1, 4), ids.ravel()
    for part in _blocks(len(off)):
        at = off[part]
        near = np.abs(pixels[at, :3].astype(np.int16) - PALETTE[flat_ids[at]]).max(1) <= FRINGE_TOLERANCE
        settled.ravel()[at[near]] = True
    return settled


def _unsettle_fringe_classes(ids: np.ndarray, settled: np.ndarray, exact: np.ndarray) -> np.ndarray:
    """Classes nobody painted, only blends of two painted ones; their pixels are unsettled. Returns those classes.

    JPEG and blur smear every edge: between agricultural yellow and herbaceous green the
    blend is nearest to *ligneous*, and a JPEG of a town sample gained 1.4 % of it, which
    then entered the caption. Blends lie along edges, one or two pixels wide; anything
    painted, however small, has a pixel whose eight neighbours are settled pixels of its
    own class. A class with (almost) no exact pixel and no such core is a fringe.
    """
    h, w = ids.shape
    flat = ids.ravel()
    n = len(PALETTE)
    counts = np.bincount(flat, minlength=n)
    exact_counts = counts - np.bincount(flat[np.flatnonzero(~exact.ravel())], minlength=n)
    suspects = np.flatnonzero((counts > 0) & (exact_counts < 9))
    if not len(suspects):
        return suspects
    code = np.pad(np.where(settled, ids, 0), 1).ravel()  # 0: not settled
    offsets = np.array([dy * (w + 2) + dx for dy in (-1, 0, 1) for dx in (-1, 0, 1)])
    fringe = []
    for cls in suspects:
        at = np.flatnonzero(flat == cls)
        if not any((code[_padded(at[part], w)[:, None] + offsets] == cls).all(1).any() for part in _blocks(len(at))):
            settled.ravel()[at] = False
            fringe.append(cls)
    return np.array(fringe, dtype=np.intp)


def _settle_leftovers(ids: np.ndarray, fringe: np.ndarray, rgba: np.ndarray) -> None:
    """Fringe pixels the neighbour rule did not reach take the nearest painted class in colour."""
    flat = ids.ravel()
    left = np.isin(flat, fringe)
    painted = np.setdiff1d(np.unique(flat), fringe)
    if not left.any() or not len(painted):
        return
    at_all = np.flatnonzero(left)
    colours = PALETTE[painted].astype(np.float32)[None]
    for part in _blocks(len(at_all)):
        at = at_all[part]
        colour = rgba.reshape(-1, 4)[at, :3].astype(np.float32)
        flat[at] = painted[((colour[:, None, :] - colours) ** 2).sum(-1).argmin(1)]


def _fill_specks(ids: np.ndarray, settled: np.ndarray) -> None:
    """An unsettled pixel whose eight neighbours all share another class is a speck (JPEG noise): it takes theirs.

    Every pixel is judged by the classes before this step; the specks change after, all at once."""
    h, w = ids.shape
    off_all = np.flatnonzero(~settled.ravel())
    flat = ids.ravel()
    changes = []
    for part in _blocks(len(off_all)):
        off = off_all[part]
        rows, cols = np.divmod(off, w)
        around = np.stack([flat[np.clip(rows + dy, 0, h - 1) * w + np.clip(cols + dx, 0, w - 1)]
                           for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx])
        speck = (around == around[0]).all(0) & (around[0] != flat[off])
        changes.append((off[speck], around[0][speck]))
    for at, value in changes:
        flat[at] = value


def get_background(background: int) -> int:
    if not 1 <= int(background) <= NUM_CLASSES:
        raise ValueError(f"background class must be 1..{NUM_CLASSES}, got {background}")
    return int(background)


def load_mask(mask: MaskLike) -> SnapResult:
    """Read a mask given as a path, an image, or an array.

    A 2-D integer array (or a GeoTIFF) holds class ids / raw FLAIR values; anything
    else is a colour image and is snapped.
    """
    if isinstance(mask, (str, os.PathLike)):
        path = Path(mask)
        if not path.is_file():
            raise ValueError(f"mask file not found: {path}")
        if path.suffix.lower() in (".tif", ".tiff"):
            return _read_tiff(path)
        try:
            with Image.open(path) as im:
                im.load()
                return snap(im)
        except (OSError, SyntaxError) as exc:
            raise ValueError(f"mask {path} is not a readable image ({exc})") from exc
    if isinstance(mask, np.ndarray) and mask.ndim == 2 and mask.dtype.kind in "iu":
        return SnapResult(ids=from_flair(mask), off_palette=0.0)
    if isinstance(mask, (Image.Image, np.ndarray)):
        return snap(mask)
    raise ValueError(f"mask must be a file path, a PIL image or a numpy array, not {type(mask).__name__}")


def from_raster(bands: np.ndarray) -> SnapResult:
    """A mask raster's ``(bands, H, W)`` array -> class ids: 3+ bands are colours (snapped), 1 band FLAIR codes."""
    if bands.shape[0] >= 3:
        return snap(np.ascontiguousarray(np.moveaxis(bands[:3], 0, -1).astype(np.uint8, copy=False)))
    return SnapResult(ids=from_flair(bands[0]), off_palette=0.0)


def _read_tiff(path: Path) -> SnapResult:
    import rasterio  # only masks stored as GeoTIFF need it

    try:
        with rasterio.open(path) as src:
            return from_raster(src.read(list(range(1, min(src.count, 3) + 1))))
    except rasterio.errors.RasterioError as exc:
        raise ValueError(f"mask {path} is not a readable GeoTIFF ({exc})") from exc


def class_shares(ids: np.ndarray) -> dict[int, float]:
    """Share of each class present in the mask, largest first."""
    counts = np.bincount(_checked_ids(ids).ravel(), minlength=NUM_CLASSES + 1)
    total = counts.sum()
    shares = {i: float(counts[i] / total) for i in range(1, NUM_CLASSES + 1) if counts[i]}
    return dict(sorted(shares.items(), key=lambda kv: (-kv[1], kv[0])))


def model_size(width: int, height: int) -> tuple[int, int]:
    """The size the model works at for a mask of ``width`` x ``height`` (see module docstring)."""
    return tuple(max(MULTIPLE, int(round(s / MULTIPLE)) * MULTIPLE) for s in (width, height))  # type: ignore[return-value]


def resize_ids(ids: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of a class-id map to ``size`` = (width, height)."""
    h, w = ids.shape
    if (w, h) == tuple(size):
        return ids
    return np.asarray(Image.fromarray(ids).resize(size, Image.NEAREST))


def _checked_ids(ids: np.ndarray) -> np.ndarray:
    ids = np.asarray(ids)
    if ids.ndim != 2:
        raise ValueError(f"a class-id mask must be 2-D, got shape {ids.shape}")
    if ids.size and (ids.min() < 1 or ids.max() > NUM_CLASSES):
        raise ValueError(f"class ids must be 1..{NUM_CLASSES}; use from_flair() for raw FLAIR values")
    return ids.astype(np.intp, copy=False)

"""Draw the sample land-cover masks in ``examples/masks/`` from shapes.

The masks are drawn at the FLAIR scale (512 x 512 pixels at 0.2 m, so one mask is
about 100 m across): a house is some 50 px wide, a road 30 px. Drawing at the scale
the model was trained on matters more than detail: a "town" squeezed into 100 m
of toy blocks gives the ControlNet shapes it has never seen.

Shapes are hand-placed; their edges get a little smooth noise (``wobble``) so that
field, forest and shore boundaries look surveyed from a photograph, like FLAIR's
own masks, rather than ruled. Pixels are class ids drawn without anti-aliasing, and
the saved PNGs hold only class colours.

    python examples/make_masks.py               # rewrites examples/masks/*.png
    python examples/make_masks.py --out masks --size 256 --only town
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from seg2sat.classes import get_class
from seg2sat.masks import resize_ids, to_image

SIZE = 512
Point = tuple[float, float]

# Class ids by name, so the layouts below read like a map legend.
C = {name: get_class(name).id for name in (
    "building", "pervious surface", "impervious surface", "bare soil", "water", "coniferous",
    "deciduous", "brushwood", "vineyard", "herbaceous vegetation", "agricultural land",
    "plowed land", "swimming pool", "clear cut", "mixed",
)}


# --- geometry -------------------------------------------------------------------------


def smooth_noise(n: int, rng: np.random.Generator, width: float, closed: bool) -> np.ndarray:
    """``n`` random values that drift smoothly (correlated over about ``width`` samples), std 1."""
    pad = 0 if closed else int(3 * width) + 1
    raw = rng.normal(size=n + 2 * pad)
    k = np.arange(-int(3 * width) - 1, int(3 * width) + 2)
    kernel = np.exp(-0.5 * (k / max(width, 1e-6)) ** 2)
    if closed:  # circular convolution, so a closed outline has no seam
        out = np.real(np.fft.ifft(np.fft.fft(raw) * np.fft.fft(_wrap(kernel, n))))
    else:
        out = np.convolve(raw, kernel, mode="same")[pad : pad + n]
    return out / (out.std() or 1.0)


def _wrap(kernel: np.ndarray, n: int) -> np.ndarray:
    wrapped = np.zeros(n)
    for i, v in enumerate(kernel):
        wrapped[(i - len(kernel) // 2) % n] += v
    return wrapped


def densify(points: Sequence[Point], step: float, closed: bool) -> np.ndarray:
    """Insert points along every edge so that none is longer than ``step`` pixels."""
    pts = np.asarray(points, dtype=float)
    ends = np.roll(pts, -1, axis=0) if closed else pts[1:]
    starts = pts if closed else pts[:-1]
    out = []
    for a, b in zip(starts, ends):
        n = max(1, int(math.ceil(np.hypot(*(b - a)) / step)))
        out.extend(a + (b - a) * t for t in np.arange(n) / n)
    if not closed:
        out.append(pts[-1])
    return np.array(out)


def wobble(points: Sequence[Point], rng: np.random.Generator, amount: float = 6.0,
           closed: bool = True, step: float = 4.0, width: float = 6.0) -> list[Point]:
    """Push an outline in and out along its normals by smooth noise: a hand-surveyed edge."""
    pts = densify(points, step, closed)
    if len(pts) < 3:
        return [tuple(p) for p in pts]
    nxt = np.roll(pts, -1, axis=0)
    prv = np.roll(pts, 1, axis=0)
    if not closed:
        nxt[-1], prv[0] = pts[-1] + (pts[-1] - pts[-2]), pts[0] - (pts[1] - pts[0])
    tangent = nxt - prv
    normal = np.stack([-tangent[:, 1], tangent[:, 0]], axis=1)
    normal /= np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), 1e-9)
    shift = amount * smooth_noise(len(pts), rng, width, closed)[:, None]
    return [tuple(p) for p in pts + normal * shift]


def spline(points: Sequence[Point], samples: int = 12) -> list[Point]:
    """A Catmull-Rom curve through ``points``: roads and rivers bend, they do not kink."""
    pts = np.asarray(points, dtype=float)
    pts = np.vstack([2 * pts[0] - pts[1], pts, 2 * pts[-1] - pts[-2]])
    out = []
    for i in range(1, len(pts) - 2):
        p0, p1, p2, p3 = pts[i - 1 : i + 3]
        for t in np.linspace(0, 1, samples, endpoint=False):
            t2, t3 = t * t, t * t * t
            out.append(0.5 * (2 * p1 + (p2 - p0) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t2
                              + (3 * p1 - p0 - 3 * p2 + p3) * t3))
    out.append(pts[-2])
    return [tuple(p) for p in out]


def rect(cx: float, cy: float, w: float, h: float, angle: float = 0.0) -> list[Point]:
    """Corners of a ``w`` x ``h`` rectangle centred on (cx, cy), turned by ``angle`` degrees."""
    a = math.radians(angle)
    ux, uy, vx, vy = math.cos(a), math.sin(a), -math.sin(a), math.cos(a)
    return [(cx + sx * w / 2 * ux + sy * h / 2 * vx, cy + sx * w / 2 * uy + sy * h / 2 * vy)
            for sx, sy in ((-1, -1), (1, -1), (1, 1), (-1, 1))]


def blob(cx: float, cy: float, r: float, rng: np.random.Generator, rough: float = 0.25) -> list[Point]:
    """A roundish outline, such as a tree crown or a pond."""
    n = max(12, int(2 * math.pi * r / 3))
    t = np.linspace(0, 2 * math.pi, n, endpoint=False)
    radius = r * (1 + rough * smooth_noise(n, rng, n / 10, closed=True) / 2.5)
    return list(zip(cx + radius * np.cos(t), cy + radius * np.sin(t)))


def along(path: Sequence[Point], every: float, offset: float) -> list[tuple[Point, float]]:
    """Points every ``every`` px along ``path``, ``offset`` px to its left (negative: right),
    each with the path's direction there in degrees: where houses stand along a street."""
    pts = densify(path, 1.0, closed=False)
    seg = np.diff(pts, axis=0)
    dist = np.concatenate([[0], np.cumsum(np.hypot(seg[:, 0], seg[:, 1]))])
    out = []
    for d in np.arange(every / 2, dist[-1], every):
        i = min(int(np.searchsorted(dist, d)), len(seg) - 1)
        dx, dy = seg[i] / max(np.hypot(*seg[i]), 1e-9)
        out.append(((pts[i][0] + dy * offset, pts[i][1] - dx * offset), math.degrees(math.atan2(dy, dx))))
    return out


# --- drawing ---------------------------------------------------------------------------


class Canvas:
    """A class-id map being painted; later shapes cover earlier ones, like layers."""

    def __init__(self, background: str, size: int = SIZE):
        self.image = Image.new("L", (size, size), C[background])
        self.draw = ImageDraw.Draw(self.image)

    def area(self, cls: str, outline: Sequence[Point]) -> None:
        self.draw.polygon([tuple(p) for p in outline], fill=C[cls])

    def band(self, cls: str, path: Sequence[Point], width: float | Sequence[float],
             rng: np.random.Generator | None = None, rough: float = 0.0) -> None:
        """A strip ``width`` px wide along ``path`` (roads, rivers, hedges, tracks).

        ``width`` may be a list of widths spread evenly along the path (a river that
        swells and narrows). ``rough`` > 0 moves the two edges by smooth noise of that
        many pixels, each its own way (river banks, hedges). The strip is a chain of
        discs, which stays clean on tight bends where an offset outline would fold.
        """
        pts = densify(path, 2.0, closed=False)
        radius = np.interp(np.linspace(0, 1, len(pts)), np.linspace(0, 1, np.size(width)), np.atleast_1d(width)) / 2
        shift = np.zeros((len(pts), 2))
        if rough > 0 and rng is not None and len(pts) > 2:
            normal = np.gradient(pts, axis=0)[:, ::-1] * (1, -1)
            normal /= np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), 1e-9)
            shift = normal * (rough * smooth_noise(len(pts), rng, 12, closed=False))[:, None]
            radius = np.maximum(radius + rough * smooth_noise(len(pts), rng, 12, closed=False), 1)
        for (x, y), r in zip(pts + shift, radius):
            self.draw.ellipse((x - r, y - r, x + r, y + r), fill=C[cls])

    def free(self, outline: Sequence[Point], *blocked: str) -> bool:
        """Whether ``outline`` would cover none of the ``blocked`` classes (to place things without overlap)."""
        probe = Image.new("1", self.image.size, 0)
        ImageDraw.Draw(probe).polygon([tuple(p) for p in outline], fill=1)
        under = np.asarray(self.image)[np.asarray(probe)]
        return not np.isin(under, [C[b] for b in blocked]).any()

    def ids(self) -> np.ndarray:
        return np.asarray(self.image).copy()


def plot(canvas: Canvas, front: Point, angle: float, rng: np.random.Generator, width: float = 110,
         depth: float = 190, pool: float = 0.3) -> None:
    """One house plot on a street: hedge, drive, house (sometimes L-shaped), terrace or pool, a tree.

    ``front`` is the middle of the plot's street side; the street runs along ``angle``
    (degrees) and the plot lies to its right, ``depth`` px deep.
    """
    a = math.radians(angle)
    ux, uy = math.cos(a), math.sin(a)  # along the street
    vx, vy = -uy, ux  # into the plot

    def at(s: float, d: float) -> Point:  # s along the street, d into the plot
        return front[0] + s * ux + d * vx, front[1] + s * uy + d * vy

    def box(s: float, d: float, w: float, h: float, turn: float = 0.0) -> list[Point]:
        return rect(*at(s, d), w, h, angle + turn)

    if rng.random() < 0.6:  # a hedge along one side of the plot
        side = rng.choice([-1, 1]) * width / 2
        ends = [at(side, 12), at(side, depth)]
        canvas.band(str(rng.choice(["deciduous", "brushwood"])), ends, rng.uniform(10, 16), rng, 2)
    for _ in range(int(rng.integers(0, 3))):  # garden trees at the back
        tree = at(rng.uniform(-0.4, 0.4) * width, depth * rng.uniform(0.7, 0.95))
        canvas.area("deciduous", blob(*tree, rng.uniform(14, 30), rng))
    w, h = rng.uniform(0.5, 0.68) * width, rng.uniform(46, 60)
    s, d = rng.uniform(-0.1, 0.1) * width, rng.uniform(40, 62) + h / 2
    turn = rng.uniform(-4, 4)
    drive = s + (w / 2 + 11) * rng.choice([-1, 1])
    canvas.area(str(rng.choice(["impervious surface", "pervious surface"])), box(drive, d / 2, 18, d + 4))
    if rng.random() < pool:
        canvas.area("impervious surface", box(s, d + h / 2 + 34, 64, 42))
        canvas.area("swimming pool", box(s, d + h / 2 + 34, 42, 22))
    elif rng.random() < 0.5:
        canvas.area("pervious surface", box(s, d + h / 2 + 11, w * 0.6, 22))
    canvas.area("building", box(s, d, w, h, turn))
    if rng.random() < 0.5:  # a wing or a garage: the L-shaped houses of French villages
        side = rng.choice([-1, 1])
        canvas.area("building", box(s + side * w * 0.3, d + h * 0.55, w * 0.38, h * 0.6, turn))


def street_plots(canvas: Canvas, street: Sequence[Point], road_width: float, rng: np.random.Generator,
                 spacing: float = 115, depth: float = 190, pool: float = 0.3, avoid: Sequence[str] = ()) -> None:
    """House plots along both sides of ``street``, leaving out any that would cover a house or an ``avoid`` class."""
    for side in (1, -1):
        for pos, ang in along(street, spacing, side * road_width / 2):
            ang = ang + 180 if side > 0 else ang  # every plot lies to the right of its own street direction
            a = math.radians(ang)
            centre = (pos[0] - math.sin(a) * depth / 2, pos[1] + math.cos(a) * depth / 2)
            if canvas.free(rect(*centre, spacing * 0.8, depth * 0.8, ang), "building", "swimming pool", *avoid):
                plot(canvas, pos, ang, rng, width=spacing * 0.95, depth=depth, pool=pool)


# --- the sample masks ------------------------------------------------------------------


def town(rng: np.random.Generator) -> np.ndarray:
    """A village crossroads: a through road and a lane, house plots with drives and hedges, a field edge."""
    c = Canvas("herbaceous vegetation")
    c.area("agricultural land", wobble([(390, -10), (522, -10), (522, 160), (480, 130), (400, 40)], rng, 3))
    c.band("deciduous", [(392, 30), (480, 125), (530, 158)], 14, rng, 2)
    main = spline([(-20, 300), (120, 290), (260, 268), (400, 258), (532, 264)])
    lane = spline([(262, 268), (252, 150), (236, 40), (230, -20)])
    c.band("impervious surface", main, 34)
    c.band("impervious surface", lane, 24)
    street_plots(c, lane, 24, rng, spacing=100, depth=150, avoid=("impervious surface", "agricultural land"))
    street_plots(c, main, 34, rng, spacing=120, depth=200, avoid=("impervious surface", "agricultural land"))
    c.area("impervious surface", rect(262, 282, 70, 40, -6))  # the crossroads' widening
    return c.ids()


def river(rng: np.random.Generator) -> np.ndarray:
    """A river meandering between a ploughed field and a crop, lined with trees and scrub; a farm track and sheds."""
    c = Canvas("agricultural land")
    c.area("plowed land", wobble([(-10, -10), (380, -10), (250, 150), (120, 300), (-10, 360)], rng, 4))
    course = spline([(-30, 470), (90, 390), (170, 330), (260, 300), (330, 230), (420, 150), (545, 120)])
    swell = smooth_noise(24, rng, 3, closed=False)
    c.band("brushwood", course, 165 + 30 * swell, rng, 12)
    c.band("deciduous", course, 135 + 20 * swell[::-1], rng, 9)
    c.band("water", course, 72 + 8 * swell, rng, 3)
    c.area("herbaceous vegetation", wobble([(300, 522), (360, 430), (470, 370), (522, 350), (522, 522)], rng, 3))
    c.band("pervious surface", spline([(250, 530), (330, 440), (440, 385), (530, 360)]), 18, rng, 1.5)
    c.area("pervious surface", wobble(rect(455, 478, 130, 90, -25), rng, 2))
    c.area("building", rect(470, 470, 80, 46, -25))
    c.area("building", rect(425, 500, 56, 36, -25))
    return c.ids()


def forest_clearcut(rng: np.random.Generator) -> np.ndarray:
    """A conifer plantation with a fresh clear cut, a forest track and a log landing; meadow below the edge."""
    c = Canvas("herbaceous vegetation")
    c.area("deciduous", wobble([(-10, -10), (522, -10), (522, 330), (420, 350), (300, 390), (160, 400), (-10, 420)],
                               rng, 10, width=6))
    c.area("coniferous", wobble([(-10, -10), (522, -10), (522, 300), (300, 350), (-10, 380)], rng, 8))
    c.area("mixed", wobble([(-10, 250), (120, 230), (180, 380), (-10, 395)], rng, 8))
    c.area("clear cut", wobble([(230, 70), (330, 45), (470, 30), (490, 120), (505, 230), (400, 250), (280, 270),
                                (250, 170)], rng, 8))
    for x, y, r in [(330, 120, 26), (420, 190, 18), (290, 220, 14)]:
        c.area("brushwood", blob(x, y, r, rng, 0.4))
    track = spline([(-20, 200), (110, 170), (215, 150), (260, 290), (330, 330), (380, 420), (400, 530)])
    c.band("pervious surface", track, 22, rng, 2)
    c.area("bare soil", wobble(rect(215, 290, 70, 44, 20), rng, 3))
    for x, y in [(120, 470), (200, 455), (450, 470)]:
        c.area("deciduous", blob(x, y, 20, rng))
    return c.ids()


def vineyards(rng: np.random.Generator) -> np.ndarray:
    """Vineyard parcels stacked along the contour lines of a slope, a winding track, scrub and pines above."""
    c = Canvas("herbaceous vegetation")
    contours = [spline([(-20, y), (130, y + rng.uniform(5, 30)), (300, y + rng.uniform(-10, 20)), (540, y - 45)])
                for y in (105, 200, 300, 410, 560)]
    crops = ["vineyard", "vineyard", "plowed land", "vineyard", "vineyard", "herbaceous vegetation", "vineyard"]
    for k, (upper, lower) in enumerate(zip(contours, contours[1:])):
        bounds = [-10, *sorted(rng.uniform(40, 470, size=int(rng.integers(1, 4)))), SIZE + 10]
        for j, (x0, x1) in enumerate(zip(bounds, bounds[1:])):
            top = [p for p in upper if x0 <= p[0] <= x1]
            bottom = [p for p in lower if x0 <= p[0] <= x1][::-1]
            outline = [(x0 + 5, top[0][1] + 6), *top, (x1 - 5, top[-1][1] + 6), (x1 - 5, bottom[0][1] - 6),
                       *bottom, (x0 + 5, bottom[-1][1] - 6)]
            c.area(crops[(2 * k + j) % len(crops)], wobble(outline, rng, 1.5))
        if k % 2:
            c.band("brushwood", upper, 12, rng, 3)
    c.area("coniferous", wobble([(-10, -10), (522, -10), (522, 40), (300, 90), (120, 95), (-10, 80)], rng, 9))
    c.area("brushwood", wobble([(120, 95), (300, 90), (380, 60), (260, 40)], rng, 7))
    for x, y, r in [(30, 330, 24), (250, 300, 16), (470, 150, 22)]:
        c.area("deciduous", blob(x, y, r, rng, 0.4))
    c.band("pervious surface", spline([(80, 530), (120, 420), (330, 360), (360, 250), (170, 190), (210, 90),
                                       (260, -20)]), 18)
    c.area("impervious surface", wobble(rect(440, 470, 130, 90, -8), rng, 2))
    c.area("building", rect(430, 468, 86, 50, -8))
    c.area("building", rect(470, 500, 40, 30, -8))
    return c.ids()


def coast(rng: np.random.Generator) -> np.ndarray:
    """A seaside suburb: house plots dotted with pools among pines, a coast road, a beach and the sea."""
    c = Canvas("herbaceous vegetation")
    shore = [(-10, 410), (150, 420), (300, 380), (420, 310), (522, 270)]
    c.area("water", wobble(shore + [(522, 522), (-10, 522)], rng, 6))
    c.band("bare soil", spline(shore), 46, rng, 5)
    for x, y, r in [(40, 40, 45), (480, 40, 40), (200, 200, 34), (60, 250, 34), (400, 200, 28)]:
        c.area("coniferous", blob(x, y, r, rng, 0.45))
    road = spline([(-20, 355), (150, 360), (290, 320), (390, 255), (530, 210)])
    street = spline([(-20, 150), (150, 135), (300, 110), (420, 90), (540, 70)])
    c.band("impervious surface", road, 30)
    c.band("impervious surface", street, 24)
    street_plots(c, street, 24, rng, spacing=120, depth=160, pool=0.85, avoid=("impervious surface", "water"))
    return c.ids()


MASKS: dict[str, Callable[[np.random.Generator], np.ndarray]] = {
    "town": town,
    "river": river,
    "forest_clearcut": forest_clearcut,
    "vineyards": vineyards,
    "coast": coast,
}
"""Sample name -> drawing function; the file is ``<name>.png``."""

def draw(name: str, seed: int = 0) -> np.ndarray:
    """The class-id map (512 x 512) of one sample; the same seed always draws the same map."""
    if name not in MASKS:
        raise ValueError(f"unknown sample mask {name!r}; choose from {', '.join(MASKS)}")
    return MASKS[name](np.random.default_rng(seed))


def make_masks(out: str | Path, names: Sequence[str] | None = None, size: int = SIZE, seed: int = 0) -> list[Path]:
    """Write ``<name>.png`` colour masks into ``out``; ``size`` other than 512 resizes (nearest)."""
    if size < 64:
        raise ValueError(f"size must be at least 64 pixels, got {size}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name in names or list(MASKS):
        ids = resize_ids(draw(name, seed), (size, size))
        path = out / f"{name}.png"
        to_image(ids).save(path, optimize=True)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "masks")
    parser.add_argument("--only", nargs="+", choices=list(MASKS), help="draw only these samples")
    parser.add_argument("--size", type=int, default=SIZE, help="side in pixels (default 512, the FLAIR size)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the edge noise")
    args = parser.parse_args(argv)
    for path in make_masks(args.out, args.only, args.size, args.seed):
        print(path)


if __name__ == "__main__":
    main()

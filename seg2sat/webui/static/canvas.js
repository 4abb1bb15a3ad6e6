// Drawing2Map: the map on screen. The canvas only ever shows the map's class ids through the palette
// served by /api/classes, so every pixel drawn, filled, imported or exported is exactly a class colour
// (no anti-aliasing anywhere). Only the rectangle that changed since the last frame is uploaded.

import { $, canvasFor } from "./dom.js";
import { S, on } from "./state.js";

const REGION_WORD = ((150 << 24) | 0xffffff) >>> 0;  // translucent white

const C = {
  dirty: null,         // the rectangle to upload on the next frame
  overlayFull: false,  // the overlay is redrawn whole on the next frame
  rect: null,          // the rectangle being dragged ({a, b}), drawn on the overlay
  maskImage: null, maskWords: null, regionImage: null, regionWords: null,
  queued: false,
};

export function maskImageData(w = S.w, h = S.h, ids = S.ids) {
  // A fresh, complete image of a map (for export, thumbnails and results), whatever is still to be drawn.
  const data = new ImageData(w, h);
  const words = new Uint32Array(data.data.buffer);
  for (let i = 0, n = ids.length; i < n; i++) words[i] = S.words[ids[i]];
  return data;
}

export function maskDataURL(w = S.w, h = S.h, ids = S.ids) {
  return canvasFor(w, h, maskImageData(w, h, ids)).toDataURL("image/png");
}

export function regionDataURL() {
  const data = new ImageData(S.w, S.h);
  for (let i = 0; i < S.region.length; i++) {
    const v = S.region[i] ? 255 : 0;
    data.data[4 * i] = v; data.data[4 * i + 1] = v; data.data[4 * i + 2] = v; data.data[4 * i + 3] = 255;
  }
  return canvasFor(S.w, S.h, data).toDataURL("image/png");
}

export function showRect(rect) {
  // The rectangle tool's outline while it is dragged (null: none).
  C.rect = rect;
  C.overlayFull = true;
  render();
}

export function render() {
  if (C.queued) return;
  C.queued = true;
  requestAnimationFrame(() => {
    C.queued = false;
    flush();
  });
}

export function flush() {
  // Upload only the rectangle that changed since the last frame: strokes stay cheap on big maps.
  const d = C.dirty;
  C.dirty = null;
  if (d) {
    const { w, ids, region, words } = S;
    const { maskWords, regionWords } = C;
    for (let y = d.y0; y <= d.y1; y++) {
      for (let i = y * w + d.x0, end = y * w + d.x1; i <= end; i++) {
        maskWords[i] = words[ids[i]];
        if (region) regionWords[i] = region[i] ? REGION_WORD : 0;
      }
    }
    $("mask-canvas").getContext("2d").putImageData(C.maskImage, 0, 0, d.x0, d.y0, d.x1 - d.x0 + 1, d.y1 - d.y0 + 1);
  }
  drawOverlay(d);
  updateShares();
}

function drawOverlay(d) {
  // The overlay holds the inpainting region and the rectangle being dragged, never map pixels.
  const ctx = $("overlay-canvas").getContext("2d");
  if (C.rect || C.overlayFull) {
    ctx.clearRect(0, 0, S.w, S.h);
    if (S.region) ctx.putImageData(C.regionImage, 0, 0);
    if (C.rect) {
      const { a, b } = C.rect;
      const c = S.rgb[S.current];
      ctx.fillStyle = `rgb(${c[0]},${c[1]},${c[2]})`;
      ctx.fillRect(Math.min(a.x, b.x), Math.min(a.y, b.y), Math.abs(b.x - a.x) + 1, Math.abs(b.y - a.y) + 1);
    }
    C.overlayFull = Boolean(C.rect);  // a rectangle must be wiped on the next frame
  } else if (d && S.region) {
    ctx.putImageData(C.regionImage, 0, 0, d.x0, d.y0, d.x1 - d.x0 + 1, d.y1 - d.y0 + 1);
  }
}

function updateShares() {
  const total = S.w * S.h;
  const shares = S.classes.filter((c) => S.counts[c.id]).map((c) => ({ c, share: S.counts[c.id] / total }))
    .sort((a, b) => b.share - a.share || a.c.id - b.c.id);
  const list = $("shares");
  list.replaceChildren();
  for (const { c, share } of shares) {
    const li = document.createElement("li");
    li.dataset.class = c.id;
    const swatch = document.createElement("i");
    swatch.style.background = c.colour;
    li.append(swatch, `${c.name} ${(100 * share).toFixed(1)} %`);
    list.append(li);
  }
}

function markDirty(x0, y0, x1, y1) {
  const d = C.dirty;
  C.dirty = d ? { x0: Math.min(d.x0, x0), y0: Math.min(d.y0, y0), x1: Math.max(d.x1, x1), y1: Math.max(d.y1, y1) }
              : { x0, y0, x1, y1 };
  render();
}

function resizeCanvases() {
  for (const c of [$("mask-canvas"), $("overlay-canvas")]) {
    c.width = S.w; c.height = S.h;
    c.getContext("2d").imageSmoothingEnabled = false;
  }
  // Pixel buffers written as one 32-bit word per pixel, uploaded by dirty rectangle.
  C.maskImage = new ImageData(S.w, S.h);
  C.maskWords = new Uint32Array(C.maskImage.data.buffer);
  C.regionImage = new ImageData(S.w, S.h);
  C.regionWords = new Uint32Array(C.regionImage.data.buffer);
  C.dirty = { x0: 0, y0: 0, x1: S.w - 1, y1: S.h - 1 };
  C.overlayFull = true;
  $("canvas-size").textContent = `${S.w} × ${S.h} px`;
  $("canvas-width").value = S.w;
  $("canvas-height").value = S.h;
  render();
}

on("changed", markDirty);
on("resized", resizeCanvases);
on("mode", () => { C.overlayFull = true; render(); });

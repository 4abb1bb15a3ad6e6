// Drawing2Map: the live preview. After each stroke, the part of the map it changed is
// rendered by the offline renderer on the server (POST /api/preview) and patched into
// the right-hand pane: an aerial-looking map while drawing, before any diffusion.
// The renderer's windows are seamless, so a patch is exactly that part of a full render.
"use strict";

const P = {
  dirty: null,       // rectangle changed since the last request
  busy: false,       // one request at a time, in order: later strokes land on top
  strokeAt: null,    // when the stroke being previewed ended (for the latency figure)
  tile: 512,         // big rectangles go in tiles of this size, so the first patch comes quickly
};

function previewDirty(x0, y0, x1, y1) {
  // A pixel's colour depends on the map up to HALO away (edges, shadows): redraw that far around the change.
  const halo = S.halo || 0;
  [x0, y0, x1, y1] = [Math.max(0, x0 - halo), Math.max(0, y0 - halo), Math.min(S.w - 1, x1 + halo), Math.min(S.h - 1, y1 + halo)];
  const d = P.dirty;
  P.dirty = d ? { x0: Math.min(d.x0, x0), y0: Math.min(d.y0, y0), x1: Math.max(d.x1, x1), y1: Math.max(d.y1, y1) }
              : { x0, y0, x1, y1 };
  if (S.drawing && !P.busy) previewFlush(false);  // long strokes update as they go
}

function previewAll() {
  const c = $("preview-canvas");
  if (c.width !== S.w || c.height !== S.h) { c.width = S.w; c.height = S.h; }
  P.dirty = { x0: 0, y0: 0, x1: S.w - 1, y1: S.h - 1 };
  previewFlush(false);
}

function previewFlush(strokeEnd = true) {
  if (strokeEnd) P.strokeAt = performance.now();
  if (P.busy || !P.dirty || !S.words) return;
  const d = P.dirty;
  P.dirty = null;
  P.busy = true;
  renderRect(d).catch((err) => showError(err.message)).finally(() => {
    P.busy = false;
    if (P.dirty) previewFlush(false);
  });
}

async function renderRect(d) {
  for (let y0 = d.y0; y0 <= d.y1; y0 += P.tile) {
    for (let x0 = d.x0; x0 <= d.x1; x0 += P.tile) {
      await renderTile(x0, y0, Math.min(d.x1, x0 + P.tile - 1), Math.min(d.y1, y0 + P.tile - 1));
    }
  }
  if (P.strokeAt !== null && !P.dirty) {
    // From the end of the stroke to its pixels on screen, for the page's own measurement.
    document.body.dataset.previewMs = (performance.now() - P.strokeAt).toFixed(1);
    P.strokeAt = null;
  }
}

async function renderTile(x0, y0, x1, y1) {
  // Send the rectangle with HALO pixels of map around it (clipped at the map's edges), get its pixels back.
  const { w, h, ids } = S;
  const ax = Math.max(0, x0 - S.halo), ay = Math.max(0, y0 - S.halo);
  const bx = Math.min(w - 1, x1 + S.halo), by = Math.min(h - 1, y1 + S.halo);
  const cw = bx - ax + 1, ch = by - ay + 1;
  const part = new Uint8Array(cw * ch);
  for (let y = 0; y < ch; y++) part.set(ids.subarray((ay + y) * w + ax, (ay + y) * w + ax + cw), y * cw);
  const body = { ids: bytesToBase64(part), size: [cw, ch], box: [x0 - ax, y0 - ay, x1 - ax + 1, y1 - ay + 1],
                 origin: [ax, ay], seed: previewSeed() };
  const response = await fetch("/api/preview", {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  });
  if (!response.ok) throw new Error((await response.json()).error);
  if (S.w !== w || S.h !== h) return;  // the map was replaced meanwhile; its own preview follows
  const bitmap = await createImageBitmap(await response.blob());
  $("preview-canvas").getContext("2d").drawImage(bitmap, x0, y0);
}

function previewSeed() {
  const seed = Number($("seed").value);
  return Number.isSafeInteger(seed) && seed >= 0 ? seed : 0;
}

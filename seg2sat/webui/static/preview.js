// Drawing2Map: the live preview. After each stroke, the part of the map it changed is
// rendered by the offline renderer on the server (POST /api/preview) and patched into
// the right-hand pane: an aerial-looking map while drawing, before any diffusion.
// The renderer's windows are seamless, so a patch is exactly that part of a full render.
// The preview canvas is aria-busy while a part of it is still to be drawn.

import * as api from "./api.js";
import { $, bytesToBase64 } from "./dom.js";
import { showError } from "./errors.js";
import { previewSeed } from "./form.js";
import { S, on } from "./state.js";

const P = {
  dirty: null,       // rectangle changed since the last request
  busy: false,       // one request at a time, in order: later strokes land on top
  strokeAt: null,    // when the stroke being previewed ended (for the latency figure)
  tile: 512,         // big rectangles go in tiles of this size, so the first patch comes quickly
  map: 0,            // bumped when the whole map is replaced: older requests are dropped
  abort: null,       // the AbortController of the request in flight
};

function markBusy() {
  $("preview-canvas").setAttribute("aria-busy", String(P.busy || P.dirty !== null));
}

function previewDirty(x0, y0, x1, y1) {
  // A pixel's colour depends on the map up to HALO away (edges, shadows): redraw that far around the change.
  const halo = S.halo || 0;
  [x0, y0, x1, y1] = [Math.max(0, x0 - halo), Math.max(0, y0 - halo), Math.min(S.w - 1, x1 + halo), Math.min(S.h - 1, y1 + halo)];
  mergeDirty(x0, y0, x1, y1);
  if (S.stroking && !P.busy) previewFlush(false);  // long strokes update as they go
}

function mergeDirty(x0, y0, x1, y1) {
  const d = P.dirty;
  P.dirty = d ? { x0: Math.min(d.x0, x0), y0: Math.min(d.y0, y0), x1: Math.max(d.x1, x1), y1: Math.max(d.y1, y1) }
              : { x0, y0, x1, y1 };
  markBusy();
}

export function previewAll() {
  // A new map (size, sample, version…): whatever is in flight was for the old one: drop it, start over.
  const c = $("preview-canvas");
  if (c.width !== S.w || c.height !== S.h) { c.width = S.w; c.height = S.h; }
  P.map++;
  if (P.abort) P.abort.abort();
  P.dirty = { x0: 0, y0: 0, x1: S.w - 1, y1: S.h - 1 };
  previewFlush(false);
}

function previewFlush(strokeEnd = true) {
  if (strokeEnd) P.strokeAt = performance.now();
  if (P.busy || !S.words) return;
  if (!P.dirty) {  // every change of the stroke was drawn while it went on: the preview is already up to date
    if (strokeEnd) reportLatency();
    return;
  }
  const d = P.dirty;
  P.dirty = null;
  P.busy = true;
  markBusy();
  // The map as it is now: every tile of this rectangle is cut from it, whatever happens meanwhile.
  const map = { w: S.w, h: S.h, ids: S.ids, id: P.map, seed: previewSeed() };
  P.abort = new AbortController();
  renderRect(d, map, P.abort.signal).catch(previewFailed).finally(() => {
    P.busy = false;
    P.abort = null;
    markBusy();
    if (P.dirty) previewFlush(false);
  });
}

function previewFailed(err) {
  // A dropped request is normal (the map changed); any other failure is said in the page's words:
  // the server's sentence is about the request's fields, meant for programmers.
  if (err.name === "AbortError") return;
  console.warn("live preview:", err.message);
  showError("The live preview could not be drawn just now; it catches up with your next change.");
}

async function renderRect(d, map, signal) {
  for (let y0 = d.y0; y0 <= d.y1; y0 += P.tile) {
    for (let x0 = d.x0; x0 <= d.x1; x0 += P.tile) {
      if (map.id !== P.map) return;  // the map was replaced: its own preview follows
      await renderTile(map, x0, y0, Math.min(d.x1, x0 + P.tile - 1), Math.min(d.y1, y0 + P.tile - 1), signal);
    }
  }
  if (!P.dirty && map.id === P.map) reportLatency();
}

function reportLatency() {
  // From the end of the stroke to its pixels on screen, for the page's own measurement.
  if (P.strokeAt === null) return;
  document.body.dataset.previewMs = (performance.now() - P.strokeAt).toFixed(1);
  P.strokeAt = null;
}

async function renderTile(map, x0, y0, x1, y1, signal) {
  // Send the rectangle with HALO pixels of map around it (clipped at the map's edges), get its pixels back.
  const { w, h, ids } = map;
  const ax = Math.max(0, x0 - S.halo), ay = Math.max(0, y0 - S.halo);
  const bx = Math.min(w - 1, x1 + S.halo), by = Math.min(h - 1, y1 + S.halo);
  const cw = bx - ax + 1, ch = by - ay + 1;
  const part = new Uint8Array(cw * ch);
  for (let y = 0; y < ch; y++) part.set(ids.subarray((ay + y) * w + ax, (ay + y) * w + ax + cw), y * cw);
  const body = { ids: bytesToBase64(part), size: [cw, ch], box: [x0 - ax, y0 - ay, x1 - ax + 1, y1 - ay + 1],
                 origin: [ax, ay], seed: map.seed };
  const blob = await api.previewTile(body, signal);
  if (map.id !== P.map) return;  // answered for a map that is gone
  if (blob === null) { mergeDirty(x0, y0, x1, y1); return; }  // busy: sent again next
  const bitmap = await createImageBitmap(blob);
  if (map.id === P.map) $("preview-canvas").getContext("2d").drawImage(bitmap, x0, y0);
}

on("changed", previewDirty);
on("resized", previewAll);
on("stroke", () => previewFlush());

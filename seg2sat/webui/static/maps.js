// Drawing2Map: whole maps in and out: samples, imports, New, Clear, export, and the one size rule.

import * as api from "./api.js";
import { maskDataURL, maskImageData } from "./canvas.js";
import { $, base64ToBytes, canvasFor, download } from "./dom.js";
import { clearError, showError } from "./errors.js";
import { S, clearMap, endStroke, leaveMode, pushUndo, setMap } from "./state.js";

export function sizeProblem(w, h) {
  // The one size rule for New, imports, samples and places, from /api/options: sides of at least
  // min_side, at most max_pixels in all (the server refuses anything else).
  if (w < S.minSide || h < S.minSide) return `sides must be at least ${S.minSide} px`;
  if (w * h > S.maxPixels) return `this server takes at most ${S.maxPixels.toLocaleString("en")} pixels`;
  return null;
}

function fitted(w, h) {
  // The nearest size that follows the rule, keeping the aspect ratio (the server's payloads.fitted).
  const up = Math.max(1, S.minSide / Math.min(w, h));
  const down = Math.min(1, Math.sqrt(S.maxPixels / (w * h * up * up)));
  const side = (n) => Math.max(S.minSide, down < 1 ? Math.floor(n * up * down + 1e-6) : Math.round(n * up));
  return [side(w), side(h)];
}

function resizeIds(w, h, ids, nw, nh) {
  // Nearest neighbour, as the server resizes masks: never a blended class.
  const out = new Uint8Array(nw * nh);
  for (let y = 0; y < nh; y++) {
    const sy = Math.min(h - 1, Math.floor(((y + 0.5) * h) / nh));
    for (let x = 0; x < nw; x++) out[y * nw + x] = ids[sy * w + Math.min(w - 1, Math.floor(((x + 0.5) * w) / nw))];
  }
  return out;
}

function resizeOffer(summary, note) {
  // A map outside the size rule is offered a nearest-neighbour resize (classes kept); null if declined.
  // The server has already scaled a too-large import (its `source` is the size of the file).
  const { width: w, height: h } = summary;
  let ids = base64ToBytes(summary.ids);
  const [sw, sh] = summary.source || [w, h];
  const problem = summary.source ? sizeProblem(sw, sh) : sizeProblem(w, h);
  if (!problem) return { w, h, ids };
  const [nw, nh] = summary.source ? [w, h] : fitted(w, h);
  const question = `${note} is ${sw} × ${sh} px, but ${problem}. Load it scaled to ${nw} × ${nh} px?`
    + " (nearest neighbour: every pixel keeps its class)";
  if (!window.confirm(question)) {
    $("import-note").textContent = `${note} was not loaded (${sw} × ${sh} px: ${problem}).`;
    return null;
  }
  if (!summary.source) ids = resizeIds(w, h, ids, nw, nh);
  return { w: nw, h: nh, ids, scaled: [sw, sh] };
}

export function loadMap(w, h, ids) {
  // A whole new map (import, sample, place, New): one undoable step; strokes drawn meanwhile are one Undo away.
  pushUndo();
  leaveMode();
  setMap(w, h, ids);
}

function loadSummary(summary, note) {
  const map = resizeOffer(summary, note);
  if (!map) return false;
  loadMap(map.w, map.h, map.ids);
  const off = summary.off_palette;
  const scaled = map.scaled ? ` Scaled from ${map.scaled[0]} × ${map.scaled[1]} px.` : "";
  $("import-note").textContent = (off > 0
    ? `${note}: ${(100 * off).toFixed(1)} % of the pixels were off-palette and were snapped to the nearest class colour.`
    : `${note}: every pixel was already a class colour.`) + scaled;
  endStroke();
  return true;
}

async function busy(message, work) {
  // Long actions (import, sample) say so at once and keep the cursor busy.
  $("import-note").textContent = message;
  document.body.style.cursor = "progress";
  try { return await work(); } finally { document.body.style.cursor = ""; }
}

export function exportMask() { download(maskDataURL(), `mask-${S.w}x${S.h}.png`); }

export async function importFile(file) {
  clearError();
  try {
    const summary = await busy(`Importing ${file.name}…`, () => api.importMask(file));
    loadSummary(summary, `Imported ${file.name}`);
  } catch (err) {
    $("import-note").textContent = "";
    showError(err.message);
  } finally {
    $("import-file").value = "";
  }
}

export async function loadSamples() {
  // Samples as thumbnails of their own map; the first one is on the canvas when a newcomer arrives.
  const box = $("samples");
  try {
    const samples = await api.samples();
    for (const s of samples) {
      const summary = await api.sample(s.name);
      const b = document.createElement("button");
      b.type = "button";
      b.dataset.sample = s.name;
      b.title = `Load the sample map "${s.name}"`;
      const thumb = canvasFor(summary.width, summary.height, maskImageData(summary.width, summary.height, base64ToBytes(summary.ids)));
      b.append(thumb, s.name);
      b.addEventListener("click", () => loadSummary(summary, `Sample ${s.name}`));
      box.append(b);
    }
    return samples;
  } catch (err) {
    showError(err.message);
    return [];
  }
}

export function newCanvas() {
  const w = Number($("canvas-width").value), h = Number($("canvas-height").value);
  if (!Number.isInteger(w) || !Number.isInteger(h)) { showError("Canvas sides must be whole numbers of pixels."); return; }
  const problem = sizeProblem(w, h);
  if (problem) { showError(`A ${w} × ${h} px canvas cannot be made: ${problem}.`); return; }
  loadMap(w, h, new Uint8Array(w * h).fill(S.background));
  endStroke();
}

export function clearCanvas() {
  pushUndo();
  clearMap();
  endStroke();
}

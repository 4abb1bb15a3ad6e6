// Drawing2Map: the canvas editor and the generation client. Plain JavaScript, no build step.
//
// The map is an array of class ids (one byte per pixel); the canvas only ever shows
// it through the palette served by /api/classes, so every pixel drawn, filled,
// imported or exported is exactly a class colour (no anti-aliasing anywhere).
"use strict";

const $ = (id) => document.getElementById(id);
const MAX_UNDO = 60;
const MAX_UNDO_BYTES = 64 * 1024 * 1024;  // big canvases keep fewer steps
const POLL_MS = 250;

const S = {
  classes: [], rgb: [],
  w: 512, h: 512, ids: new Uint8Array(512 * 512),
  current: 1, background: 11, tool: "brush", size: 8,
  undo: [], redo: [],
  region: null,       // Uint8Array (1 = redo) while inpainting
  mode: null,         // {kind: "inpaint"|"outpaint", entry, result, base, at, side, pixels}
  drawing: null,      // the stroke in progress
  job: null,
  maxPixels: Infinity,  // from /api/options
};

// ---------------------------------------------------------------- errors and status

function showError(message) {
  $("error-text").textContent = message;
  $("error").hidden = false;
}

function clearError() { $("error").hidden = true; }

async function api(path, options = {}) {
  // Every non-2xx answer carries {"error": sentence}; show it, never fail silently.
  let response;
  try {
    response = await fetch(path, options);
  } catch (err) {
    throw new Error(`The server cannot be reached (${err.message}). Is it still running?`);
  }
  let body = null;
  try { body = await response.json(); } catch (err) { body = null; }
  if (!response.ok) throw new Error((body && body.error) || `The server answered HTTP ${response.status}.`);
  return body;
}

async function checkHealth() {
  const el = $("backend-status");
  try {
    const h = await api("/api/health");
    el.classList.toggle("error", h.status === "error");
    if (h.status === "error") {
      el.textContent = `Backend "${h.backend}" is not available`;
      showError(h.message);
    } else if (h.status === "loading") {
      el.textContent = `Backend "${h.backend}": loading the model…`;
      setTimeout(checkHealth, 1000);
    } else {
      el.textContent = `Backend "${h.backend}": ready`;
      if (h.message && h.message !== "ready") { el.textContent += " (procedural renderer: no weights)"; el.title = h.message; }
    }
  } catch (err) {
    el.textContent = "Server unreachable";
    showError(err.message);
  }
}

// ---------------------------------------------------------------- the map model

function snapshot() {
  return { w: S.w, h: S.h, ids: S.ids.slice(), region: S.region ? S.region.slice() : null };
}

function restore(snap) {
  S.w = snap.w; S.h = snap.h; S.ids = snap.ids.slice();
  const inpainting = S.mode && S.mode.kind === "inpaint";
  S.region = inpainting ? (snap.region && snap.region.length === S.w * S.h ? snap.region.slice() : new Uint8Array(S.w * S.h)) : null;
  resizeCanvases();
}

function pushUndo() {
  S.undo.push(snapshot());
  const bytes = () => S.undo.reduce((n, u) => n + u.ids.length + (u.region ? u.region.length : 0), 0);
  while (S.undo.length > MAX_UNDO || (S.undo.length > 1 && bytes() > MAX_UNDO_BYTES)) S.undo.shift();
  S.redo = [];
  updateUndoButtons();
}

function undo() {
  if (!S.undo.length) return;
  S.redo.push(snapshot());
  restore(S.undo.pop());
  updateUndoButtons();
}

function redo() {
  if (!S.redo.length) return;
  S.undo.push(snapshot());
  restore(S.redo.pop());
  updateUndoButtons();
}

function updateUndoButtons() {
  $("undo").disabled = !S.undo.length;
  $("redo").disabled = !S.redo.length;
}

function setMap(w, h, ids) {
  S.w = w; S.h = h; S.ids = ids;
  if (S.region) S.region = new Uint8Array(w * h);
  resizeCanvases();
}

function resizeCanvases() {
  for (const c of [$("mask-canvas"), $("overlay-canvas")]) {
    c.width = S.w; c.height = S.h;
    c.getContext("2d").imageSmoothingEnabled = false;
  }
  // Pixel buffers written as one 32-bit word per pixel, uploaded by dirty rectangle.
  S.maskImage = new ImageData(S.w, S.h);
  S.maskWords = new Uint32Array(S.maskImage.data.buffer);
  S.regionImage = new ImageData(S.w, S.h);
  S.regionWords = new Uint32Array(S.regionImage.data.buffer);
  $("stage").style.aspectRatio = `${S.w} / ${S.h}`;
  $("canvas-size").textContent = `${S.w} × ${S.h} px`;
  placeTarget();
  invalidate();
}

function invalidate() {
  // The whole map changed (new size, undo, load): recount the classes, redraw everything.
  S.counts = new Int32Array(S.rgb.length);
  for (let i = 0; i < S.ids.length; i++) S.counts[S.ids[i]]++;
  markDirty(0, 0, S.w - 1, S.h - 1);
  S.overlayFull = true;
  render();
}

function markDirty(x0, y0, x1, y1) {
  x0 = Math.max(0, x0); y0 = Math.max(0, y0); x1 = Math.min(S.w - 1, x1); y1 = Math.min(S.h - 1, y1);
  if (x0 > x1 || y0 > y1) return;
  const d = S.dirty;
  S.dirty = d ? { x0: Math.min(d.x0, x0), y0: Math.min(d.y0, y0), x1: Math.max(d.x1, x1), y1: Math.max(d.y1, y1) }
              : { x0, y0, x1, y1 };
}

function setId(i, value) {
  // Every change of the map goes through here, so the class shares stay exact without a recount.
  const old = S.ids[i];
  if (old !== value) { S.counts[old]--; S.counts[value]++; S.ids[i] = value; }
}

// ---------------------------------------------------------------- drawing

function brushSpan() {
  const r = (S.size - 1) / 2;
  return { r, lo: -Math.floor(r), hi: Math.ceil(r), off: S.size % 2 ? 0 : 0.5 };  // even sizes sit between pixels
}

function stamp(cx, cy, target, value) {
  // A pixel-exact disc: whole pixels only, so no blended colour can appear.
  const { r, lo, hi, off } = brushSpan();
  const onMap = target === S.ids;
  for (let dy = lo; dy <= hi; dy++) {
    const y = cy + dy;
    if (y < 0 || y >= S.h) continue;
    for (let dx = lo; dx <= hi; dx++) {
      const x = cx + dx;
      if (x < 0 || x >= S.w) continue;
      const ex = dx - off, ey = dy - off;
      if (ex * ex + ey * ey > r * r + 0.5) continue;
      if (onMap) setId(y * S.w + x, value); else target[y * S.w + x] = value;
    }
  }
  markDirty(cx + lo, cy + lo, cx + hi, cy + hi);
}

function line(x0, y0, x1, y1, target, value) {
  const n = Math.max(Math.abs(x1 - x0), Math.abs(y1 - y0), 1);
  for (let i = 0; i <= n; i++) {
    stamp(Math.round(x0 + ((x1 - x0) * i) / n), Math.round(y0 + ((y1 - y0) * i) / n), target, value);
  }
}

function floodFill(x, y, value) {
  const from = S.ids[y * S.w + x];
  if (from === value) return;
  const stack = [y * S.w + x];
  let [x0, y0, x1, y1] = [x, y, x, y];
  while (stack.length) {
    const p = stack.pop();
    if (S.ids[p] !== from) continue;
    setId(p, value);
    const px = p % S.w, py = (p - px) / S.w;
    if (px < x0) x0 = px; if (px > x1) x1 = px; if (py < y0) y0 = py; if (py > y1) y1 = py;
    if (px > 0) stack.push(p - 1);
    if (px < S.w - 1) stack.push(p + 1);
    if (p >= S.w) stack.push(p - S.w);
    if (p < S.w * (S.h - 1)) stack.push(p + S.w);
  }
  markDirty(x0, y0, x1, y1);
}

function fillRect(a, b, value) {
  const [x0, x1] = [Math.min(a.x, b.x), Math.max(a.x, b.x)];
  const [y0, y1] = [Math.min(a.y, b.y), Math.max(a.y, b.y)];
  for (let y = y0; y <= y1; y++) for (let i = y * S.w + x0; i <= y * S.w + x1; i++) setId(i, value);
  markDirty(x0, y0, x1, y1);
}

function pixelAt(event) {
  const rect = $("overlay-canvas").getBoundingClientRect();
  const x = Math.floor(((event.clientX - rect.left) / rect.width) * S.w);
  const y = Math.floor(((event.clientY - rect.top) / rect.height) * S.h);
  return { x: Math.min(S.w - 1, Math.max(0, x)), y: Math.min(S.h - 1, Math.max(0, y)),
           inside: x >= 0 && y >= 0 && x < S.w && y < S.h };
}

function strokeTarget() {
  // Which layer a brush-like tool paints, and with what value.
  if (S.tool === "region") return [S.region, 1];
  if (S.tool === "eraser") return [S.ids, S.background];
  return [S.ids, S.current];
}

function onPointerDown(event) {
  if (event.button !== 0) return;
  const p = pixelAt(event);
  if (S.tool === "eyedropper") { selectClass(S.ids[p.y * S.w + p.x]); return; }
  if (S.tool === "fill") {
    if (S.ids[p.y * S.w + p.x] === S.current) return;
    pushUndo();
    floodFill(p.x, p.y, S.current);
    render();
    return;
  }
  pushUndo();
  event.target.setPointerCapture(event.pointerId);
  S.drawing = { start: p, last: p };
  if (S.tool === "rect") {
    S.preview = { a: p, b: p };
  } else {
    const [target, value] = strokeTarget();
    stamp(p.x, p.y, target, value);
  }
  render();
}

function onPointerMove(event) {
  const p = pixelAt(event);
  showCursor(p);
  if (!S.drawing) return;
  if (S.tool === "rect") {
    S.preview = { a: S.drawing.start, b: p };
  } else {
    const [target, value] = strokeTarget();
    line(S.drawing.last.x, S.drawing.last.y, p.x, p.y, target, value);
    S.drawing.last = p;
  }
  render();
}

function onPointerUp(event) {
  if (!S.drawing) return;
  if (S.tool === "rect") {
    fillRect(S.drawing.start, pixelAt(event), S.current);
    S.preview = null;
    S.overlayFull = true;
  }
  S.drawing = null;
  render();
}

function showCursor(p) {
  const outline = $("brush-cursor");
  const brushy = ["brush", "eraser", "region"].includes(S.tool);
  outline.hidden = !p.inside || !brushy;
  if (!p.inside) { $("cursor-info").textContent = "\u00a0"; return; }
  if (brushy) {
    // The outline covers exactly the pixels the next stamp paints.
    const { lo, hi } = brushSpan();
    Object.assign(outline.style, {
      left: `${(100 * (p.x + lo)) / S.w}%`, top: `${(100 * (p.y + lo)) / S.h}%`,
      width: `${(100 * (hi - lo + 1)) / S.w}%`, height: `${(100 * (hi - lo + 1)) / S.h}%`,
    });
  }
  const c = S.classes.find((k) => k.id === S.ids[p.y * S.w + p.x]);
  $("cursor-info").textContent = `${p.x}, ${p.y}: ${c ? c.name : "?"}`;
}

// ---------------------------------------------------------------- rendering

const REGION_WORD = ((150 << 24) | 0xffffff) >>> 0;  // translucent white

function maskImageData() {
  // A fresh, complete image of the map (for export and requests), whatever is still to be drawn.
  const data = new ImageData(S.w, S.h);
  const words = new Uint32Array(data.data.buffer);
  for (let i = 0, n = S.ids.length; i < n; i++) words[i] = S.words[S.ids[i]];
  return data;
}

let renderQueued = false;
function render() {
  if (renderQueued) return;
  renderQueued = true;
  requestAnimationFrame(() => {
    renderQueued = false;
    flush();
  });
}

function flush() {
  // Upload only the rectangle that changed since the last frame: strokes stay cheap on big maps.
  const d = S.dirty;
  S.dirty = null;
  if (d) {
    const { w, ids, maskWords, regionWords, region } = { w: S.w, ids: S.ids, maskWords: S.maskWords,
      regionWords: S.regionWords, region: S.region };
    for (let y = d.y0; y <= d.y1; y++) {
      for (let i = y * w + d.x0, end = y * w + d.x1; i <= end; i++) {
        maskWords[i] = S.words[ids[i]];
        if (region) regionWords[i] = region[i] ? REGION_WORD : 0;
      }
    }
    $("mask-canvas").getContext("2d").putImageData(S.maskImage, 0, 0, d.x0, d.y0, d.x1 - d.x0 + 1, d.y1 - d.y0 + 1);
  }
  drawOverlay(d);
  updateShares();
}

function drawOverlay(d) {
  // The overlay holds the inpainting region and the rectangle being dragged, never map pixels.
  const ctx = $("overlay-canvas").getContext("2d");
  if (S.preview || S.overlayFull) {
    ctx.clearRect(0, 0, S.w, S.h);
    if (S.region) ctx.putImageData(S.regionImage, 0, 0);
    if (S.preview) {
      const { a, b } = S.preview;
      const c = S.rgb[S.current];
      ctx.fillStyle = `rgb(${c[0]},${c[1]},${c[2]})`;
      ctx.fillRect(Math.min(a.x, b.x), Math.min(a.y, b.y), Math.abs(b.x - a.x) + 1, Math.abs(b.y - a.y) + 1);
    }
    S.overlayFull = Boolean(S.preview);  // a preview must be wiped on the next frame
  } else if (d && S.region) {
    ctx.putImageData(S.regionImage, 0, 0, d.x0, d.y0, d.x1 - d.x0 + 1, d.y1 - d.y0 + 1);
  }
}

function updateShares() {
  const list = $("shares");
  list.replaceChildren();
  const total = S.w * S.h;
  const present = S.classes.filter((c) => S.counts[c.id]).sort((a, b) => S.counts[b.id] - S.counts[a.id]);
  for (const c of present) {
    const li = document.createElement("li");
    li.dataset.class = c.id;
    const swatch = document.createElement("i");
    swatch.style.background = c.colour;
    li.append(swatch, `${c.name} ${((100 * S.counts[c.id]) / total).toFixed(1)} %`);
    list.append(li);
  }
  updatePromptPreview();
}

function updatePromptPreview() {
  // The server writes the real caption (classes over 1 %, largest first); this is its outline.
  const place = $("place").value.trim();
  $("prompt-preview").textContent = `Aerial view${place ? " of " + place : ""}. <the map's classes, largest first>`;
}

// ---------------------------------------------------------------- palette and tools

function buildPalette() {
  const palette = $("palette");
  const background = $("background");
  for (const c of S.classes) {
    const b = document.createElement("button");
    b.type = "button";
    b.className = "swatch";
    b.setAttribute("role", "radio");
    b.dataset.class = c.id;
    b.title = `${c.id}: ${c.name} (${c.colour})`;
    const i = document.createElement("i");
    i.style.background = c.colour;
    b.append(i, c.name);
    b.addEventListener("click", () => selectClass(c.id));
    palette.append(b);
    background.append(new Option(c.name, c.id));
  }
  background.value = S.background;
  background.addEventListener("change", () => { S.background = Number(background.value); });
  selectClass(S.current);
}

function setBrushSize(size) {
  const slider = $("brush-size");
  S.size = Math.min(Number(slider.max), Math.max(Number(slider.min), size));
  slider.value = S.size;
  $("brush-size-value").textContent = S.size;
}

function selectClass(id) {
  S.current = id;
  for (const b of document.querySelectorAll(".swatch")) b.setAttribute("aria-checked", String(Number(b.dataset.class) === id));
}

function selectTool(tool) {
  S.tool = tool;
  for (const b of document.querySelectorAll("button.tool")) b.setAttribute("aria-pressed", String(b.dataset.tool === tool));
}

// ---------------------------------------------------------------- masks in and out

function base64ToBytes(b64) {
  const bin = atob(b64);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

function loadSummary(summary, note) {
  pushUndo();
  leaveMode();
  setMap(summary.width, summary.height, base64ToBytes(summary.ids));
  $("canvas-width").value = summary.width;
  $("canvas-height").value = summary.height;
  const off = summary.off_palette;
  $("import-note").textContent = off > 0
    ? `${note}: ${(100 * off).toFixed(1)} % of the pixels were off-palette and were snapped to the nearest class colour.`
    : `${note}: every pixel was already a class colour.`;
}

function canvasFor(w, h, imageData) {
  const c = document.createElement("canvas");
  c.width = w; c.height = h;
  c.getContext("2d").putImageData(imageData, 0, 0);
  return c;
}

function maskDataURL() { return canvasFor(S.w, S.h, maskImageData()).toDataURL("image/png"); }

function regionDataURL() {
  const data = new ImageData(S.w, S.h);
  for (let i = 0; i < S.region.length; i++) {
    const v = S.region[i] ? 255 : 0;
    data.data[4 * i] = v; data.data[4 * i + 1] = v; data.data[4 * i + 2] = v; data.data[4 * i + 3] = 255;
  }
  return canvasFor(S.w, S.h, data).toDataURL("image/png");
}

function exportMask() {
  const a = document.createElement("a");
  a.href = maskDataURL();
  a.download = `mask-${S.w}x${S.h}.png`;
  document.body.append(a);
  a.click();
  a.remove();
}

async function importFile(file) {
  clearError();
  const form = new FormData();
  form.append("file", file);
  try {
    loadSummary(await api("/api/masks/import", { method: "POST", body: form }), `Imported ${file.name}`);
  } catch (err) {
    showError(err.message);
  } finally {
    $("import-file").value = "";
  }
}

async function loadSamples() {
  const select = $("sample");
  try {
    const samples = await api("/api/samples");
    for (const s of samples) select.append(new Option(s.name, s.name));
    $("load-sample").disabled = !samples.length;
    if (!samples.length) select.append(new Option("no samples", ""));
  } catch (err) {
    showError(err.message);
  }
}

async function loadSample() {
  const name = $("sample").value;
  if (!name) return;
  clearError();
  try {
    loadSummary(await api(`/api/samples/${encodeURIComponent(name)}`), `Sample ${name}`);
  } catch (err) {
    showError(err.message);
  }
}

function tooLarge(w, h) {
  // The server's own limit (MAX_PIXELS), said before drawing rather than after generating.
  if (w * h <= S.maxPixels) return false;
  showError(`A ${w} × ${h} px canvas has ${(w * h).toLocaleString("en")} pixels; this server accepts at most ${S.maxPixels.toLocaleString("en")}.`);
  return true;
}

function newCanvas() {
  const w = Number($("canvas-width").value), h = Number($("canvas-height").value);
  const min = Number($("canvas-width").min);
  if (!Number.isInteger(w) || !Number.isInteger(h) || w < min || h < min) {
    showError(`Canvas sides must be whole numbers of at least ${min} pixels.`);
    return;
  }
  if (tooLarge(w, h)) return;
  pushUndo();
  leaveMode();
  setMap(w, h, new Uint8Array(w * h).fill(S.background));
}

function clearMap() {
  pushUndo();
  S.ids.fill(S.background);
  invalidate();
}

// ---------------------------------------------------------------- generation

function settings() {
  const locked = $("seed-lock").checked;
  const seedValue = $("seed").value.trim();
  return {
    place: $("place").value,
    style: $("style").value || null,
    seed: locked && seedValue !== "" ? seedValue : null,  // as text: 19-digit seeds stay exact
    steps: Number($("steps").value),
    guidance_scale: Number($("guidance").value),
    controlnet_conditioning_scale: Number($("controlnet-scale").value),
    num_images: Number($("num-images").value),
    cache_interval: $("fast").checked ? S.fast.cache_interval : 1,
  };
}

async function submit(mode, extra) {
  if (S.job) { showError("A job is already running; wait for it or cancel it."); return; }
  clearError();
  const mask = { w: S.w, h: S.h, ids: S.ids.slice(), thumb: maskDataURL() };
  const body = Object.assign(settings(), { mask: mask.thumb }, extra);
  let answer;
  try {
    answer = await api(`/api/${mode}`, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    });
  } catch (err) {
    showError(err.message);
    return;
  }
  $("seed").value = answer.seeds[0];
  S.job = { id: answer.job.id, mode, mask, settings: body, prompt: answer.prompt };
  $("cancel").disabled = false;
  setBusy(true);
  poll();
}

async function poll() {
  const job = S.job;
  if (!job) return;
  let state;
  try {
    state = await api(`/api/jobs/${job.id}`);
  } catch (err) {
    finishJob(); showError(err.message); return;
  }
  const bar = $("progress");
  bar.max = Math.max(1, state.total); bar.value = state.step;
  if (state.status === "queued") {
    $("progress-text").textContent = `Waiting for the device (${state.queue_position} ahead)…`;
  } else if (state.status === "running") {
    $("progress-text").textContent = `${job.mode}: step ${state.step} of ${state.total}`;
  }
  if (state.status === "done") {
    $("progress-text").textContent = `Done: ${state.results.length} image${state.results.length > 1 ? "s" : ""} (step ${state.total} of ${state.total})`;
    finishJob();
    addResults(job, state);
  } else if (state.status === "error") {
    $("progress-text").textContent = "Failed";
    finishJob();
    showError(state.error);
  } else if (state.status === "cancelled") {
    $("progress-text").textContent = "Cancelled";
    bar.value = 0;
    finishJob();
  } else {
    setTimeout(poll, POLL_MS);
  }
}

function finishJob() {
  S.job = null;
  $("cancel").disabled = true;
  setBusy(false);
}

function setBusy(busy) {
  for (const id of ["generate", "run-inpaint", "run-outpaint"]) $(id).disabled = busy;
}

async function cancelJob() {
  if (!S.job) return;
  $("progress-text").textContent = "Cancelling…";
  try { await api(`/api/jobs/${S.job.id}/cancel`, { method: "POST" }); } catch (err) { showError(err.message); }
}

// ---------------------------------------------------------------- results gallery

function addResults(job, state) {
  $("gallery-empty").hidden = true;
  for (const r of [...state.results].reverse()) {  // prepended: the batch reads in seed order
    const entry = { result: r, mask: job.mask, settings: job.settings, prompt: state.prompt, mode: job.mode };
    $("results").prepend(resultCard(entry));
  }
}

function resultCard(entry) {
  const card = $("result-template").content.firstElementChild.cloneNode(true);
  const r = entry.result;
  card.dataset.imageId = r.id;
  card.dataset.seed = r.seed;
  card.querySelector(".result-image").src = r.url;
  const maskImg = card.querySelector(".result-mask");
  maskImg.src = entry.mask.thumb;
  card.querySelector(".compare-slider").addEventListener("input", (e) => { maskImg.style.opacity = e.target.value / 100; });
  card.querySelector(".result-prompt").textContent = entry.prompt;
  card.querySelector(".result-meta").textContent =
    `${entry.mode} · seed ${r.seed} · ${entry.settings.steps} steps · ${r.width}×${r.height}${entry.settings.style ? " · " + entry.settings.style : ""}`;
  const link = card.querySelector(".download");
  link.href = r.url;
  link.download = `seg2sat-seed${r.seed}.png`;
  card.querySelector(".restore").addEventListener("click", () => restoreEntry(entry));
  card.querySelector(".result-image").addEventListener("click", () => restoreEntry(entry));
  card.querySelector(".inpaint").addEventListener("click", () => enterMode("inpaint", entry));
  card.querySelector(".outpaint").addEventListener("click", () => enterMode("outpaint", entry));
  return card;
}

function restoreEntry(entry) {
  leaveMode();
  pushUndo();
  setMap(entry.mask.w, entry.mask.h, entry.mask.ids.slice());
  const s = entry.settings;
  $("place").value = s.place || "";
  $("style").value = s.style || "";
  $("seed").value = entry.result.seed;
  $("seed-lock").checked = true;
  $("steps").value = s.steps;
  $("guidance").value = s.guidance_scale;
  $("controlnet-scale").value = s.controlnet_conditioning_scale;
  $("num-images").value = 1;
  $("fast").checked = (s.cache_interval || 1) > 1;
  $("canvas-width").value = entry.mask.w;
  $("canvas-height").value = entry.mask.h;
  $("stage").scrollIntoView({ block: "center" });
}

// ---------------------------------------------------------------- inpaint and outpaint

function enterMode(kind, entry) {
  clearError();
  leaveMode();
  pushUndo();
  setMap(entry.mask.w, entry.mask.h, entry.mask.ids.slice());
  S.mode = { kind, entry, base: { w: entry.mask.w, h: entry.mask.h, ids: entry.mask.ids.slice() }, at: [0, 0] };
  const target = $("target-image");
  target.src = entry.result.url;
  target.hidden = false;
  $("mask-opacity-field").hidden = false;
  $("mask-canvas").style.opacity = $("mask-opacity").value / 100;
  $("mode-panel").hidden = false;
  $("inpaint-controls").hidden = kind !== "inpaint";
  $("outpaint-controls").hidden = kind !== "outpaint";
  $("tool-region").hidden = kind !== "inpaint";
  if (kind === "inpaint") {
    S.region = new Uint8Array(S.w * S.h);
    $("mode-title").textContent = `Inpaint (seed ${entry.result.seed})`;
    $("mode-help").textContent = "Paint the region to redo with the Region tool; you may redraw the classes there too. Pixels outside the region stay as they are.";
    selectTool("region");
  } else {
    $("mode-title").textContent = `Outpaint (seed ${entry.result.seed})`;
    $("mode-help").textContent = "Pick a side and a width, extend the canvas, draw the new strip's classes, then outpaint. The existing image stays as it is.";
    selectTool("brush");
  }
  placeTarget();
  invalidate();
  $("stage").scrollIntoView({ block: "center" });  // the card clicked may be far below the editor
}

function leaveMode() {
  if (!S.mode) return;
  S.mode = null;
  S.region = null;
  $("target-image").hidden = true;
  $("mask-opacity-field").hidden = true;
  $("mask-canvas").style.opacity = 1;
  $("mode-panel").hidden = true;
  $("tool-region").hidden = true;
  if (S.tool === "region") selectTool("brush");
  invalidate();
}

function placeTarget() {
  // The picked result sits under the mask, at its place in the (possibly grown) canvas.
  const target = $("target-image");
  if (!S.mode) return;
  const { w, h } = S.mode.base;
  target.style.left = `${(100 * S.mode.at[0]) / S.w}%`;
  target.style.top = `${(100 * S.mode.at[1]) / S.h}%`;
  target.style.width = `${(100 * w) / S.w}%`;
  target.style.height = `${(100 * h) / S.h}%`;
}

function extendCanvas() {
  // Grow the original map on one side; the new strip continues the edge classes until redrawn.
  const side = $("outpaint-side").value;
  const pixels = Number($("outpaint-pixels").value);
  if (!Number.isInteger(pixels) || pixels < 1) {
    showError("The strip to add must be a whole number of pixels, at least 1.");
    return;
  }
  const base = S.mode.base;
  const horizontal = side === "left" || side === "right";
  const w = base.w + (horizontal ? pixels : 0), h = base.h + (horizontal ? 0 : pixels);
  if (tooLarge(w, h)) return;
  const ox = side === "left" ? pixels : 0, oy = side === "top" ? pixels : 0;
  const ids = new Uint8Array(w * h);
  for (let y = 0; y < h; y++) {
    const sy = Math.min(base.h - 1, Math.max(0, y - oy));
    for (let x = 0; x < w; x++) {
      const sx = Math.min(base.w - 1, Math.max(0, x - ox));
      ids[y * w + x] = base.ids[sy * base.w + sx];
    }
  }
  pushUndo();
  Object.assign(S.mode, { at: [ox, oy], side, pixels });
  setMap(w, h, ids);
  $("canvas-width").value = w;
  $("canvas-height").value = h;
}

function runInpaint() {
  if (!S.mode || S.mode.kind !== "inpaint") return;
  if (!S.region.some((v) => v)) { showError("Paint the region to redo first (Region tool)."); return; }
  submit("inpaint", { image_id: S.mode.entry.result.id, region: regionDataURL() });
}

function runOutpaint() {
  if (!S.mode || S.mode.kind !== "outpaint") return;
  if (!S.mode.side) { showError("Extend the canvas first: pick a side and a width, then press Extend canvas."); return; }
  submit("outpaint", { image_id: S.mode.entry.result.id, side: S.mode.side, pixels: S.mode.pixels });
}

// ---------------------------------------------------------------- start

function bindEvents() {
  const overlay = $("overlay-canvas");
  overlay.addEventListener("pointerdown", onPointerDown);
  overlay.addEventListener("pointermove", onPointerMove);
  overlay.addEventListener("pointerup", onPointerUp);
  overlay.addEventListener("pointercancel", onPointerUp);
  overlay.addEventListener("pointerleave", () => { $("cursor-info").textContent = "\u00a0"; $("brush-cursor").hidden = true; });
  for (const b of document.querySelectorAll("button.tool")) b.addEventListener("click", () => selectTool(b.dataset.tool));
  $("brush-size").addEventListener("input", (e) => setBrushSize(Number(e.target.value)));
  $("undo").addEventListener("click", undo);
  $("redo").addEventListener("click", redo);
  $("clear").addEventListener("click", clearMap);
  $("new-canvas").addEventListener("click", newCanvas);
  $("load-sample").addEventListener("click", loadSample);
  $("import-file").addEventListener("change", (e) => { if (e.target.files[0]) importFile(e.target.files[0]); });
  $("export").addEventListener("click", exportMask);
  $("generate").addEventListener("click", () => submit("generate", {}));
  $("cancel").addEventListener("click", cancelJob);
  $("error-close").addEventListener("click", clearError);
  $("place").addEventListener("input", () => updateShares());
  $("clear-region").addEventListener("click", () => { pushUndo(); S.region.fill(0); invalidate(); });
  $("run-inpaint").addEventListener("click", runInpaint);
  $("extend").addEventListener("click", extendCanvas);
  $("run-outpaint").addEventListener("click", runOutpaint);
  $("leave-mode").addEventListener("click", leaveMode);
  $("mask-opacity").addEventListener("input", (e) => { if (S.mode) $("mask-canvas").style.opacity = e.target.value / 100; });
  document.addEventListener("keydown", onKey);
}

function onKey(event) {
  const typing = ["INPUT", "SELECT", "TEXTAREA"].includes(document.activeElement.tagName)
    && document.activeElement.type !== "range" && document.activeElement.type !== "checkbox";
  if (typing) return;
  const key = event.key.toLowerCase();
  if ((event.ctrlKey || event.metaKey) && key === "z") { event.preventDefault(); event.shiftKey ? redo() : undo(); return; }
  if ((event.ctrlKey || event.metaKey) && key === "y") { event.preventDefault(); redo(); return; }
  if (key === "[" || key === "]") { setBrushSize(S.size + (key === "]" ? 1 : -1)); return; }
  const tools = { b: "brush", f: "fill", e: "eraser", i: "eyedropper", r: "rect" };
  if (!event.ctrlKey && !event.metaKey && !event.altKey && tools[key]) selectTool(tools[key]);
}

function applySettings(options) {
  // Labels, defaults and ranges of the number inputs: the core's table (seg2sat.request.SETTINGS).
  for (const input of document.querySelectorAll("input[data-setting]")) {
    const s = options.settings[input.dataset.setting];
    Object.assign(input, { min: s.low, max: s.high, value: s.default });
    if (s.integer) input.step = 1;
    document.querySelector(`[data-label="${input.dataset.setting}"]`).textContent = s.label;
  }
  S.maxPixels = options.max_pixels;
  S.fast = options.fast;
}

async function init() {
  bindEvents();
  checkHealth();
  try {
    const [classes, options] = await Promise.all([api("/api/classes"), api("/api/options")]);
    S.classes = classes;
    S.rgb = [[0, 0, 0]];
    for (const c of classes) {
      S.rgb[c.id] = [1, 3, 5].map((i) => parseInt(c.colour.slice(i, i + 2), 16));
    }
    S.rgb[0] = S.rgb[S.rgb.length - 1];
    S.words = Uint32Array.from(S.rgb, ([r, g, b]) => ((255 << 24) | (b << 16) | (g << 8) | r) >>> 0);  // RGBA, little-endian
    const style = $("style");
    style.append(new Option("none", ""));
    for (const s of options.styles) style.append(new Option(s.name, s.name));
    style.value = "photorealistic";
    applySettings(options);
    buildPalette();
  } catch (err) {
    showError(err.message);
    return;
  }
  selectTool("brush");
  S.ids = new Uint8Array(S.w * S.h).fill(S.background);
  resizeCanvases();
  updateUndoButtons();
  loadSamples();
  document.body.dataset.ready = "true";
}

init();

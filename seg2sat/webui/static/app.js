// Drawing2Map: the map editor. Plain JavaScript, no build step; the other scripts
// (errors.js, view.js, maps.js, preview.js, results.js, persist.js, place.js, main.js) share the state `S` and the helpers here.
//
// The map is an array of class ids (one byte per pixel); the canvas only ever shows
// it through the palette served by /api/classes, so every pixel drawn, filled,
// imported or exported is exactly a class colour (no anti-aliasing anywhere).
"use strict";

const $ = (id) => document.getElementById(id);
const MAX_UNDO = 60;
const MAX_UNDO_BYTES = 64 * 1024 * 1024;  // big canvases keep fewer steps

const S = {
  classes: [], rgb: [],
  w: 512, h: 512, ids: new Uint8Array(512 * 512),
  current: 1, background: 11, tool: "brush", size: 8,
  undo: [], redo: [],
  region: null,       // Uint8Array (1 = redo) while inpainting
  mode: null,         // {kind: "inpaint"|"outpaint", version, base, at, side, pixels}
  drawing: null,      // the stroke in progress
  job: null,
  zoom: 1,            // 1 = the whole map fits its pane; both panes share it
  maxPixels: Infinity,  // from /api/options, with minSide: the one size rule of every map
  minSide: 32,
  labels: {},         // request field -> the label the page shows for it
  edits: 0,           // bumped by every change of the map (autosave, stale imports)
};

// ---------------------------------------------------------------- errors and status

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

async function busy(message, work) {
  // Long actions (import, sample, fill of a big map) say so at once and keep the cursor busy.
  const note = $("import-note");
  note.textContent = message;
  document.body.style.cursor = "progress";
  try { return await work(); } finally { document.body.style.cursor = ""; }
}

async function checkHealth() {
  const el = $("backend-status");
  try {
    const h = await api("/api/health");
    el.classList.toggle("error", h.status === "error");
    S.procedural = h.backend === "procedural" || (h.message && h.message.includes("procedural"));
    markStyles();
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

// ---------------------------------------------------------------- the map model and undo

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
  $("canvas-width").value = w;
  $("canvas-height").value = h;
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
  $("canvas-size").textContent = `${S.w} × ${S.h} px`;
  applyZoom();
  placeTarget();
  invalidate();
  previewAll();
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
  S.edits++;
  previewDirty(x0, y0, x1, y1);
  followMap();
}

function locked(i) {
  // While inpainting, the map outside the region keeps what the image was made from.
  return S.region !== null && S.mode && S.mode.kind === "inpaint" && !S.region[i];
}

function setId(i, value) {
  // Every change of the map goes through here, so the class shares stay exact without a recount.
  const old = S.ids[i];
  if (old !== value && !locked(i)) { S.counts[old]--; S.counts[value]++; S.ids[i] = value; }
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
  // Scanline fill: whole runs per row and a typed stack, ~20x faster than pixel by pixel on big maps.
  const { w, h, ids } = S;
  const from = ids[y * w + x];
  if (from === value) return;
  const counts = S.counts;
  const stack = new Int32Array(Math.max(1024, 2 * (w + h)) * 4);
  let top = 0;
  let [bx0, by0, bx1, by1] = [x, y, x, y];
  const push = (px, py) => {
    if (top + 2 > stack.length) return false;
    stack[top++] = px; stack[top++] = py;
    return true;
  };
  const pending = [];
  push(x, y);
  while (top > 0 || pending.length) {
    if (top === 0) { const p = pending.pop(); push(p[0], p[1]); }
    const py = stack[--top], px0 = stack[--top];
    const row = py * w;
    if (ids[row + px0] !== from || locked(row + px0)) continue;
    let l = px0, r = px0;
    while (l > 0 && ids[row + l - 1] === from && !locked(row + l - 1)) l--;
    while (r < w - 1 && ids[row + r + 1] === from && !locked(row + r + 1)) r++;
    ids.fill(value, row + l, row + r + 1);
    counts[from] -= r - l + 1; counts[value] += r - l + 1;
    if (l < bx0) bx0 = l; if (r > bx1) bx1 = r; if (py < by0) by0 = py; if (py > by1) by1 = py;
    for (const ny of [py - 1, py + 1]) {
      if (ny < 0 || ny >= h) continue;
      const nrow = ny * w;
      let inRun = false;
      for (let i = l; i <= r; i++) {
        const open = ids[nrow + i] === from && !locked(nrow + i);
        if (open && !inRun && !push(i, ny)) pending.push([i, ny]);
        inRun = open;
      }
    }
  }
  markDirty(bx0, by0, bx1, by1);
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
  if (event.button !== 0 || S.panning) return;
  const p = pixelAt(event);
  if (S.tool === "eyedropper") { selectClass(S.ids[p.y * S.w + p.x]); return; }
  if (S.tool === "fill") {
    if (S.ids[p.y * S.w + p.x] === S.current) return;
    pushUndo();
    const started = performance.now();
    floodFill(p.x, p.y, S.current);
    S.lastFillMs = performance.now() - started;
    render();
    strokeEnded();
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
  strokeEnded();
}

function strokeEnded() {
  // The end of a stroke: the live preview of what changed is asked for now, the work saved soon.
  previewFlush();
  scheduleSave();
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

function maskImageData(w = S.w, h = S.h, ids = S.ids) {
  // A fresh, complete image of a map (for export and requests), whatever is still to be drawn.
  const data = new ImageData(w, h);
  const words = new Uint32Array(data.data.buffer);
  for (let i = 0, n = ids.length; i < n; i++) words[i] = S.words[ids[i]];
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
    const { w, ids, maskWords, regionWords, region } = S;
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

function sharesNow() {
  const total = S.w * S.h;
  return S.classes.filter((c) => S.counts[c.id]).map((c) => ({ c, share: S.counts[c.id] / total }))
    .sort((a, b) => b.share - a.share || a.c.id - b.c.id);
}

function updateShares() {
  const list = $("shares");
  list.replaceChildren();
  for (const { c, share } of sharesNow()) {
    const li = document.createElement("li");
    li.dataset.class = c.id;
    const swatch = document.createElement("i");
    swatch.style.background = c.colour;
    li.append(swatch, `${c.name} ${(100 * share).toFixed(1)} %`);
    list.append(li);
  }
  updatePromptPreview();
}

function captionNow() {
  // The training caption, as the server writes it (seg2sat.prompts.caption): classes over MIN_SHARE, largest first.
  const place = $("place").value.trim();
  const names = sharesNow().filter((s) => s.share >= S.minShare).map((s) => s.c.name);
  const head = place ? `Aerial view of ${place}` : "Aerial view";
  return names.length ? `${head}. ${names.join(", ")}.` : `${head}.`;
}

function fullPrompt() {
  const own = $("prompt").value.trim();
  const base = own || captionNow();
  const style = S.styles[$("style").value] || "";
  return style ? `${base.replace(/\.$/, "")}. ${style}` : base;
}

function updatePromptPreview() {
  $("prompt").placeholder = captionNow();
  $("prompt-preview").textContent = fullPrompt();
}

function markStyles() {
  // The offline renderer draws no styles: say so where the styles are chosen.
  for (const o of $("style").options) {
    if (!o.value) continue;
    o.textContent = S.procedural ? `${o.value} (model only)` : o.value;
  }
  $("style").title = S.procedural ? "The offline renderer ignores styles; they need the diffusion model." : "";
}

// ---------------------------------------------------------------- palette and tools

function buildPalette() {
  // One tab stop for the 19 classes; arrow keys move in the group (a radio group's keyboard rules).
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
    const name = document.createElement("span");
    name.textContent = c.name;
    b.append(i, name);
    b.addEventListener("click", () => selectClass(c.id));
    palette.append(b);
    background.append(new Option(c.name, c.id));
  }
  palette.addEventListener("keydown", onPaletteKey);
  background.value = S.background;
  background.addEventListener("change", () => setBackground(Number(background.value)));
  setBackground(S.background);
  selectClass(S.current);
}

function onPaletteKey(event) {
  const step = { ArrowDown: 2, ArrowUp: -2, ArrowRight: 1, ArrowLeft: -1, Home: -99, End: 99 }[event.key];
  if (step === undefined) return;
  event.preventDefault();
  const ids = S.classes.map((c) => c.id);
  const at = Math.min(ids.length - 1, Math.max(0, ids.indexOf(S.current) + step));
  selectClass(ids[at]);
  document.querySelector(`.swatch[data-class="${ids[at]}"]`).focus();
}

function setBackground(id) {
  S.background = id;
  $("background").value = id;
  $("eraser-swatch").style.background = S.classes.find((c) => c.id === id).colour;
  $("tool-eraser").title = `Eraser: paints ${S.classes.find((c) => c.id === id).name}, the background class (E)`;
}

function setBrushSize(size) {
  const slider = $("brush-size");
  S.size = Math.min(Number(slider.max), Math.max(Number(slider.min), size));
  slider.value = S.size;
  $("brush-size-value").textContent = S.size;
}

function selectClass(id) {
  S.current = id;
  for (const b of document.querySelectorAll(".swatch")) {
    const on = Number(b.dataset.class) === id;
    b.setAttribute("aria-checked", String(on));
    b.tabIndex = on ? 0 : -1;
  }
}

function selectTool(tool) {
  S.tool = tool;
  for (const b of document.querySelectorAll("button.tool")) b.setAttribute("aria-pressed", String(b.dataset.tool === tool));
}

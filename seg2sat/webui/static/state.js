// Drawing2Map's state, in one place: the map (class ids, one byte per pixel), its undo history, the tools,
// the inpaint/outpaint mode, the versions made and the job running. Only this module writes it: the
// others read `S` (a read-only view: assigning to it throws) and change it through the functions below,
// which tell the subscribers (`on(topic, fn)`) what changed. It imports nothing, so every other module
// may depend on it and nothing depends the other way.
//
// Topics: "changed" (x0, y0, x1, y1: pixels of the map or region), "resized" (a whole new map), "undo",
// "class", "tool", "background", "brush", "zoom", "mode", "job", "versions" ({replaced}), "shown",
// "stroke" (a stroke or other edit ended), "config", "backend".

const MAX_UNDO = 60;
const MAX_UNDO_BYTES = 64 * 1024 * 1024;  // big canvases keep fewer steps

const model = {
  classes: [], rgb: [], words: null,  // the palette from /api/classes; words: RGBA as one 32-bit word
  maxPixels: Infinity, minSide: 32,   // the one size rule of every map (/api/options)
  styles: {}, fast: null, halo: 0, labels: {},  // labels: request field -> the label the page shows
  procedural: false,                  // the offline renderer answers (no styles)
  w: 512, h: 512, ids: new Uint8Array(512 * 512), counts: new Int32Array(1),
  region: null,       // Uint8Array (1 = redo) while inpainting
  mode: null,         // {kind: "inpaint"|"outpaint", version, base, at, side, pixels}
  current: 1, background: 11, tool: "brush", size: 8,
  zoom: 1,            // 1 = the whole map fits its pane; both panes share it
  stroking: false,    // a pointer stroke is in progress
  undo: [], redo: [],
  edits: 0, savedEdits: 0,  // edits: bumped by every change of the map (autosave, stale imports)
  job: null,          // {id, mode, mask, settings, prompt, from, cancelling}
  versions: [], at: -1, showing: "preview",
};

export const S = new Proxy(model, {
  set(target, key) { throw new TypeError(`S.${String(key)} is changed through state.js's functions only`); },
  deleteProperty(target, key) { throw new TypeError(`S.${String(key)} cannot be deleted`); },
});

const listeners = {};

export function on(topic, fn) {
  (listeners[topic] ||= []).push(fn);
}

function emit(topic, ...args) {
  for (const fn of listeners[topic] || []) fn(...args);
}

// ---------------------------------------------------------------- the server's tables

export function configure(classes, options, labels) {
  // The palette, the size rule and the settings' labels: set once, from /api/classes and /api/options.
  model.classes = classes;
  model.rgb = [[0, 0, 0]];
  for (const c of classes) model.rgb[c.id] = [1, 3, 5].map((i) => parseInt(c.colour.slice(i, i + 2), 16));
  model.rgb[0] = model.rgb[model.rgb.length - 1];
  model.words = Uint32Array.from(model.rgb, ([r, g, b]) => ((255 << 24) | (b << 16) | (g << 8) | r) >>> 0);  // RGBA, little-endian
  model.maxPixels = options.max_pixels || Infinity;
  model.minSide = options.min_side || 1;
  model.fast = options.fast;
  model.halo = options.halo;
  model.styles = Object.fromEntries(options.styles.map((s) => [s.name, s.text]));
  model.labels = labels;
  model.counts = new Int32Array(model.rgb.length);
  emit("config");
}

export function setProcedural(procedural) {
  model.procedural = procedural;
  emit("backend");
}

// ---------------------------------------------------------------- the map

export function setMap(w, h, ids) {
  replaceMap(w, h, ids, model.region ? new Uint8Array(w * h) : null);
}

function replaceMap(w, h, ids, region) {
  // "changed" goes first: whoever redraws a whole new map on "resized" has every change folded in by then.
  model.w = w; model.h = h; model.ids = ids; model.region = region;
  invalidate();
  emit("resized");
}

export function invalidate() {
  // The whole map changed (new size, undo, load): recount the classes, redraw everything.
  model.counts = new Int32Array(model.rgb.length);
  for (let i = 0; i < model.ids.length; i++) model.counts[model.ids[i]]++;
  touched(0, 0, model.w - 1, model.h - 1);
}

export function touched(x0, y0, x1, y1) {
  // Pixels in this rectangle were changed (by paint, paintRegion…): the subscribers redraw that much.
  x0 = Math.max(0, x0); y0 = Math.max(0, y0); x1 = Math.min(model.w - 1, x1); y1 = Math.min(model.h - 1, y1);
  if (x0 > x1 || y0 > y1) return;
  model.edits++;
  emit("changed", x0, y0, x1, y1);
}

export function locked(i) {
  // While inpainting, the map outside the region keeps what the image was made from.
  return model.region !== null && model.mode !== null && model.mode.kind === "inpaint" && !model.region[i];
}

export function paint(i, value) {
  // Every pixel drawn goes through here, so the class shares stay exact without a recount.
  const old = model.ids[i];
  if (old !== value && !locked(i)) { model.counts[old]--; model.counts[value]++; model.ids[i] = value; }
}

export function paintRegion(i, value) {
  if (model.region) model.region[i] = value;
}

export function fillRect(a, b, value) {
  const [x0, x1] = [Math.min(a.x, b.x), Math.max(a.x, b.x)];
  const [y0, y1] = [Math.min(a.y, b.y), Math.max(a.y, b.y)];
  for (let y = y0; y <= y1; y++) for (let i = y * model.w + x0; i <= y * model.w + x1; i++) paint(i, value);
  touched(x0, y0, x1, y1);
}

export function clearMap() {
  for (let i = 0; i < model.ids.length; i++) if (!locked(i)) model.ids[i] = model.background;
  invalidate();
}

export function clearRegion() {
  if (model.region) model.region.fill(0);
  invalidate();
}

export function floodFill(x, y, value) {
  // Scanline fill: whole runs per row and a typed stack, ~20x faster than pixel by pixel on big maps.
  const { w, h, ids, counts } = model;
  const from = ids[y * w + x];
  if (from === value) return;
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
  touched(bx0, by0, bx1, by1);
}

export function beginStroke() {
  model.stroking = true;
}

export function endStroke() {
  // The end of a stroke (or of a fill, an undo, a new map): the live preview and the autosave follow.
  model.stroking = false;
  emit("stroke");
}

// ---------------------------------------------------------------- undo

function snapshot() {
  return { w: model.w, h: model.h, ids: model.ids.slice(), region: model.region ? model.region.slice() : null };
}

function restore(snap) {
  const inpainting = model.mode && model.mode.kind === "inpaint";
  const region = !inpainting ? null
    : snap.region && snap.region.length === snap.w * snap.h ? snap.region.slice() : new Uint8Array(snap.w * snap.h);
  replaceMap(snap.w, snap.h, snap.ids.slice(), region);
}

export function pushUndo() {
  model.undo.push(snapshot());
  const bytes = () => model.undo.reduce((n, u) => n + u.ids.length + (u.region ? u.region.length : 0), 0);
  while (model.undo.length > MAX_UNDO || (model.undo.length > 1 && bytes() > MAX_UNDO_BYTES)) model.undo.shift();
  model.redo = [];
  emit("undo");
}

export function undo() {
  if (!model.undo.length) return;
  model.redo.push(snapshot());
  restore(model.undo.pop());
  emit("undo");
}

export function redo() {
  if (!model.redo.length) return;
  model.undo.push(snapshot());
  restore(model.redo.pop());
  emit("undo");
}

export function forgetUndo() {
  model.undo = [];
  emit("undo");
}

// ---------------------------------------------------------------- tools and view

export function selectClass(id) { model.current = id; emit("class"); }
export function selectTool(tool) { model.tool = tool; emit("tool"); }
export function setBackground(id) { model.background = id; emit("background"); }
export function setBrushSize(size) { model.size = size; emit("brush"); }
export function setZoom(zoom) { model.zoom = Math.min(32, Math.max(1, zoom)); emit("zoom"); }

// ---------------------------------------------------------------- inpaint and outpaint

export function enterMode(kind, version) {
  // The version's own map comes back on the canvas (the one drawn stays one Undo away).
  model.mode = null;
  pushUndo();
  setMap(version.mask.w, version.mask.h, version.mask.ids.slice());
  model.mode = { kind, version, base: { w: version.mask.w, h: version.mask.h, ids: version.mask.ids.slice() }, at: [0, 0] };
  model.region = kind === "inpaint" ? new Uint8Array(model.w * model.h) : null;
  emit("mode");
  invalidate();
}

export function leaveMode() {
  if (!model.mode) return;
  model.mode = null;
  model.region = null;
  emit("mode");
  invalidate();
}

export function growCanvas(w, h, ids, at, side, pixels) {
  // Outpaint: the version's map grown on a side; the version sits at `at` in it.
  pushUndo();
  Object.assign(model.mode, { at, side, pixels });
  setMap(w, h, ids);
}

// ---------------------------------------------------------------- jobs, versions, saving

export function setJob(job) { model.job = job; emit("job"); }
export function cancelling() { if (model.job) model.job.cancelling = true; }

export function addVersions(added) {
  model.versions = model.versions.concat(added);
  emit("versions", { added });
}

export function replaceVersions(list) {
  model.versions = list;
  emit("versions", { replaced: true });
}

export function show(showing, at = model.at) {
  // What the result pane shows: "preview" (the live render) or "result" (version `at`).
  model.showing = showing;
  model.at = at;
  emit("shown");
}

export function markSaved() { model.savedEdits = model.edits; }

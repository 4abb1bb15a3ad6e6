// Drawing2Map: the drawing tools (brush, fill, eraser, picker, rectangle, inpainting region), the palette
// and the brush size. Every pixel goes through state.js (paint, floodFill…), never straight into the map.

import { render, showRect } from "./canvas.js";
import { $ } from "./dom.js";
import {
  S, beginStroke, endStroke, fillRect, floodFill, on, paint, paintRegion, pushUndo, selectClass, selectTool,
  setBackground, setBrushSize, touched,
} from "./state.js";
import { isPanning } from "./view.js";

let drawing = null;  // the stroke in progress: {start, last}

function brushSpan() {
  const r = (S.size - 1) / 2;
  return { r, lo: -Math.floor(r), hi: Math.ceil(r), off: S.size % 2 ? 0 : 0.5 };  // even sizes sit between pixels
}

export function stamp(cx, cy, onRegion, value) {
  // A pixel-exact disc: whole pixels only, so no blended colour can appear.
  const { r, lo, hi, off } = brushSpan();
  const { w, h } = S;
  const put = onRegion ? paintRegion : paint;
  for (let dy = lo; dy <= hi; dy++) {
    const y = cy + dy;
    if (y < 0 || y >= h) continue;
    for (let dx = lo; dx <= hi; dx++) {
      const x = cx + dx;
      if (x < 0 || x >= w) continue;
      const ex = dx - off, ey = dy - off;
      if (ex * ex + ey * ey > r * r + 0.5) continue;
      put(y * w + x, value);
    }
  }
  touched(cx + lo, cy + lo, cx + hi, cy + hi);
}

export function line(x0, y0, x1, y1, onRegion, value) {
  const n = Math.max(Math.abs(x1 - x0), Math.abs(y1 - y0), 1);
  for (let i = 0; i <= n; i++) {
    stamp(Math.round(x0 + ((x1 - x0) * i) / n), Math.round(y0 + ((y1 - y0) * i) / n), onRegion, value);
  }
}

function pixelAt(event) {
  const rect = $("overlay-canvas").getBoundingClientRect();
  const x = Math.floor(((event.clientX - rect.left) / rect.width) * S.w);
  const y = Math.floor(((event.clientY - rect.top) / rect.height) * S.h);
  return { x: Math.min(S.w - 1, Math.max(0, x)), y: Math.min(S.h - 1, Math.max(0, y)),
           inside: x >= 0 && y >= 0 && x < S.w && y < S.h };
}

function strokeTarget() {
  // Which layer a brush-like tool paints (the region or the map), and with what value.
  if (S.tool === "region") return [true, 1];
  if (S.tool === "eraser") return [false, S.background];
  return [false, S.current];
}

function onPointerDown(event) {
  if (event.button !== 0 || isPanning()) return;
  const p = pixelAt(event);
  if (S.tool === "eyedropper") { selectClass(S.ids[p.y * S.w + p.x]); return; }
  if (S.tool === "fill") {
    if (S.ids[p.y * S.w + p.x] === S.current) return;
    pushUndo();
    const started = performance.now();
    floodFill(p.x, p.y, S.current);
    document.body.dataset.fillMs = (performance.now() - started).toFixed(1);  // the page's own measurement
    render();
    endStroke();
    return;
  }
  pushUndo();
  event.target.setPointerCapture(event.pointerId);
  drawing = { start: p, last: p };
  beginStroke();
  if (S.tool === "rect") {
    showRect({ a: p, b: p });
  } else {
    const [onRegion, value] = strokeTarget();
    stamp(p.x, p.y, onRegion, value);
  }
  render();
}

function onPointerMove(event) {
  const p = pixelAt(event);
  showCursor(p);
  if (!drawing) return;
  if (S.tool === "rect") {
    showRect({ a: drawing.start, b: p });
  } else {
    const [onRegion, value] = strokeTarget();
    line(drawing.last.x, drawing.last.y, p.x, p.y, onRegion, value);
    drawing.last = p;
  }
  render();
}

function onPointerUp(event) {
  if (!drawing) return;
  if (S.tool === "rect") {
    fillRect(drawing.start, pixelAt(event), S.current);
    showRect(null);
  }
  drawing = null;
  render();
  endStroke();
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

// ---------------------------------------------------------------- palette and tools

export function buildPalette() {
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
  background.addEventListener("change", () => setBackground(Number(background.value)));
  showBackground();
  showClass();
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

export function brushSize(size) {
  // Within the slider's range.
  const slider = $("brush-size");
  setBrushSize(Math.min(Number(slider.max), Math.max(Number(slider.min), size)));
}

function showBackground() {
  const c = S.classes.find((k) => k.id === S.background);
  $("background").value = S.background;
  $("eraser-swatch").style.background = c.colour;
  $("tool-eraser").title = `Eraser: paints ${c.name}, the background class (E)`;
}

function showClass() {
  for (const b of document.querySelectorAll(".swatch")) {
    const on = Number(b.dataset.class) === S.current;
    b.setAttribute("aria-checked", String(on));
    b.tabIndex = on ? 0 : -1;
  }
}

function showTool() {
  for (const b of document.querySelectorAll("button.tool")) b.setAttribute("aria-pressed", String(b.dataset.tool === S.tool));
}

function showBrush() {
  $("brush-size").value = S.size;
  $("brush-size-value").textContent = S.size;
}

function showUndo() {
  $("undo").disabled = !S.undo.length;
  $("redo").disabled = !S.redo.length;
}

export function bindEditor() {
  const overlay = $("overlay-canvas");
  overlay.addEventListener("pointerdown", onPointerDown);
  overlay.addEventListener("pointermove", onPointerMove);
  overlay.addEventListener("pointerup", onPointerUp);
  overlay.addEventListener("pointercancel", onPointerUp);
  overlay.addEventListener("pointerleave", () => { $("cursor-info").textContent = "\u00a0"; $("brush-cursor").hidden = true; });
  for (const b of document.querySelectorAll("button.tool")) b.addEventListener("click", () => selectTool(b.dataset.tool));
  $("brush-size").addEventListener("input", (e) => brushSize(Number(e.target.value)));
}

on("class", showClass);
on("tool", showTool);
on("background", showBackground);
on("brush", showBrush);
on("undo", showUndo);

// Drawing2Map: zoom and pan, shared by the map and result panes so they always show the same place.

import { $ } from "./dom.js";
import { S, on, setZoom } from "./state.js";

const pan = { syncing: null, panning: null, spaceHeld: false };

export function applyZoom() {
  const view = $("map-view");
  const fit = Math.min((view.clientWidth - 2) / S.w, (view.clientHeight - 2) / S.h);
  const scale = Math.max(fit * S.zoom, 0.01);
  for (const stage of [$("stage"), $("result-stage")]) {
    stage.style.width = `${Math.round(S.w * scale)}px`;
    stage.style.height = `${Math.round(S.h * scale)}px`;
  }
  // The scale the map is shown at (one map pixel = N % of a screen pixel), not the zoom over Fit.
  $("zoom-value").textContent = `${Math.round(100 * scale)} %`;
  $("zoom-value").title = S.zoom === 1 ? "Fit: the whole map in its pane" : `${S.zoom.toFixed(2)} × Fit`;
}

export function isPanning() { return pan.panning !== null; }

export function holdSpace(held) {
  // Space held: a drag pans instead of drawing.
  pan.spaceHeld = held;
  for (const view of [$("map-view"), $("result-view")]) view.classList.toggle("panning", held);
}

function linkScroll(from, to) {
  from.addEventListener("scroll", () => {
    if (pan.syncing === to) { pan.syncing = null; return; }
    pan.syncing = from;
    to.scrollLeft = from.scrollLeft;
    to.scrollTop = from.scrollTop;
  });
}

function bindPan(view) {
  // Middle button, or Space held: drag to pan; Ctrl + wheel zooms.
  view.addEventListener("pointerdown", (event) => {
    if (!(event.button === 1 || pan.spaceHeld)) return;
    event.preventDefault();
    pan.panning = { x: event.clientX, y: event.clientY, left: view.scrollLeft, top: view.scrollTop, view };
    view.setPointerCapture(event.pointerId);
  }, true);
  view.addEventListener("pointermove", (event) => {
    const p = pan.panning;
    if (!p || p.view !== view) return;
    view.scrollLeft = p.left - (event.clientX - p.x);
    view.scrollTop = p.top - (event.clientY - p.y);
  });
  view.addEventListener("pointerup", () => { pan.panning = null; });
  view.addEventListener("wheel", (event) => {
    if (!event.ctrlKey) return;
    event.preventDefault();
    setZoom(S.zoom * (event.deltaY < 0 ? 1.25 : 0.8));
  }, { passive: false });
}

export function bindView() {
  linkScroll($("map-view"), $("result-view"));
  linkScroll($("result-view"), $("map-view"));
  bindPan($("map-view"));
  bindPan($("result-view"));
  window.addEventListener("resize", applyZoom);
  $("zoom-in").addEventListener("click", () => setZoom(S.zoom * 1.5));
  $("zoom-out").addEventListener("click", () => setZoom(S.zoom / 1.5));
  $("zoom-fit").addEventListener("click", () => setZoom(1));
}

on("zoom", applyZoom);
on("resized", applyZoom);

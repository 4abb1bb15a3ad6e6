// Drawing2Map: the result pane and its versions, inpaint and outpaint.
//
// Every image made is a *version*: its picture (a Blob, kept across reloads), the map
// and settings it came from. Inpaint and outpaint always start from the version shown,
// so edits chain: a second inpaint keeps the first, a second outpainted side keeps the first.

import * as api from "./api.js";
import { maskDataURL, regionDataURL } from "./canvas.js";
import { $, dataURL } from "./dom.js";
import { clearError, showError } from "./errors.js";
import { applyFormSettings } from "./form.js";
import { submit } from "./jobs.js";
import { sizeProblem } from "./maps.js";
import {
  S, addVersions, endStroke, enterMode, growCanvas, leaveMode, on, pushUndo, selectTool, setMap, show,
} from "./state.js";

const cards = new WeakMap();  // version -> its card in the gallery

export function generate() { submit("generate", {}, versionsMade); }

async function versionsMade(job, state) {
  const added = [];
  for (const r of state.results) {
    const blob = await api.resultImage(r.url);  // kept in the browser: a reload or a server restart loses nothing
    added.push({ blob, src: URL.createObjectURL(blob), seed: r.seed, prompt: state.prompt, mode: job.mode,
                 width: r.width, height: r.height, mask: job.mask, settings: job.settings });
  }
  const first = S.versions.length;
  addVersions(added);
  showVersion(first);
  if (S.mode) startMode(S.mode.kind);  // the next edit starts from the new version
}

function versionCard(v) {
  const card = $("result-template").content.firstElementChild.cloneNode(true);
  card.dataset.seed = v.seed;
  card.querySelector(".result-image").src = v.src;
  card.querySelector(".result-prompt").textContent = v.prompt;
  card.querySelector(".result-meta").textContent = versionMeta(v);
  card.querySelector(".thumb").addEventListener("click", () => openVersion(S.versions.indexOf(v)));
  cards.set(v, card);
  return card;
}

function showGallery(change) {
  // New versions go on top of the gallery; a replaced list (a reload, a project) is drawn again.
  if (change.replaced) $("results").replaceChildren(...S.versions.map(versionCard).reverse());
  else for (const v of change.added) $("results").prepend(versionCard(v));
  $("gallery-empty").hidden = S.versions.length > 0;
}

function versionMeta(v) {
  const s = v.settings;
  return `seed ${v.seed} · ${s.steps} steps · ${v.width}×${v.height}${s.style ? " · " + s.style : ""}`;
}

function sameMap(a, b) {
  if (a.w !== b.w || a.h !== b.h) return false;
  for (let i = 0; i < a.ids.length; i++) if (a.ids[i] !== b.ids[i]) return false;
  return true;
}

function followMap() {
  // The map changed (a stroke, a sample, New, an import…): a result only ever sits beside the map it came
  // from, so the pane goes back to the live preview until the next result. Inpaint and outpaint keep
  // their version: they edit it.
  if (S.showing !== "result" || S.mode) return;
  const v = S.versions[S.at];
  if (!v || !sameMap({ w: S.w, h: S.h, ids: S.ids }, v.mask)) showPreview();
}

export function showVersion(index) {
  // The result pane shows version `index` beside the map, at the same size and zoom.
  show("result", index);
  const v = S.versions[index];
  $("result-image").src = v.src;
  $("result-mask").src = maskDataURL(v.mask.w, v.mask.h, v.mask.ids);
  $("result-image").hidden = false;
  $("result-mask").hidden = false;
  $("result-mask").style.opacity = $("blend").value / 100;
  $("preview-canvas").hidden = true;
  $("result-title").textContent = `Result ${index + 1} of ${S.versions.length}${v.mode === "generate" ? "" : ` · ${v.mode}`}`;
  $("result-meta").textContent = `from the map on the left · ${versionMeta(v)}`;
  placeResult();
  $("result-meta").title = v.prompt;
  for (const id of ["download", "full-size"]) {
    $(id).href = v.src;
    $(id).setAttribute("aria-disabled", "false");
  }
  $("download").download = `seg2sat-seed${v.seed}.png`;
  $("inpaint").disabled = $("outpaint").disabled = false;
  for (const other of S.versions) if (cards.has(other)) cards.get(other).classList.toggle("current", other === v);
  updateVersionButtons();
}

export function showPreview() {
  show("preview");
  $("preview-canvas").hidden = false;
  $("result-image").hidden = $("result-mask").hidden = true;
  $("result-title").textContent = "Preview";
  $("result-meta").textContent = S.versions.length ? "of the map on the left, live · ◀ ▶ for results"
    : "of the map on the left, live as you draw";
  updateVersionButtons();
}

export function openVersion(index) {
  // Back to an earlier (or later) version: its image, and its map and settings on the left.
  if (index < 0 || index >= S.versions.length) return;
  if (S.mode) leaveMode();
  const v = S.versions[index];
  pushUndo();
  setMap(v.mask.w, v.mask.h, v.mask.ids.slice());
  applyFormSettings(Object.assign({}, v.settings, { seed: v.seed }));
  showVersion(index);
  endStroke();
}

export function updateVersionButtons() {
  $("version-back").disabled = S.at <= 0;
  $("version-next").disabled = S.at < 0 || S.at >= S.versions.length - 1;
  $("version-label").textContent = S.versions.length ? `${S.at + 1} / ${S.versions.length}` : "–";
  $("show-preview").disabled = S.showing === "preview";
}

// ---------------------------------------------------------------- inpaint and outpaint (on the version shown)

export function askMode(kind) {
  // Inpaint and outpaint work on the version's own map: say so before it replaces a different map.
  const v = S.versions[S.at];
  if (!v) return;
  if (!sameMap({ w: S.w, h: S.h, ids: S.ids }, v.mask)) {
    const ok = window.confirm(`${kind === "inpaint" ? "Inpaint" : "Outpaint"} result ${S.at + 1} on its own map? `
      + "It replaces the map on the canvas now (that map stays one Undo away after Done).");
    if (!ok) return;
  }
  startMode(kind);
  showVersion(S.at);
}

function startMode(kind) {
  clearError();
  const version = S.versions[S.at];
  if (!version) return;
  enterMode(kind, version);
  if (kind === "inpaint") selectTool("region");
  else if (S.tool === "region") selectTool("brush");
}

function showMode() {
  // The mode panel, the version under the mask and the region tool follow S.mode.
  const mode = S.mode;
  $("target-image").hidden = !mode;
  $("mask-opacity-field").hidden = !mode;
  $("mask-canvas").style.opacity = mode ? $("mask-opacity").value / 100 : 1;
  $("mode-panel").hidden = !mode;
  $("result-actions").hidden = Boolean(mode);
  $("tool-region").hidden = !mode || mode.kind !== "inpaint";
  if (!mode) {
    if (S.tool === "region") selectTool("brush");
    placeResult();
    return;
  }
  $("target-image").src = mode.version.src;
  $("inpaint-controls").hidden = mode.kind !== "inpaint";
  $("outpaint-controls").hidden = mode.kind !== "outpaint";
  const n = S.versions.indexOf(mode.version) + 1;
  if (mode.kind === "inpaint") {
    $("mode-title").textContent = `Inpaint result ${n}`;
    $("mode-help").textContent = "Paint the region to redo (Region tool), change its classes if you like, then Inpaint region. "
      + "Outside the region the map is locked and the image stays exactly as it is.";
  } else {
    $("mode-title").textContent = `Outpaint result ${n}`;
    $("mode-help").textContent = "Pick a side and a width, Extend canvas, draw the new strip's classes, then Outpaint. "
      + "The image stays exactly as it is.";
  }
  placeTarget();
}

function placeTarget() {
  // The version being edited sits under the mask, at its place in the (possibly grown) canvas.
  if (!S.mode) return;
  placeAt($("target-image"));
  placeResult();
}

function placeAt(img) {
  const { w, h } = S.mode.base;
  Object.assign(img.style, { left: `${(100 * S.mode.at[0]) / S.w}%`, top: `${(100 * S.mode.at[1]) / S.h}%`,
                             width: `${(100 * w) / S.w}%`, height: `${(100 * h) / S.h}%` });
}

function placeResult() {
  // While outpainting, the version shown sits where it is in the grown canvas, at the map pane's scale.
  const editing = S.mode && S.versions[S.at] === S.mode.version;
  for (const img of [$("result-image"), $("result-mask")]) {
    if (editing) placeAt(img); else Object.assign(img.style, { left: "", top: "", width: "", height: "" });
  }
}

export function extendCanvas() {
  // Grow the version's map on one side (or all four); the new strip continues the edge classes until redrawn.
  const side = $("outpaint-side").value;
  const pixels = Number($("outpaint-pixels").value);
  if (!Number.isInteger(pixels) || pixels < 1) {
    showError("The strip to add must be a whole number of pixels, at least 1.");
    return;
  }
  const base = S.mode.base;
  const grow = { left: [pixels, 0, pixels, 0], right: [pixels, 0, 0, 0], top: [0, pixels, 0, pixels],
                 bottom: [0, pixels, 0, 0], all: [2 * pixels, 2 * pixels, pixels, pixels] }[side];
  const w = base.w + grow[0], h = base.h + grow[1], ox = grow[2], oy = grow[3];
  const problem = sizeProblem(w, h);
  if (problem) { showError(`The canvas cannot grow to ${w} × ${h} px: ${problem}.`); return; }
  const ids = new Uint8Array(w * h);
  for (let y = 0; y < h; y++) {
    const sy = Math.min(base.h - 1, Math.max(0, y - oy));
    for (let x = 0; x < w; x++) ids[y * w + x] = base.ids[sy * base.w + Math.min(base.w - 1, Math.max(0, x - ox))];
  }
  growCanvas(w, h, ids, [ox, oy], side, pixels);
  placeTarget();
  endStroke();
}

export async function runInpaint() {
  if (!S.mode || S.mode.kind !== "inpaint") return;
  if (!S.region.some((v) => v)) { showError("Paint the region to redo first (Region tool)."); return; }
  // The version's picture itself is sent, so an edit works after a reload or a server restart too.
  submit("inpaint", { image: await dataURL(S.mode.version.blob), region: regionDataURL() }, versionsMade);
}

export async function runOutpaint() {
  if (!S.mode || S.mode.kind !== "outpaint") return;
  if (!S.mode.side) { showError("Extend the canvas first: pick a side and a width, then press Extend canvas."); return; }
  submit("outpaint", { image: await dataURL(S.mode.version.blob), side: S.mode.side, pixels: S.mode.pixels }, versionsMade);
}

on("changed", followMap);
on("resized", placeTarget);
on("mode", showMode);
on("versions", showGallery);

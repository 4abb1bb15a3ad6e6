// Drawing2Map: wiring and start-up, the page's one entry module (index.html loads only this one; every
// other module comes through its imports). A newcomer gets a sample map, its live preview and a one-line
// hint; a returning user gets back exactly what they left.

import * as api from "./api.js";
import { refreshCaption } from "./caption.js";
import { $ } from "./dom.js";
import { bindEditor, brushSize, buildPalette } from "./editor.js";
import { bindError, clearError, showError } from "./errors.js";
import { applySettings, fieldLabels, newSeed } from "./form.js";
import { cancelJob } from "./jobs.js";
import { clearCanvas, exportMask, importFile, loadSamples, newCanvas } from "./maps.js";
import { bindDropAndLeave, loadSaved, openProject, restoreWork, saveProject, scheduleSave } from "./persist.js";
import { bindPlace, placeDefaults } from "./place.js";
import { previewAll } from "./preview.js";
import {
  askMode, extendCanvas, generate, openVersion, runInpaint, runOutpaint, showPreview, updateVersionButtons,
} from "./results.js";
import {
  S, clearRegion, configure, endStroke, forgetUndo, leaveMode, markSaved, pushUndo, redo, selectTool, setMap,
  setProcedural, setZoom, undo,
} from "./state.js";
import { bindView, holdSpace } from "./view.js";

const HINT_MS = 15000;

function bindEvents() {
  const on = (id, event, handler) => $(id).addEventListener(event, handler);
  on("undo", "click", () => { undo(); endStroke(); });
  on("redo", "click", () => { redo(); endStroke(); });
  on("clear", "click", clearCanvas);
  on("new-canvas", "click", newCanvas);
  on("import-file", "change", (e) => { if (e.target.files[0]) importFile(e.target.files[0]); });
  on("export", "click", exportMask);
  on("save-project", "click", saveProject);
  on("open-project", "change", (e) => { if (e.target.files[0]) openProject(e.target.files[0]); });
  on("generate", "click", generate);
  on("cancel", "click", cancelJob);
  on("error-close", "click", clearError);
  on("dice", "click", newSeed);
  on("blend", "input", (e) => { $("result-mask").style.opacity = e.target.value / 100; });
  on("version-back", "click", () => openVersion(S.at - 1));
  on("version-next", "click", () => openVersion(S.at + 1));
  on("show-preview", "click", showPreview);
  on("inpaint", "click", () => askMode("inpaint"));
  on("outpaint", "click", () => askMode("outpaint"));
  on("clear-region", "click", () => { pushUndo(); clearRegion(); });
  on("run-inpaint", "click", runInpaint);
  on("extend", "click", extendCanvas);
  on("run-outpaint", "click", runOutpaint);
  on("leave-mode", "click", leaveMode);
  on("mask-opacity", "input", (e) => { if (S.mode) $("mask-canvas").style.opacity = e.target.value / 100; });
  for (const id of ["place", "prompt", "negative", "style", "seed", "steps", "guidance", "num-images", "controlnet-scale", "fast"]) {
    on(id, "input", () => { refreshCaption(); scheduleSave(); });
  }
  on("seed", "change", previewAll);
  on("place", "keydown", (e) => { if (e.key === "Enter") { e.preventDefault(); generate(); } });
  document.addEventListener("keydown", onKey);
  document.addEventListener("keyup", (e) => { if (e.key === " ") holdSpace(false); });
  bindEditor();
  bindView();
  bindPlace();
  bindDropAndLeave();
  bindError();
}

function onKey(event) {
  const el = document.activeElement;
  const typing = ["INPUT", "SELECT", "TEXTAREA"].includes(el.tagName) && !["range", "checkbox"].includes(el.type);
  if (typing) return;
  const key = event.key.toLowerCase();
  if ((event.ctrlKey || event.metaKey) && key === "z") { event.preventDefault(); event.shiftKey ? redo() : undo(); endStroke(); return; }
  if ((event.ctrlKey || event.metaKey) && key === "y") { event.preventDefault(); redo(); endStroke(); return; }
  if (key === "enter" && !["BUTTON", "A"].includes(el.tagName)) { event.preventDefault(); generate(); return; }
  if (key === " " && !["BUTTON", "A"].includes(el.tagName)) { event.preventDefault(); holdSpace(true); return; }
  if (key === "[" || key === "]") { brushSize(S.size + (key === "]" ? 1 : -1)); return; }
  if (key === "+" || key === "=") { setZoom(S.zoom * 1.5); return; }
  if (key === "-") { setZoom(S.zoom / 1.5); return; }
  const tools = { b: "brush", f: "fill", e: "eraser", i: "eyedropper", r: "rect" };
  if (!event.ctrlKey && !event.metaKey && !event.altKey && tools[key]) selectTool(tools[key]);
}

async function checkHealth() {
  const el = $("backend-status");
  try {
    const h = await api.health();
    el.classList.toggle("error", h.status === "error");
    setProcedural(h.backend === "procedural" || Boolean(h.message && h.message.includes("procedural")));
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

function welcomeBack() {
  // Said once: gone at the first click or key, or after a while; the usual hint comes back.
  const hint = $("hint"), usual = hint.textContent;
  hint.textContent = "Welcome back: your map and results are as you left them.";
  const back = () => {
    hint.textContent = usual;
    for (const type of ["pointerdown", "keydown"]) document.removeEventListener(type, back, true);
  };
  for (const type of ["pointerdown", "keydown"]) document.addEventListener(type, back, true);
  setTimeout(back, HINT_MS);
}

async function init() {
  bindEvents();
  checkHealth();
  try {
    const [classes, options] = await Promise.all([api.classes(), api.options()]);
    configure(classes, options, fieldLabels(options));
    applySettings(options);
    placeDefaults(options.place);
    buildPalette();
  } catch (err) {
    showError(err.message);
    return;
  }
  selectTool("brush");
  setMap(S.w, S.h, new Uint8Array(S.w * S.h).fill(S.background));
  forgetUndo();
  updateVersionButtons();
  const saved = await loadSaved();
  const samples = await loadSamples();
  if (saved) {
    restoreWork(saved);
    welcomeBack();
  } else if (samples.length) {
    (document.querySelector("#samples button[data-sample=town]") || document.querySelector("#samples button")).click();  // a map, not a blank square
    forgetUndo();
  }
  markSaved();
  document.body.dataset.ready = "true";
}

init();

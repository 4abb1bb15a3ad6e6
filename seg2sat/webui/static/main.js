// Drawing2Map: wiring and start-up. A newcomer gets a sample map, its live preview and
// a one-line hint; a returning user gets back exactly what they left.
"use strict";

function bindEvents() {
  const overlay = $("overlay-canvas");
  overlay.addEventListener("pointerdown", onPointerDown);
  overlay.addEventListener("pointermove", onPointerMove);
  overlay.addEventListener("pointerup", onPointerUp);
  overlay.addEventListener("pointercancel", onPointerUp);
  overlay.addEventListener("pointerleave", () => { $("cursor-info").textContent = "\u00a0"; $("brush-cursor").hidden = true; });
  for (const b of document.querySelectorAll("button.tool")) b.addEventListener("click", () => selectTool(b.dataset.tool));
  const on = (id, event, handler) => $(id).addEventListener(event, handler);
  on("brush-size", "input", (e) => setBrushSize(Number(e.target.value)));
  on("undo", "click", () => { undo(); strokeEnded(); });
  on("redo", "click", () => { redo(); strokeEnded(); });
  on("clear", "click", clearMap);
  on("new-canvas", "click", newCanvas);
  on("import-file", "change", (e) => { if (e.target.files[0]) importFile(e.target.files[0]); });
  on("export", "click", exportMask);
  on("save-project", "click", saveProject);
  on("open-project", "change", (e) => { if (e.target.files[0]) openProject(e.target.files[0]); });
  on("generate", "click", () => submit("generate"));
  on("cancel", "click", cancelJob);
  on("error-close", "click", clearError);
  on("dice", "click", newSeed);
  on("zoom-in", "click", () => setZoom(S.zoom * 1.5));
  on("zoom-out", "click", () => setZoom(S.zoom / 1.5));
  on("zoom-fit", "click", () => setZoom(1));
  on("blend", "input", (e) => { $("result-mask").style.opacity = e.target.value / 100; });
  on("version-back", "click", () => openVersion(V.at - 1));
  on("version-next", "click", () => openVersion(V.at + 1));
  on("show-preview", "click", showPreview);
  on("inpaint", "click", () => askMode("inpaint"));
  on("outpaint", "click", () => askMode("outpaint"));
  on("clear-region", "click", () => { pushUndo(); S.region.fill(0); invalidate(); });
  on("run-inpaint", "click", runInpaint);
  on("extend", "click", extendCanvas);
  on("run-outpaint", "click", runOutpaint);
  on("leave-mode", "click", leaveMode);
  on("mask-opacity", "input", (e) => { if (S.mode) $("mask-canvas").style.opacity = e.target.value / 100; });
  for (const id of ["place", "prompt", "negative", "style", "seed", "steps", "guidance", "num-images", "controlnet-scale", "fast"]) {
    on(id, "input", () => { updatePromptPreview(); scheduleSave(); });
  }
  on("seed", "change", previewAll);
  on("place", "keydown", (e) => { if (e.key === "Enter") { e.preventDefault(); submit("generate"); } });
  linkScroll($("map-view"), $("result-view"));
  linkScroll($("result-view"), $("map-view"));
  bindPan($("map-view"));
  bindPan($("result-view"));
  window.addEventListener("resize", applyZoom);
  document.addEventListener("keydown", onKey);
  document.addEventListener("keyup", (e) => { if (e.key === " ") { S.spaceHeld = false; setPanning(false); } });
  bindDropAndLeave();
  bindError();
}

function setPanning(on) {
  for (const view of [$("map-view"), $("result-view")]) view.classList.toggle("panning", on);
}

function onKey(event) {
  const el = document.activeElement;
  const typing = ["INPUT", "SELECT", "TEXTAREA"].includes(el.tagName) && !["range", "checkbox"].includes(el.type);
  if (typing) return;
  const key = event.key.toLowerCase();
  if ((event.ctrlKey || event.metaKey) && key === "z") { event.preventDefault(); event.shiftKey ? redo() : undo(); strokeEnded(); return; }
  if ((event.ctrlKey || event.metaKey) && key === "y") { event.preventDefault(); redo(); strokeEnded(); return; }
  if (key === "enter" && !["BUTTON", "A"].includes(el.tagName)) { event.preventDefault(); submit("generate"); return; }
  if (key === " " && !["BUTTON", "A"].includes(el.tagName)) { event.preventDefault(); S.spaceHeld = true; setPanning(true); return; }
  if (key === "[" || key === "]") { setBrushSize(S.size + (key === "]" ? 1 : -1)); return; }
  if (key === "+" || key === "=") { setZoom(S.zoom * 1.5); return; }
  if (key === "-") { setZoom(S.zoom / 1.5); return; }
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
  S.maxPixels = options.max_pixels || Infinity;
  S.minSide = options.min_side || 1;
  for (const id of ["canvas-width", "canvas-height", "osm-size"]) $(id).min = S.minSide;
  S.fast = options.fast;
  S.minShare = options.min_share;
  S.halo = options.halo;
  S.styles = Object.fromEntries(options.styles.map((s) => [s.name, s.text]));
  // Error messages name the API's fields; the page says them with its own labels.
  const label = (name) => options.settings[name].label;
  S.labels = { steps: label("steps"), guidance_scale: label("guidance_scale"), num_images: label("num_images"),
    controlnet_conditioning_scale: label("controlnet_scale"), controlnet_scale: label("controlnet_scale"),
    cache_interval: "Fast", seed: "Seed", place: "Place", prompt: "Prompt", negative_prompt: "Negative prompt",
    style: "Style", mask: "Map", file: "Imported file", image: "Image", region: "Region", side: "Side", pixels: "Pixels" };
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
  setTimeout(back, S.hintMs || 15000);
}

async function init() {
  bindEvents();
  checkHealth();
  try {
    const [classes, options] = await Promise.all([api("/api/classes"), api("/api/options")]);
    S.classes = classes;
    S.rgb = [[0, 0, 0]];
    for (const c of classes) S.rgb[c.id] = [1, 3, 5].map((i) => parseInt(c.colour.slice(i, i + 2), 16));
    S.rgb[0] = S.rgb[S.rgb.length - 1];
    S.words = Uint32Array.from(S.rgb, ([r, g, b]) => ((255 << 24) | (b << 16) | (g << 8) | r) >>> 0);  // RGBA, little-endian
    const style = $("style");
    style.append(new Option("none", ""));
    for (const s of options.styles) style.append(new Option(s.name, s.name));
    style.value = "photorealistic";
    markStyles();
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
  updateVersionButtons();
  const saved = await loadSaved();
  const samples = await loadSamples();
  if (saved) {
    restoreWork(saved);
    welcomeBack();
  } else if (samples.length) {
    (document.querySelector("#samples button[data-sample=town]") || document.querySelector("#samples button")).click();  // a map, not a blank square
    S.undo = [];
    updateUndoButtons();
  }
  S.savedEdits = S.edits;
  document.body.dataset.ready = "true";
}

init();

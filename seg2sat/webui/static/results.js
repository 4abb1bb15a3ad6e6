// Drawing2Map: generation, the result pane and its versions, inpaint and outpaint.
//
// Every image made is a *version*: its picture (a Blob, kept across reloads), the map
// and settings it came from. Inpaint and outpaint always start from the version shown,
// so edits chain: a second inpaint keeps the first, a second outpainted side keeps the first.
"use strict";

const POLL_MS = 250;
const V = { list: [], at: -1, showing: "preview" };

// ---------------------------------------------------------------- the request

function settings() {
  // What the user sees is what is sent: a typed seed is used as typed; an empty field means random.
  const seedValue = $("seed").value.trim();
  const own = $("prompt").value.trim();
  return {
    place: $("place").value,
    prompt: own || null,
    negative_prompt: $("negative").value.trim() || null,
    style: $("style").value || null,
    seed: seedValue === "" ? null : seedValue,  // as text: 19-digit seeds stay exact
    steps: Number($("steps").value),
    guidance_scale: Number($("guidance").value),
    controlnet_conditioning_scale: Number($("controlnet-scale").value),
    num_images: Number($("num-images").value),
    cache_interval: $("fast").checked ? S.fast.cache_interval : 1,
  };
}

function applyFormSettings(s) {
  $("place").value = s.place || "";
  $("prompt").value = s.prompt || "";
  $("negative").value = s.negative_prompt || "";
  $("style").value = s.style || "";
  if (s.seed !== null && s.seed !== undefined) $("seed").value = s.seed;
  $("steps").value = s.steps;
  $("guidance").value = s.guidance_scale;
  $("controlnet-scale").value = s.controlnet_conditioning_scale;
  $("num-images").value = s.num_images || 1;
  $("fast").checked = (s.cache_interval || 1) > 1;
  updatePromptPreview();
}

function newSeed() {
  $("seed").value = Math.floor(Math.random() * 2 ** 32);
  previewAll();
  scheduleSave();
}

function numberProblem() {
  // An empty or unreadable number field (the browser reads "abc" as "") is named as the page labels it,
  // instead of being sent as 0.
  for (const input of document.querySelectorAll("input[data-setting]")) {
    if (input.value.trim() === "" || !Number.isFinite(Number(input.value))) {
      const label = input.closest("label").textContent.trim();
      return [input, `${label}: type a number from ${input.min} to ${input.max}.`];
    }
  }
  return null;
}

async function submit(mode, extra = {}) {
  if (S.job) { showError("A job is already running; wait for it or cancel it."); return; }
  const bad = numberProblem();
  if (bad) { showError(bad[1], bad[0]); return; }
  clearError();
  const mask = { w: S.w, h: S.h, ids: S.ids.slice() };
  const body = Object.assign(settings(), { mask: maskDataURL() }, extra);
  let answer;
  try {
    answer = await api(`/api/${mode}`, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    });
  } catch (err) {
    showError(err.message);
    return;
  }
  S.job = { id: answer.job.id, mode, mask, settings: body, prompt: answer.prompt, from: V.at };
  $("cancel").disabled = false;
  const focusWasOnRun = !document.activeElement || ["BODY", "BUTTON"].includes(document.activeElement.tagName);
  setBusy(true);
  // Generate is disabled while the job runs: the focus goes to Cancel, not to the page's body.
  if (focusWasOnRun) $("cancel").focus({ preventScroll: true });
  $("progress-text").textContent = "Starting…";
  poll();
}

function progressText(state) {
  // Counted in what the user asked for: images and steps (and tiles, when the map is bigger than one).
  const n = state.images, steps = state.steps, k = Math.max(state.step, 1);
  if (state.backend === "procedural") return `Rendering image ${Math.min(n, k)} of ${n} (offline renderer: no steps)`;
  const perImage = Math.max(1, state.total / n);
  const tiles = Math.max(1, Math.round(perImage / steps));
  const image = Math.min(n, Math.floor((k - 1) / perImage) + 1);
  const step = Math.min(steps, Math.floor(((k - 1) % perImage) / tiles) + 1);
  const tileNote = tiles > 1 ? ` · ${tiles} tiles per step (the map is larger than the model's tile)` : "";
  return `Image ${image} of ${n} · step ${step} of ${steps}${tileNote}`;
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
  if (state.status === "queued" && !job.cancelling) {
    $("progress-text").textContent = `Waiting for the device (${state.queue_position} ahead)…`;
  } else if (state.status === "running" && !job.cancelling) {
    $("progress-text").textContent = progressText(state);
  }
  if (state.status === "done") {
    $("progress-text").textContent = `Done: ${state.results.length} image${state.results.length > 1 ? "s" : ""}`;
    finishJob();
    await addVersions(job, state);
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
  const hadFocus = document.activeElement === $("cancel") || document.activeElement === document.body;
  S.job = null;
  $("cancel").disabled = true;
  setBusy(false);
  if (hadFocus) $("generate").focus({ preventScroll: true });
}

function setBusy(busy) {
  for (const id of ["generate", "run-inpaint", "run-outpaint"]) $(id).disabled = busy;
}

async function cancelJob() {
  if (!S.job) return;
  S.job.cancelling = true;
  $("progress-text").textContent = "Cancelling…";
  try { await api(`/api/jobs/${S.job.id}/cancel`, { method: "POST" }); } catch (err) { showError(err.message); }
}

// ---------------------------------------------------------------- versions and the result pane

async function addVersions(job, state) {
  const added = [];
  for (const r of state.results) {
    const blob = await (await fetch(r.url)).blob();  // kept in the browser: a reload or a server restart loses nothing
    added.push({ blob, src: URL.createObjectURL(blob), seed: r.seed, prompt: state.prompt, mode: job.mode,
                 width: r.width, height: r.height, mask: job.mask, settings: job.settings });
  }
  V.list.push(...added);
  for (const v of added) $("results").prepend(versionCard(v));
  $("gallery-empty").hidden = true;
  showVersion(V.list.length - added.length);
  if (S.mode) enterMode(S.mode.kind);  // the next edit starts from the new version
  scheduleSave();
}

function versionCard(v) {
  const card = $("result-template").content.firstElementChild.cloneNode(true);
  card.dataset.seed = v.seed;
  card.querySelector(".result-image").src = v.src;
  card.querySelector(".result-prompt").textContent = v.prompt;
  card.querySelector(".result-meta").textContent = versionMeta(v);
  card.querySelector(".thumb").addEventListener("click", () => openVersion(V.list.indexOf(v)));
  v.card = card;
  return card;
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
  if (V.showing !== "result" || S.mode) return;
  const v = V.list[V.at];
  if (!v || !sameMap({ w: S.w, h: S.h, ids: S.ids }, v.mask)) showPreview();
}

function showVersion(index) {
  // The result pane shows version `index` beside the map, at the same size and zoom.
  V.at = index;
  V.showing = "result";
  const v = V.list[index];
  $("result-image").src = v.src;
  $("result-mask").src = maskDataURL(v.mask.w, v.mask.h, v.mask.ids);
  $("result-image").hidden = false;
  $("result-mask").hidden = false;
  $("result-mask").style.opacity = $("blend").value / 100;
  $("preview-canvas").hidden = true;
  $("result-title").textContent = `Result ${index + 1} of ${V.list.length}${v.mode === "generate" ? "" : ` · ${v.mode}`}`;
  $("result-meta").textContent = `from the map on the left · ${versionMeta(v)}`;
  placeResult();
  $("result-meta").title = v.prompt;
  for (const id of ["download", "full-size"]) {
    $(id).href = v.src;
    $(id).setAttribute("aria-disabled", "false");
  }
  $("download").download = `seg2sat-seed${v.seed}.png`;
  $("inpaint").disabled = $("outpaint").disabled = false;
  for (const other of V.list) if (other.card) other.card.classList.toggle("current", other === v);
  updateVersionButtons();
}

function showPreview() {
  V.showing = "preview";
  $("preview-canvas").hidden = false;
  $("result-image").hidden = $("result-mask").hidden = true;
  $("result-title").textContent = "Preview";
  $("result-meta").textContent = V.list.length ? "of the map on the left, live · ◀ ▶ for results"
    : "of the map on the left, live as you draw";
  updateVersionButtons();
}

function openVersion(index) {
  // Back to an earlier (or later) version: its image, and its map and settings on the left.
  if (index < 0 || index >= V.list.length) return;
  if (S.mode) leaveMode();
  const v = V.list[index];
  pushUndo();
  setMap(v.mask.w, v.mask.h, v.mask.ids.slice());
  applyFormSettings(Object.assign({}, v.settings, { seed: v.seed }));
  showVersion(index);
  strokeEnded();
}

function updateVersionButtons() {
  $("version-back").disabled = V.at <= 0;
  $("version-next").disabled = V.at < 0 || V.at >= V.list.length - 1;
  $("version-label").textContent = V.list.length ? `${V.at + 1} / ${V.list.length}` : "–";
  $("show-preview").disabled = V.showing === "preview";
}

// ---------------------------------------------------------------- inpaint and outpaint (on the version shown)

function askMode(kind) {
  // Inpaint and outpaint work on the version's own map: say so before it replaces a different map.
  const v = V.list[V.at];
  if (!v) return;
  if (!sameMap({ w: S.w, h: S.h, ids: S.ids }, v.mask)) {
    const ok = window.confirm(`${kind === "inpaint" ? "Inpaint" : "Outpaint"} result ${V.at + 1} on its own map? `
      + "It replaces the map on the canvas now (that map stays one Undo away after Done).");
    if (!ok) return;
  }
  enterMode(kind);
  showVersion(V.at);
}

function enterMode(kind) {
  clearError();
  const version = V.list[V.at];
  if (!version) return;
  S.mode = null;
  pushUndo();
  setMap(version.mask.w, version.mask.h, version.mask.ids.slice());
  S.mode = { kind, version, base: { w: version.mask.w, h: version.mask.h, ids: version.mask.ids.slice() }, at: [0, 0] };
  const target = $("target-image");
  target.src = version.src;
  target.hidden = false;
  $("mask-opacity-field").hidden = false;
  $("mask-canvas").style.opacity = $("mask-opacity").value / 100;
  $("mode-panel").hidden = false;
  $("result-actions").hidden = true;
  $("inpaint-controls").hidden = kind !== "inpaint";
  $("outpaint-controls").hidden = kind !== "outpaint";
  $("tool-region").hidden = kind !== "inpaint";
  if (kind === "inpaint") {
    S.region = new Uint8Array(S.w * S.h);
    $("mode-title").textContent = `Inpaint result ${V.at + 1}`;
    $("mode-help").textContent = "Paint the region to redo (Region tool), change its classes if you like, then Inpaint region. "
      + "Outside the region the map is locked and the image stays exactly as it is.";
    selectTool("region");
  } else {
    S.region = null;
    $("mode-title").textContent = `Outpaint result ${V.at + 1}`;
    $("mode-help").textContent = "Pick a side and a width, Extend canvas, draw the new strip's classes, then Outpaint. "
      + "The image stays exactly as it is.";
    if (S.tool === "region") selectTool("brush");
  }
  placeTarget();
  invalidate();
}

function leaveMode() {
  if (!S.mode) return;
  S.mode = null;
  S.region = null;
  $("target-image").hidden = true;
  $("mask-opacity-field").hidden = true;
  $("mask-canvas").style.opacity = 1;
  $("mode-panel").hidden = true;
  $("result-actions").hidden = false;
  $("tool-region").hidden = true;
  if (S.tool === "region") selectTool("brush");
  placeResult();
  invalidate();
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
  const editing = S.mode && V.list[V.at] === S.mode.version;
  for (const img of [$("result-image"), $("result-mask")]) {
    if (editing) placeAt(img); else Object.assign(img.style, { left: "", top: "", width: "", height: "" });
  }
}

function extendCanvas() {
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
  pushUndo();
  Object.assign(S.mode, { at: [ox, oy], side, pixels });
  setMap(w, h, ids);
  strokeEnded();
}

async function runInpaint() {
  if (!S.mode || S.mode.kind !== "inpaint") return;
  if (!S.region.some((v) => v)) { showError("Paint the region to redo first (Region tool)."); return; }
  // The version's picture itself is sent, so an edit works after a reload or a server restart too.
  submit("inpaint", { image: await dataURL(S.mode.version.blob), region: regionDataURL() });
}

async function runOutpaint() {
  if (!S.mode || S.mode.kind !== "outpaint") return;
  if (!S.mode.side) { showError("Extend the canvas first: pick a side and a width, then press Extend canvas."); return; }
  submit("outpaint", { image: await dataURL(S.mode.version.blob), side: S.mode.side, pixels: S.mode.pixels });
}

// Drawing2Map: a generation job from the request to its images: POST /api/generate (or inpaint,
// outpaint) with the map as class ids, the progress polled, Cancel, and the images handed to `done`.

import * as api from "./api.js";
import { $, bytesToBase64 } from "./dom.js";
import { clearError, showError } from "./errors.js";
import { numberProblem, settings } from "./form.js";
import { S, cancelling, setJob } from "./state.js";

const POLL_MS = 250;

export async function submit(mode, extra, done) {
  // The map goes as its class ids (as the live preview sends them): nothing for the server to snap.
  if (S.job) { showError("A job is already running; wait for it or cancel it."); return; }
  const bad = numberProblem();
  if (bad) { showError(bad[1], bad[0]); return; }
  clearError();
  const mask = { w: S.w, h: S.h, ids: S.ids.slice() };
  const form = settings();
  const body = Object.assign({}, form, { ids: bytesToBase64(mask.ids), size: [mask.w, mask.h] }, extra);
  let answer;
  try {
    answer = await api.startJob(mode, body);
  } catch (err) {
    showError(err.message);
    return;
  }
  setJob({ id: answer.job.id, mode, mask, settings: form, prompt: answer.prompt, from: S.at });
  $("cancel").disabled = false;
  const focusWasOnRun = !document.activeElement || ["BODY", "BUTTON"].includes(document.activeElement.tagName);
  setBusy(true);
  // Generate is disabled while the job runs: the focus goes to Cancel, not to the page's body.
  if (focusWasOnRun) $("cancel").focus({ preventScroll: true });
  $("progress-text").textContent = "Starting…";
  poll(done);
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

async function poll(done) {
  const job = S.job;
  if (!job) return;
  let state;
  try {
    state = await api.job(job.id);
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
    await done(job, state);
  } else if (state.status === "error") {
    $("progress-text").textContent = "Failed";
    finishJob();
    showError(state.error);
  } else if (state.status === "cancelled") {
    $("progress-text").textContent = "Cancelled";
    bar.value = 0;
    finishJob();
  } else {
    setTimeout(() => poll(done), POLL_MS);
  }
}

function finishJob() {
  const hadFocus = document.activeElement === $("cancel") || document.activeElement === document.body;
  setJob(null);
  $("cancel").disabled = true;
  setBusy(false);
  if (hadFocus) $("generate").focus({ preventScroll: true });
}

function setBusy(busy) {
  for (const id of ["generate", "run-inpaint", "run-outpaint"]) $(id).disabled = busy;
}

export async function cancelJob() {
  if (!S.job) return;
  cancelling();
  $("progress-text").textContent = "Cancelling…";
  try { await api.cancelJob(S.job.id); } catch (err) { showError(err.message); }
}

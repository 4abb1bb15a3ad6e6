// Drawing2Map: the error banner. It says what went wrong in the page's words (its labels, never the API's
// field names or Python internals), never covers Generate or the field it names, and goes away on Esc,
// after a while, or when that field is changed.

import { $ } from "./dom.js";
import { S } from "./state.js";

const ERROR_MS = 10000;  // an error leaves on its own after this (plus a moment per character to read it)

function inWords(message) {
  // The API names fields as it spells them ("controlnet_conditioning_scale: …"); the page says its labels.
  const m = /^([a-z_.]+): ([\s\S]*)$/.exec(message || "");
  if (!m || !S.labels[m[1]]) return message;
  return `${S.labels[m[1]]}: ${m[2]}`;
}

// The page's input for each API field an error may name: fixing that field closes the error.
const FIELD_INPUTS = { steps: "steps", guidance_scale: "guidance", num_images: "num-images",
  controlnet_conditioning_scale: "controlnet-scale", controlnet_scale: "controlnet-scale", seed: "seed",
  negative_prompt: "negative", prompt: "prompt", style: "style", cache_interval: "fast" };
const E = { timer: null, field: null };

export function showError(message, field = null) {
  // A banner that never covers the prompt bar; it goes on Esc, after a while, or when its field is fixed.
  const text = inWords(message);
  clearError();
  $("error-text").textContent = text;
  $("error").hidden = false;
  document.body.classList.add("has-error");
  const m = /^([a-z_.]+): /.exec(message || "");
  E.field = field || (m && FIELD_INPUTS[m[1]] ? $(FIELD_INPUTS[m[1]]) : null);
  if (E.field) E.field.setAttribute("aria-invalid", "true");
  placeErrorAndField();
  dismissLater();
}

function dismissLater() {
  clearTimeout(E.timer);
  E.timer = setTimeout(clearError, ERROR_MS + 40 * $("error-text").textContent.length);
}

export function clearError() {
  clearTimeout(E.timer);
  $("error").hidden = true;
  document.body.classList.remove("has-error");
  if (E.field) E.field.removeAttribute("aria-invalid");
  E.field = null;
}

function overlaps(a, b) {
  return a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom;
}

function placeError() {
  // At the bottom of the window, unless that covers the prompt bar (Generate) or the field to fix: then at
  // the top. False when both would cover one of them.
  const banner = $("error");
  if (banner.hidden) return true;
  const avoid = [document.querySelector(".prompt-bar"), E.field].filter(Boolean).map((el) => el.getBoundingClientRect());
  const clear = () => !avoid.some((r) => overlaps(r, banner.getBoundingClientRect()));
  banner.classList.remove("at-top");
  if (clear()) return true;
  banner.classList.add("at-top");
  return clear();
}

function placeErrorAndField() {
  // The field an error names is brought into view clear of the banner, so it can be fixed at once.
  if (placeError() || !E.field) return;
  E.field.scrollIntoView({ block: "center" });
  placeError();
}

export function bindError() {
  const banner = $("error");
  banner.addEventListener("mouseenter", () => clearTimeout(E.timer));  // not while it is being read
  banner.addEventListener("mouseleave", dismissLater);
  window.addEventListener("scroll", placeError, { passive: true });
  window.addEventListener("resize", placeError);
  document.addEventListener("keydown", (e) => { if (e.key === "Escape" && !banner.hidden) clearError(); });
  document.addEventListener("input", (e) => { if (E.field && e.target === E.field) clearError(); });
  document.addEventListener("change", (e) => { if (E.field && e.target === E.field) clearError(); });
}

// Drawing2Map: the settings form (place, prompt, style, seed, numbers) read into a request body and
// written back from a version or a saved project. What the user sees is what is sent.

import { refreshCaption } from "./caption.js";
import { $ } from "./dom.js";
import { S, on } from "./state.js";

export function settings() {
  // A typed seed is used as typed; an empty field means random.
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

export function applyFormSettings(s) {
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
  refreshCaption();
}

export function newSeed() {
  // As if typed: the preview redraws with it and the work is kept (the page's own input/change handlers).
  const seed = $("seed");
  seed.value = Math.floor(Math.random() * 2 ** 32);
  seed.dispatchEvent(new Event("input", { bubbles: true }));
  seed.dispatchEvent(new Event("change", { bubbles: true }));
}

export function previewSeed() {
  const seed = Number($("seed").value);
  return Number.isSafeInteger(seed) && seed >= 0 ? seed : 0;
}

export function numberProblem() {
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

export function applySettings(options) {
  // Labels, defaults and ranges of the number inputs: the core's table (seg2sat.request), and the styles.
  for (const input of document.querySelectorAll("input[data-setting]")) {
    const s = options.settings[input.dataset.setting];
    Object.assign(input, { min: s.low, max: s.high, value: s.default });
    if (s.integer) input.step = 1;
    document.querySelector(`[data-label="${input.dataset.setting}"]`).textContent = s.label;
  }
  for (const id of ["canvas-width", "canvas-height", "osm-size"]) $(id).min = options.min_side || 1;
  const style = $("style");
  style.append(new Option("none", ""));
  for (const s of options.styles) style.append(new Option(s.name, s.name));
  style.value = "photorealistic";
  markStyles();
}

export function fieldLabels(options) {
  // Error messages name the API's fields; the page says them with its own labels.
  const label = (name) => options.settings[name].label;
  return { steps: label("steps"), guidance_scale: label("guidance_scale"), num_images: label("num_images"),
    controlnet_conditioning_scale: label("controlnet_scale"), controlnet_scale: label("controlnet_scale"),
    cache_interval: "Fast", seed: "Seed", place: "Place", prompt: "Prompt", negative_prompt: "Negative prompt",
    style: "Style", mask: "Map", ids: "Map", size: "Map size", file: "Imported file", image: "Image",
    region: "Region", side: "Side", pixels: "Pixels" };
}

function markStyles() {
  // The offline renderer draws no styles: say so where the styles are chosen.
  for (const o of $("style").options) {
    if (!o.value) continue;
    o.textContent = S.procedural ? `${o.value} (model only)` : o.value;
  }
  $("style").title = S.procedural ? "The offline renderer ignores styles; they need the diffusion model." : "";
}

on("backend", markStyles);

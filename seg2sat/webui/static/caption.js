// Drawing2Map: the caption and the prompt the model reads, as the server writes them. The rule (classes
// over the minimum share, largest first, the style appended) lives in Python only (seg2sat/prompts.py);
// the page sends its class counts to POST /api/caption a moment after the map or the fields change, and
// shows the answer. A newer question cancels an older one; the line is aria-busy until it is answered.

import * as api from "./api.js";
import { $ } from "./dom.js";
import { S, on } from "./state.js";

const DEBOUNCE_MS = 120;
const K = { timer: null, abort: null, asked: 0, answered: 0 };  // asked: bumped by every change

export function refreshCaption() {
  // Debounced: a stroke changes the map at every pointer move; the caption follows when it pauses.
  clearTimeout(K.timer);
  if (K.asked++ === K.answered) $("prompt-preview").setAttribute("aria-busy", "true");  // once, not at every move
  K.timer = setTimeout(ask, DEBOUNCE_MS);
}

function counts() {
  const out = {};
  for (const c of S.classes) if (S.counts[c.id]) out[c.id] = S.counts[c.id];
  return out;
}

async function ask() {
  if (K.abort) K.abort.abort();
  const abort = new AbortController();
  const asked = K.asked;
  K.abort = abort;
  const query = { place: $("place").value, prompt: $("prompt").value, style: $("style").value || null, counts: counts() };
  try {
    const answer = await api.caption(query, abort.signal);
    $("prompt").placeholder = answer.caption;
    $("prompt-preview").textContent = answer.prompt;
  } catch (err) {
    if (err.name === "AbortError") return;
    $("prompt-preview").textContent = `(not known just now: ${err.message})`;
  }
  if (asked === K.asked) {  // no newer change is waiting: the line says the map as it is
    K.abort = null;
    K.answered = asked;
    $("prompt-preview").setAttribute("aria-busy", "false");
  }
}

on("changed", refreshCaption);

// Drawing2Map: the one client of the server's HTTP API (seg2sat/webui/api.py). Every request goes out
// from here: same-origin only, JSON bodies as application/json (the server refuses other content types
// on its JSON routes, and form uploads that do not carry this page's Origin: seg2sat/serving/guard.py),
// and every refusal comes back as an Error whose message is the server's sentence ({"error": …}).
// Callers that may be overtaken pass an AbortSignal; an aborted request rejects with an AbortError.

async function send(path, { method = "GET", json, form, signal } = {}) {
  const init = { method, signal, mode: "same-origin", credentials: "same-origin", headers: { Accept: "application/json" } };
  if (json !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(json);
  } else if (form !== undefined) {
    init.body = form;  // multipart: the browser adds its boundary and this page's Origin
  }
  try {
    return await fetch(path, init);
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new Error(`The server cannot be reached (${err.message}). Is it still running?`);
  }
}

async function refusal(response) {
  const body = await response.json().catch(() => null);
  return new Error((body && body.error) || `The server answered HTTP ${response.status}.`);
}

async function call(path, options) {
  // A JSON answer, or the server's sentence as an Error: never a silent failure.
  const response = await send(path, options);
  if (!response.ok) throw await refusal(response);
  return response.json();
}

export const health = () => call("/api/health");
export const classes = () => call("/api/classes");
export const options = () => call("/api/options");
export const samples = () => call("/api/samples");
export const sample = (name) => call(`/api/samples/${encodeURIComponent(name)}`);
export const job = (id) => call(`/api/jobs/${encodeURIComponent(id)}`);
export const cancelJob = (id) => call(`/api/jobs/${encodeURIComponent(id)}/cancel`, { method: "POST" });

export function importMask(file) {
  const form = new FormData();
  form.append("file", file);
  return call("/api/masks/import", { method: "POST", form });
}

export const place = (query) => call("/api/place", { method: "POST", json: query });

export const startJob = (mode, body) => call(`/api/${mode}`, { method: "POST", json: body });

export const caption = (query, signal) => call("/api/caption", { method: "POST", json: query, signal });

export async function resultImage(url) {
  // A result's PNG, kept by the page as a Blob (a reload or a server restart loses nothing).
  const response = await send(url);
  if (!response.ok) throw await refusal(response);
  return response.blob();
}

export async function previewTile(body, signal) {
  // The offline render of a rectangle of the map: a Blob, or null when the server is busy (send it again).
  const response = await send("/api/preview", { method: "POST", json: body, signal });
  if (response.status === 429) return null;
  if (!response.ok) throw await refusal(response);
  return response.blob();
}

// Drawing2Map: nothing lost. The map, the settings and every version are kept in the
// browser (IndexedDB: pictures as Blobs) a moment after each change, and come back on
// reload; a project file holds the same in one JSON file to save and open elsewhere.
// Dropping a mask or a project file on the page opens it instead of navigating away.
// #saved-note says where the work stands (its data-state: "pending" until kept, then "kept").

import { $, base64ToBytes, bytesToBase64, dataURL, download } from "./dom.js";
import { brushSize } from "./editor.js";
import { clearError, showError } from "./errors.js";
import { applyFormSettings, settings } from "./form.js";
import { importFile } from "./maps.js";
import { showPreview, showVersion, updateVersionButtons } from "./results.js";
import {
  S, leaveMode, markSaved, on, pushUndo, replaceVersions, selectClass, selectTool, setBackground, setMap, setZoom,
} from "./state.js";

const DB_NAME = "drawing2map", STORE = "work", KEY = "current";
const SAVE_DELAY_MS = 300;
let saveTimer = null;

function openDb() {
  return new Promise((resolve, reject) => {
    const req = indexedDB.open(DB_NAME, 1);
    req.onupgradeneeded = () => req.result.createObjectStore(STORE);
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

async function dbCall(mode, work) {
  const db = await openDb();
  return new Promise((resolve, reject) => {
    const tx = db.transaction(STORE, mode);
    const req = work(tx.objectStore(STORE));
    tx.oncomplete = () => { db.close(); resolve(req.result); };
    tx.onerror = () => { db.close(); reject(tx.error); };
  });
}

function workNow() {
  // Everything a reload must bring back (the undo history is left out: it can be large).
  return {
    map: { w: S.w, h: S.h, ids: S.ids.slice() },
    settings: settings(), background: S.background, zoom: S.zoom, current: S.current, tool: S.tool, size: S.size,
    versions: S.versions.map(({ blob, seed, prompt, mode, width, height, mask, settings }) =>
      ({ blob, seed, prompt, mode, width, height, mask, settings })),
    at: S.at, showing: S.showing,
  };
}

export function scheduleSave() {
  clearTimeout(saveTimer);
  $("saved-note").dataset.state = "pending";
  saveTimer = setTimeout(saveNow, SAVE_DELAY_MS);
}

async function saveNow() {
  clearTimeout(saveTimer);
  saveTimer = null;
  try {
    await dbCall("readwrite", (store) => store.put(workNow(), KEY));
    markSaved();
    const at = new Date().toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    $("saved-note").textContent = `Kept in this browser at ${at}.`;
    if (saveTimer === null) $("saved-note").dataset.state = "kept";
  } catch (err) {
    $("saved-note").textContent = `Not kept in this browser (${err.message}): save a project file.`;
    $("saved-note").dataset.state = "failed";
  }
}

export async function loadSaved() {
  try {
    return await dbCall("readonly", (store) => store.get(KEY));
  } catch (err) {
    return null;
  }
}

export function restoreWork(work) {
  // The saved (or opened) work replaces the page's: map, settings, versions.
  restoring = true;
  try { restore(work); } finally { restoring = false; }
}

function restore(work) {
  setBackground(work.background || S.background);
  applyFormSettings(work.settings);
  setMap(work.map.w, work.map.h, work.map.ids);
  restoreTools(work);
  for (const v of S.versions) URL.revokeObjectURL(v.src);
  replaceVersions(work.versions.map((v) => Object.assign({}, v, { src: URL.createObjectURL(v.blob) })));
  const n = S.versions.length;
  if (work.showing === "result" && work.at >= 0 && work.at < n) showVersion(work.at); else showPreview();
  updateVersionButtons();
  markSaved();
}

function restoreTools(work) {
  // Zoom, class, tool and brush as they were (older saves and project files may lack them).
  if (work.zoom) setZoom(work.zoom);
  if (S.classes.some((c) => c.id === work.current)) selectClass(work.current);
  if (work.tool && work.tool !== "region" && $(`tool-${work.tool}`)) selectTool(work.tool);
  if (work.size) brushSize(work.size);
}

function unsaved() {
  return saveTimer !== null || (S.job !== null) || S.edits !== S.savedEdits;
}

// ---------------------------------------------------------------- project files

export async function saveProject() {
  const work = workNow();
  const packIds = (m) => ({ w: m.w, h: m.h, ids: bytesToBase64(m.ids) });
  const project = {
    drawing2map_project: 1, map: packIds(work.map), settings: work.settings, background: work.background,
    at: work.at, showing: work.showing,
    versions: await Promise.all(work.versions.map(async (v) => Object.assign({}, v, { blob: undefined,
      image: await dataURL(v.blob), mask: packIds(v.mask) }))),
  };
  const file = new Blob([JSON.stringify(project)], { type: "application/json" });
  download(URL.createObjectURL(file), `drawing2map-${new Date().toISOString().slice(0, 10)}.json`);
}

// A project file is untrusted: its images must be embedded (data: URLs). Fetching any other
// URL it names would let a crafted file make the browser call a server of its choosing.
async function embeddedImage(url) {
  if (typeof url !== "string" || !/^data:image\/(png|jpeg|webp);base64,/.test(url)) {
    throw new Error("a version's image is not embedded in the file (a data:image URL)");
  }
  return (await fetch(url)).blob();
}

function readProject(text) {
  // The parser's own words ("Unexpected end of JSON input") mean nothing to a user: say what the file is.
  let project;
  try { project = JSON.parse(text); } catch (err) {
    throw new Error("it is not a Drawing2Map project file (it is not JSON, or it was cut short)");
  }
  if (!project || project.drawing2map_project !== 1) throw new Error("it is not a Drawing2Map project file");
  if (!project.map || !Array.isArray(project.versions)) throw new Error("its map or its versions are missing");
  return project;
}

export async function openProject(file) {
  clearError();
  try {
    const project = readProject(await file.text());
    const unpack = (m) => ({ w: m.w, h: m.h, ids: base64ToBytes(m.ids) });
    const versions = await Promise.all(project.versions.map(async (v) => Object.assign({}, v, {
      blob: await embeddedImage(v.image), image: undefined, mask: unpack(v.mask) })));
    pushUndo();
    if (S.mode) leaveMode();
    restoreWork({ map: unpack(project.map), settings: project.settings, background: project.background,
                  versions, at: project.at, showing: project.showing });
    $("import-note").textContent = `Opened the project ${file.name}.`;
    scheduleSave();
  } catch (err) {
    showError(`The project ${file.name} cannot be opened: ${err.message.replace(/\.$/, "")}.`);
  } finally {
    $("open-project").value = "";
  }
}

// ---------------------------------------------------------------- dropping files, leaving the page

export function bindDropAndLeave() {
  let depth = 0;
  document.addEventListener("dragenter", (e) => { e.preventDefault(); depth++; document.body.classList.add("dragging"); });
  document.addEventListener("dragleave", () => { if (--depth <= 0) { depth = 0; document.body.classList.remove("dragging"); } });
  document.addEventListener("dragover", (e) => e.preventDefault());  // a drop must never navigate away
  document.addEventListener("drop", (e) => {
    e.preventDefault();
    depth = 0;
    document.body.classList.remove("dragging");
    const file = e.dataTransfer && e.dataTransfer.files[0];
    if (!file) return;
    if (file.name.toLowerCase().endsWith(".json")) openProject(file); else importFile(file);
  });
  window.addEventListener("beforeunload", (e) => {
    if (!unsaved()) return;
    saveNow();
    e.preventDefault();
    e.returnValue = "";
  });
}

let restoring = false;  // the saved work coming back is not a change to save

function changed() { if (!restoring) scheduleSave(); }

on("stroke", changed);
on("versions", changed);
on("zoom", changed);

// Drawing2Map: "Start from a place". The OpenStreetMap land cover of an address fills the canvas
// (POST /api/place), as one undoable step, and the place's name goes into the caption's field.

import * as api from "./api.js";
import { refreshCaption } from "./caption.js";
import { $, base64ToBytes } from "./dom.js";
import { clearError, showError } from "./errors.js";
import { loadMap, sizeProblem } from "./maps.js";
import { S, endStroke } from "./state.js";

export function placeDefaults(defaults) {
  // The size and resolution start where `seg2sat osm-mask`'s do (/api/options' "place").
  Object.assign($("osm-size"), { value: defaults.size });
  Object.assign($("osm-resolution"), { value: defaults.resolution, min: defaults.low, max: defaults.high });
}

export function bindPlace() {
  const form = $("osm-form");

  function setPlaceBusy(busy, message) {
    // The request takes seconds (geocoding, Overpass): say so, and refuse a second click meanwhile.
    $("osm-fetch").disabled = busy;
    $("osm-place").readOnly = busy;
    $("osm-progress").hidden = !busy;
    form.setAttribute("aria-busy", String(busy));
    $("osm-status").textContent = message;
  }

  function loadPlace(answer) {
    // Like a sample or an import: the previous drawing stays one Undo away.
    loadMap(answer.width, answer.height, base64ToBytes(answer.ids));
    $("place").value = answer.place;
    refreshCaption();
    endStroke();
  }

  function describe(answer) {
    const name = answer.place || "these coordinates";
    return `${name}: ${answer.width} × ${answer.height} px, ${answer.resolution} m/px (${answer.crs}), `
      + `${answer.features} OSM features. Undo brings back your drawing.`;
  }

  async function startFromPlace(event) {
    event.preventDefault();
    const place = $("osm-place").value.trim();
    if (!place) {
      showError("Type a place first: an address, a town, lat,lon or south,west,north,east.");
      $("osm-place").focus();
      return;
    }
    const size = Number($("osm-size").value), resolution = Number($("osm-resolution").value);
    const problem = $("osm-size").disabled ? null : sizeProblem(size, size);
    if (problem) { showError(`A ${size} × ${size} px map cannot be made: ${problem}.`); return; }
    clearError();
    setPlaceBusy(true, `Fetching the map of ${place}…`);
    let message;
    try {
      const answer = await api.place({ place, size, resolution, background: S.background });
      loadPlace(answer);
      message = describe(answer);
    } catch (err) {
      showError(err.message, $("osm-place"));  // goes when the place is edited
      message = `No map of ${place}.`;
    }
    setPlaceBusy(false, message);
  }

  function markBox() {
    // A box (south,west,north,east) has its own size: its extent at the m/px. The Size field says so.
    const box = /^\s*-?[\d.]+\s*,\s*-?[\d.]+\s*,\s*-?[\d.]+\s*,\s*-?[\d.]+\s*$/.test($("osm-place").value);
    $("osm-size").disabled = box;
    $("osm-size").title = box ? "A box sets its own size: its extent divided by the m/px" : "";
  }

  form.addEventListener("submit", startFromPlace);
  $("osm-place").addEventListener("input", markBox);
}

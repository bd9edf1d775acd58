// Reader page: sign in, show one case at a time as a small CT viewer, send the rating. Plain JS, no libraries.
//
// Images arrive as 16-bit greyscale PNGs holding HU + 1024 (study.json "display"). A browser's <img>
// would reduce them to 8 bits, so the page decodes them itself (DecompressionStream + PNG row filters)
// and windows them into a canvas: presets, drag to set the window, zoom and pan, orientation letters, a
// scale bar, the plane's name and the lesion marker are drawn here. Studies built before this page
// (8-bit PNGs, "encoding": "png8") are shown as they are, without window controls.
"use strict";

const VIEW_NAMES = { axial: "Axial", coronal: "Coronal", sagittal: "Sagittal" };
const MARKER_COLOUR = "#ffd400";
const GAP = 6; // px between views
const ZOOM_MIN = 0.5, ZOOM_MAX = 16;

const state = {
  design: null, display: null, item: null, views: [], images: new Map(), slices: {}, nSlices: 1,
  visited: new Set(), window: { width: 400, level: 40 }, presets: [], presetIndex: 0, lut: null,
  zoom: 1, centres: {}, markerVisible: true, feedback: false, sending: false,
  visibleMs: 0, visibleSince: null, wheelRest: 0, drag: null, generation: 0,
};

function $(id) { return document.getElementById(id); }

async function api(path, options = {}) {
  const response = await fetch(path, { credentials: "same-origin", ...options });
  let body = null;
  try { body = await response.json(); } catch (e) { body = null; }
  return { status: response.status, body };
}

function show(section) {
  for (const id of ["login", "study", "done"]) { $(id).hidden = id !== section; }
}

// --- reading time: counts only while the page is visible --------------------------------------------
function startClock() { state.visibleMs = 0; state.visibleSince = document.hidden ? null : performance.now(); }
function elapsedSeconds() {
  let ms = state.visibleMs;
  if (state.visibleSince !== null) { ms += performance.now() - state.visibleSince; }
  return Math.round(ms) / 1000;
}
document.addEventListener("visibilitychange", () => {
  if (document.hidden && state.visibleSince !== null) {
    state.visibleMs += performance.now() - state.visibleSince; state.visibleSince = null;
  } else if (!document.hidden && state.visibleSince === null && state.item) {
    state.visibleSince = performance.now();
  }
});

// --- PNG decoding (greyscale, 8 or 16 bit, not interlaced: what the build writes) ---------------------
async function decodePng(buffer) {
  const bytes = new Uint8Array(buffer);
  const data = new DataView(buffer);
  const signature = [137, 80, 78, 71, 13, 10, 26, 10];
  if (!signature.every((b, i) => bytes[i] === b)) { throw new Error("not a PNG"); }
  let pos = 8, width = 0, height = 0, depth = 0, colour = 0, interlace = 0;
  const idat = [];
  while (pos + 8 <= bytes.length) {
    const length = data.getUint32(pos);
    const type = String.fromCharCode(...bytes.subarray(pos + 4, pos + 8));
    if (type === "IHDR") {
      width = data.getUint32(pos + 8); height = data.getUint32(pos + 12);
      depth = bytes[pos + 16]; colour = bytes[pos + 17]; interlace = bytes[pos + 20];
    } else if (type === "IDAT") {
      idat.push(bytes.subarray(pos + 8, pos + 8 + length));
    } else if (type === "IEND") { break; }
    pos += 12 + length;
  }
  if (colour !== 0 || interlace !== 0 || (depth !== 8 && depth !== 16)) { throw new Error("unexpected PNG format"); }
  // IDAT holds one zlib stream ("deflate" in the Compression Streams API).
  const stream = new Blob(idat).stream().pipeThrough(new DecompressionStream("deflate"));
  const raw = new Uint8Array(await new Response(stream).arrayBuffer());
  const bpp = depth / 8, stride = width * bpp;
  const out = new Uint8Array(height * stride);
  for (let y = 0; y < height; y++) {
    const filter = raw[y * (stride + 1)];
    const line = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    const row = y * stride, up = row - stride;
    for (let i = 0; i < stride; i++) {
      const a = i >= bpp ? out[row + i - bpp] : 0;
      const b = y > 0 ? out[up + i] : 0;
      const c = y > 0 && i >= bpp ? out[up + i - bpp] : 0;
      let v = line[i];
      if (filter === 1) { v += a; }
      else if (filter === 2) { v += b; }
      else if (filter === 3) { v += (a + b) >> 1; }
      else if (filter === 4) {
        const p = a + b - c, pa = Math.abs(p - a), pb = Math.abs(p - b), pc = Math.abs(p - c);
        v += pa <= pb && pa <= pc ? a : (pb <= pc ? b : c);
      } else if (filter !== 0) { throw new Error("bad PNG filter"); }
      out[row + i] = v; // Uint8Array stores v modulo 256, as the PNG filters require
    }
  }
  const values = new Uint16Array(width * height);
  if (depth === 16) { for (let k = 0; k < values.length; k++) { values[k] = (out[2 * k] << 8) | out[2 * k + 1]; } }
  else { values.set(out); }
  return { w: width, h: height, values };
}

// --- window ---------------------------------------------------------------------------------------------
function huMode() { return state.display && state.display.encoding === "png16"; }

function buildLut() {
  const lut = new Uint32Array(4096);
  const offset = huMode() ? state.display.hu_offset : 0;
  const low = state.window.level - state.window.width / 2;
  for (let v = 0; v < lut.length; v++) {
    // Legacy 8-bit images are windowed already: their values are grey levels.
    const g = huMode() ? Math.round(Math.min(255, Math.max(0, (v + offset - low) / state.window.width * 255)))
                       : Math.min(255, v);
    lut[v] = 0xff000000 | (g << 16) | (g << 8) | g; // RGBA bytes on a little-endian machine
  }
  state.lut = lut;
}

function setWindow(width, level, presetIndex = -1) {
  if (!huMode()) { return; }
  state.window = { width: Math.max(1, Math.round(width * 10) / 10), level: Math.round(level * 10) / 10 };
  state.presetIndex = presetIndex;
  buildLut();
  for (const button of document.querySelectorAll("#presets button")) {
    button.classList.toggle("active", Number(button.dataset.index) === presetIndex);
  }
  $("viewer").dataset.windowWidth = String(state.window.width);
  $("viewer").dataset.windowLevel = String(state.window.level);
  redraw();
}

function cyclePreset() {
  if (!state.presets.length) { return; }
  const next = (state.presetIndex + 1) % state.presets.length;
  const [, width, level] = state.presets[next];
  setWindow(width, level, next);
}

function buildPresets() {
  const box = $("presets");
  box.replaceChildren();
  state.presets = [];
  if (!huMode()) { return; }
  const [dw, dl] = state.display.default_window;
  const named = Object.entries(state.display.window_presets || {}).map(([name, [w, l]]) => [name, w, l]);
  // The study's own window first (under a preset's name when it is one), then the other presets.
  const own = named.find(([, w, l]) => w === dw && l === dl);
  state.presets = [own || ["study", dw, dl], ...named.filter((p) => p !== own)];
  state.presets.forEach(([name, w, l], index) => {
    const button = document.createElement("button");
    button.type = "button"; button.dataset.index = String(index);
    button.textContent = `${name} W${w}/L${l}`;
    button.title = "window preset (W cycles)";
    button.addEventListener("click", () => setWindow(w, l, index));
    box.append(button);
  });
}

// --- views ----------------------------------------------------------------------------------------------
// Overlay text, outlined in black so that it reads on bone as on air (grey only: colour marks the lesion).
function text(ctx, value, x, y) {
  ctx.save();
  ctx.shadowBlur = 0; ctx.lineJoin = "round"; ctx.lineWidth = 3; ctx.strokeStyle = "rgba(0, 0, 0, 0.9)";
  ctx.strokeText(value, x, y);
  ctx.restore();
  ctx.fillText(value, x, y);
}

class View {
  constructor(panel, view) {
    this.panel = panel; this.view = view;
    this.el = document.createElement("figure");
    this.el.className = "view";
    this.canvas = document.createElement("canvas");
    this.canvas.id = `view-${panel}-${view}`;
    this.canvas.dataset.panel = panel; this.canvas.dataset.view = view;
    this.canvas.setAttribute("role", "img");
    this.canvas.setAttribute("aria-label", `${state.item.panels.length > 1 ? `case ${panel.toUpperCase()}, ` : ""}${view}`);
    this.el.append(this.canvas);
    this.off = document.createElement("canvas");
    this.offKey = null;
    this.box = { x: 0, y: 0, w: 1, h: 1 };
    this.bind();
  }

  index() { return this.view === "axial" ? state.slices[this.panel] : 0; }
  image() { return state.images.get(imageKey(this.panel, this.view, this.index())); }

  place(x, y, w, h) {
    this.box = { x, y, w: Math.max(1, Math.floor(w)), h: Math.max(1, Math.floor(h)) };
    Object.assign(this.el.style, { left: `${Math.floor(x)}px`, top: `${Math.floor(y)}px`,
                                   width: `${this.box.w}px`, height: `${this.box.h}px` });
  }

  // Screen (CSS px in this canvas) = offset + image px * scale.
  transform(img) {
    const fit = Math.min(this.box.w / img.w, this.box.h / img.h);
    const scale = fit * state.zoom;
    const centre = state.centres[this.view] || [img.w / 2, img.h / 2];
    return { scale, ox: this.box.w / 2 - centre[0] * scale, oy: this.box.h / 2 - centre[1] * scale };
  }

  draw() {
    const dpr = window.devicePixelRatio || 1;
    const { w, h } = this.box;
    if (this.canvas.width !== Math.round(w * dpr) || this.canvas.height !== Math.round(h * dpr)) {
      this.canvas.width = Math.round(w * dpr); this.canvas.height = Math.round(h * dpr);
    }
    const ctx = this.canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.fillStyle = "#000"; ctx.fillRect(0, 0, w, h);
    const img = this.image();
    const font = Math.round(Math.max(11, Math.min(15, w / 28)));
    ctx.font = `${font}px system-ui, sans-serif`;
    if (!img || img.error) {
      ctx.fillStyle = "#aaa"; ctx.textAlign = "center"; ctx.textBaseline = "middle";
      ctx.fillText(img && img.error ? "image could not be shown" : "loading\u2026", w / 2, h / 2);
      delete this.canvas.dataset.drawn;
      return;
    }
    const key = `${this.index()}|${state.window.width}|${state.window.level}`;
    if (this.offKey !== key) {
      this.off.width = img.w; this.off.height = img.h;
      const pixels = new ImageData(img.w, img.h);
      const u32 = new Uint32Array(pixels.data.buffer), lut = state.lut;
      for (let k = 0; k < img.values.length; k++) { u32[k] = lut[Math.min(4095, img.values[k])]; }
      this.off.getContext("2d").putImageData(pixels, 0, 0);
      this.offKey = key;
    }
    const t = this.transform(img);
    ctx.save();
    ctx.shadowBlur = 0;
    ctx.imageSmoothingEnabled = true; ctx.imageSmoothingQuality = "high";
    ctx.drawImage(this.off, t.ox, t.oy, img.w * t.scale, img.h * t.scale);
    ctx.restore();
    this.drawMarker(ctx, t);
    if (this.view !== "axial") { this.drawSliceLevel(ctx, t, img); }
    this.drawLabels(ctx, t, font);
    this.canvas.dataset.drawn = String(this.index());
  }

  drawMarker(ctx, t) {
    const marker = state.item.marker && state.item.marker[this.panel] && state.item.marker[this.panel][this.view];
    const mode = state.display.marker;
    this.canvas.dataset.marker = "none";
    if (!marker || !state.markerVisible || mode === "off") { return; }
    // Only near the lesion's slices: a box on every slice would point at nothing.
    if (this.view === "axial") {
      const halfMm = (marker[2] - marker[0]) / 2 * state.display.pixel_mm;
      const lesionK = state.item.lesion_slice[this.panel].axial;
      if (Math.abs(this.index() - lesionK) * state.display.slice_mm > halfMm) { return; }
    }
    const [x0, y0, x1, y1] = marker.map((v, i) => (i % 2 ? t.oy : t.ox) + v * t.scale);
    ctx.save();
    ctx.shadowBlur = 0; ctx.strokeStyle = MARKER_COLOUR; ctx.lineWidth = 1.5;
    ctx.beginPath();
    if (mode === "crosshair") {
      // Four arms pointing at the centre from outside the lesion, leaving the lesion itself clear.
      const cx = (x0 + x1) / 2, cy = (y0 + y1) / 2, inner = (x1 - x0) / 2, outer = inner + Math.max(12, inner * 0.6);
      for (const [dx, dy] of [[1, 0], [-1, 0], [0, 1], [0, -1]]) {
        ctx.moveTo(cx + dx * inner, cy + dy * inner); ctx.lineTo(cx + dx * outer, cy + dy * outer);
      }
    } else {
      ctx.rect(x0, y0, x1 - x0, y1 - y0);
    }
    ctx.stroke();
    ctx.restore();
    this.canvas.dataset.marker = mode;
  }

  drawSliceLevel(ctx, t, img) {
    // Where the axial slice shown lies in this reformat: short ticks at both edges.
    const n = state.nSlices, k = state.slices[this.panel], d = state.display;
    if (!d.slice_mm || !d.pixel_mm) { return; }
    const row = (img.h - 1) / 2 - (k - (n - 1) / 2) * d.slice_mm / d.pixel_mm + 0.5;
    const y = t.oy + row * t.scale, left = t.ox, right = t.ox + img.w * t.scale;
    ctx.save();
    ctx.shadowBlur = 0; ctx.strokeStyle = "rgba(230, 230, 230, 0.85)"; ctx.lineWidth = 1.5;
    ctx.beginPath();
    ctx.moveTo(left, y); ctx.lineTo(left + 14, y); ctx.moveTo(right - 14, y); ctx.lineTo(right, y);
    ctx.stroke();
    ctx.restore();
  }

  drawLabels(ctx, t, font) {
    const { w, h } = this.box, pad = 6, d = state.display;
    ctx.fillStyle = "#e6e6e6";
    // Plane (and case) top left, image number below it.
    ctx.textAlign = "left"; ctx.textBaseline = "top";
    const caseName = state.item.panels.length > 1 ? `${this.panel.toUpperCase()} \u00b7 ` : "";
    text(ctx, `${caseName}${VIEW_NAMES[this.view]}`, pad, pad);
    if (this.view === "axial") { text(ctx, `Im ${this.index() + 1}/${state.nSlices}`, pad, pad + font + 3); }
    // Window and zoom top right, once per case (on the axial view).
    ctx.textAlign = "right";
    if (this.view === "axial") {
      if (huMode()) { text(ctx, `W ${state.window.width} L ${state.window.level}`, w - pad, pad); }
      text(ctx, `zoom ${state.zoom.toFixed(2)}`, w - pad, pad + (huMode() ? font + 3 : 0));
    }
    // Orientation letters at the middle of each edge.
    const letters = (d.orientation || {})[this.view];
    if (letters) {
      ctx.font = `bold ${font + 1}px system-ui, sans-serif`;
      ctx.textAlign = "left"; ctx.textBaseline = "middle"; text(ctx, letters.left, pad, h / 2);
      ctx.textAlign = "right"; text(ctx, letters.right, w - pad, h / 2);
      ctx.textAlign = "center"; ctx.textBaseline = "top"; text(ctx, letters.top, w / 2, pad);
      ctx.textBaseline = "bottom"; text(ctx, letters.bottom, w / 2, h - pad);
      ctx.font = `${font}px system-ui, sans-serif`;
    }
    // Scale bar bottom right: the longest round length up to a quarter of the view's width.
    if (d.pixel_mm) {
      const pxPerMm = t.scale / d.pixel_mm;
      const mm = [1, 2, 5, 10, 20, 50, 100, 200].filter((v) => v * pxPerMm <= w / 4).pop();
      if (mm) {
        const length = mm * pxPerMm, x1 = w - pad - 2, x0 = x1 - length, y = h - pad - 4;
        ctx.save();
        ctx.beginPath(); ctx.moveTo(x0, y - 5); ctx.lineTo(x0, y); ctx.lineTo(x1, y); ctx.lineTo(x1, y - 5);
        ctx.strokeStyle = "#000"; ctx.lineWidth = 4; ctx.stroke(); // outlined: legible on bone as on air
        ctx.strokeStyle = "#e6e6e6"; ctx.lineWidth = 2; ctx.stroke();
        ctx.restore();
        ctx.textAlign = "center"; ctx.textBaseline = "bottom";
        text(ctx, `${mm} mm`, (x0 + x1) / 2, y - 5);
      }
    }
  }

  bind() {
    const canvas = this.canvas;
    canvas.addEventListener("contextmenu", (event) => event.preventDefault());
    canvas.addEventListener("pointerdown", (event) => {
      const pan = event.button === 1 || event.button === 2 || (event.button === 0 && event.shiftKey);
      if (event.button !== 0 && !pan) { return; }
      event.preventDefault();
      $("viewer").focus({ preventScroll: true });
      state.drag = { view: this, mode: pan ? "pan" : "window", x: event.clientX, y: event.clientY };
      this.el.classList.toggle("panning", pan);
      canvas.setPointerCapture(event.pointerId);
    });
    canvas.addEventListener("pointermove", (event) => {
      const drag = state.drag;
      if (!drag || drag.view !== this) { return; }
      const dx = event.clientX - drag.x, dy = event.clientY - drag.y;
      drag.x = event.clientX; drag.y = event.clientY;
      if (drag.mode === "window") {
        // Finer steps in a narrow window: 2 HU of width and 1 HU of level per pixel at W400.
        const step = Math.max(0.25, state.window.width / 400);
        setWindow(state.window.width + 2 * step * dx, state.window.level + step * dy);
      } else {
        const img = this.image();
        if (!img) { return; }
        const t = this.transform(img);
        const centre = state.centres[this.view] || [img.w / 2, img.h / 2];
        state.centres[this.view] = [centre[0] - dx / t.scale, centre[1] - dy / t.scale];
        redraw();
      }
    });
    const end = () => { if (state.drag && state.drag.view === this) { state.drag = null; this.el.classList.remove("panning"); } };
    canvas.addEventListener("pointerup", end);
    canvas.addEventListener("pointercancel", end);
    canvas.addEventListener("dblclick", () => resetView());
  }

  zoomAt(factor, sx, sy) {
    const img = this.image();
    const zoom = Math.min(ZOOM_MAX, Math.max(ZOOM_MIN, state.zoom * factor));
    if (img) {
      // Keep the image point under the cursor where it is.
      const t = this.transform(img);
      const px = (sx - t.ox) / t.scale, py = (sy - t.oy) / t.scale;
      const scale = t.scale / state.zoom * zoom;
      state.centres[this.view] = [px - (sx - this.box.w / 2) / scale, py - (sy - this.box.h / 2) / scale];
    }
    setZoom(zoom);
  }
}

function setZoom(zoom) {
  state.zoom = Math.round(Math.min(ZOOM_MAX, Math.max(ZOOM_MIN, zoom)) * 1000) / 1000;
  $("viewer").dataset.zoom = String(state.zoom);
  redraw();
}

function resetView() { state.centres = {}; setZoom(1); }

function redraw() { for (const view of state.views) { view.draw(); } }

// Views fill the viewer: one case = the axial stack large with its reformats in a column beside it;
// two cases = side by side, each with its reformats below.
function layout() {
  if (!state.item) { return; }
  const viewer = $("viewer");
  const W = viewer.clientWidth, H = viewer.clientHeight, d = state.display;
  const panels = state.item.panels;
  const reformats = ["coronal", "sagittal"].filter((v) => state.item.views[v]);
  const ratio = d.depth_mm && d.field_mm ? d.depth_mm / d.field_mm : 0.5; // reformat height / width
  const byKey = (panel, view) => state.views.find((v) => v.panel === panel && v.view === view);
  if (panels.length === 1) {
    let column = 0;
    if (reformats.length) {
      const byHeight = (H - GAP * (reformats.length - 1)) / (reformats.length * ratio);
      column = Math.min(byHeight, Math.max(W * 0.28, W - GAP - H));
    }
    const side = Math.min(H, W - (column ? column + GAP : 0));
    const x0 = Math.max(0, (W - side - (column ? column + GAP : 0)) / 2);
    byKey(panels[0], "axial").place(x0, (H - side) / 2, side, side);
    let y = (H - side) / 2;
    for (const view of reformats) {
      const height = Math.min(column * ratio, (H - GAP * (reformats.length - 1)) / reformats.length);
      byKey(panels[0], view).place(x0 + side + GAP, y, column, height);
      y += height + GAP;
    }
  } else {
    const width = (W - GAP) / 2;
    const side = Math.min(width, (H - GAP * reformats.length) / (1 + reformats.length * ratio));
    panels.forEach((panel, p) => {
      const x = p * (width + GAP) + (width - side) / 2;
      let y = Math.max(0, (H - side * (1 + reformats.length * ratio) - GAP * reformats.length) / 2);
      byKey(panel, "axial").place(x, y, side, side);
      y += side + GAP;
      for (const view of reformats) { byKey(panel, view).place(x, y, side, side * ratio); y += side * ratio + GAP; }
    });
  }
  redraw();
}

// --- images -------------------------------------------------------------------------------------------
function imageKey(panel, view, index) { return `${panel}/${view}/${index}`; }

function fetchImage(panel, view, index) {
  const key = imageKey(panel, view, index);
  if (state.images.has(key) || state.pending.has(key)) { return; }
  state.pending.add(key);
  const generation = state.generation;
  const url = `/api/image/${state.item.item_id}/${panel}/${view}/${index}`;
  state.queue.push(async () => {
    let image;
    try {
      const response = await fetch(url, { credentials: "same-origin" });
      if (!response.ok) { throw new Error(`HTTP ${response.status}`); }
      image = await decodePng(await response.arrayBuffer());
    } catch (e) {
      image = { error: String(e) };
    }
    if (generation !== state.generation) { return; } // a later case is on screen
    state.images.set(key, image);
    for (const v of state.views) { if (v.panel === panel && v.view === view && v.index() === index) { v.draw(); } }
  });
  pump();
}

// At most six downloads at once, in the order asked for: the slices shown first, then outwards.
function pump() {
  while (state.running < 6 && state.queue.length) {
    const job = state.queue.shift();
    state.running += 1;
    job().finally(() => { state.running -= 1; pump(); });
  }
}

function preload() {
  for (const panel of state.item.panels) {
    fetchImage(panel, "axial", state.slices[panel]);
    for (const view of ["coronal", "sagittal"]) { if (state.item.views[view]) { fetchImage(panel, view, 0); } }
  }
  for (let step = 1; step < state.nSlices; step++) {
    for (const panel of state.item.panels) {
      for (const k of [state.slices[panel] + step, state.slices[panel] - step]) {
        if (k >= 0 && k < state.nSlices) { fetchImage(panel, "axial", k); }
      }
    }
  }
}

// --- slices ---------------------------------------------------------------------------------------------
function moveSlices(delta) {
  if (!state.item || !delta) { return; }
  for (const panel of state.item.panels) {
    state.slices[panel] = Math.max(0, Math.min(state.nSlices - 1, state.slices[panel] + delta));
  }
  sliceChanged();
}

function sliceChanged() {
  const panels = state.item.panels;
  for (const panel of panels) {
    state.visited.add(`${panel}:${state.slices[panel]}`);
    fetchImage(panel, "axial", state.slices[panel]);
  }
  const parts = panels.map((p) => `${panels.length > 1 ? `${p.toUpperCase()}: ` : ""}slice ${state.slices[p] + 1} / ${state.nSlices}`);
  $("slice-label").textContent = parts.join(" \u00b7 ");
  $("slice-slider").value = String(state.slices[panels[0]]);
  redraw();
}

function toLesionSlices() {
  for (const panel of state.item.panels) { state.slices[panel] = lesionSlice(panel); }
  sliceChanged();
}

function lesionSlice(panel) {
  const known = state.item.lesion_slice && state.item.lesion_slice[panel];
  return known ? known.axial : Math.floor(state.nSlices / 2);
}

// --- answers --------------------------------------------------------------------------------------------
function answerChoices() {
  return state.design === "2afc"
    ? [["a", "A holds the synthetic tumour", "A"], ["b", "B holds the synthetic tumour", "B"],
       ["not_visible", "Cannot judge (lesion not visible)", "N"]]
    : [["real", "Real", "R"], ["synthetic", "Synthetic", "S"], ["not_visible", "Lesion not visible / cannot judge", "N"]];
}

function buildAnswers() {
  const box = $("answers");
  box.querySelectorAll("label").forEach((el) => el.remove());
  $("answer-legend").textContent = state.design === "2afc" ? "Which case holds the synthetic tumour?"
    : (state.display.marker !== "off" ? "The marked lesion is" : "The tumour in this case is");
  for (const [value, text, key] of answerChoices()) {
    const label = document.createElement("label");
    const input = document.createElement("input");
    input.type = "radio"; input.name = "answer"; input.value = value; input.id = `answer-${value}`;
    const kbd = document.createElement("kbd");
    kbd.textContent = key;
    label.append(input, ` ${text} `, kbd);
    box.append(label);
  }
  const keys = answerChoices().map((c) => c[2]);
  $("help-answer-keys").textContent = keys.join(" ");
  $("help-answer-text").textContent = state.design === "2afc" ? "A or B synthetic, cannot judge"
                                                              : "real, synthetic, not visible";
}

function chooseAnswer(value) {
  const input = $(`answer-${value}`);
  if (input && !input.disabled) { input.checked = true; formChanged(); }
}

function chooseConfidence(value) {
  const input = document.querySelector(`input[name=confidence][value='${value}']`);
  if (input && !$("confidence").disabled) { input.checked = true; formChanged(); }
}

function formChanged() {
  const answer = document.querySelector("input[name=answer]:checked");
  const notVisible = answer && answer.value === "not_visible";
  $("confidence").disabled = Boolean(notVisible) || state.feedback;
  if (notVisible) { document.querySelectorAll("input[name=confidence]").forEach((el) => { el.checked = false; }); }
  const confidence = document.querySelector("input[name=confidence]:checked");
  $("submit").disabled = state.feedback || state.sending || !(answer && (notVisible || confidence));
}

function setFormEnabled(enabled) {
  $("answers").disabled = !enabled;
  $("comment").disabled = !enabled;
  formChanged();
}

// --- cases ----------------------------------------------------------------------------------------------
function renderItem(item) {
  state.generation += 1;
  state.item = item;
  state.images = new Map(); state.pending = new Set(); state.queue = []; state.running = state.running || 0;
  state.nSlices = item.views.axial;
  state.slices = {}; state.visited = new Set();
  for (const panel of item.panels) { state.slices[panel] = lesionSlice(panel); }
  // Each case opens fitted, at the study's window.
  state.zoom = 1; state.centres = {}; state.markerVisible = true;
  $("viewer").dataset.zoom = "1";
  const viewer = $("viewer");
  viewer.replaceChildren();
  state.views = [];
  for (const panel of item.panels) {
    for (const view of ["axial", "coronal", "sagittal"]) {
      if (!item.views[view]) { continue; }
      const v = new View(panel, view);
      state.views.push(v);
      viewer.append(v.el);
    }
  }
  const [width, level] = state.display.default_window;
  state.window = { width, level };
  setWindow(width, level, state.presets.length ? 0 : -1);
  if (!huMode()) { buildLut(); $("viewer").dataset.windowWidth = String(width); $("viewer").dataset.windowLevel = String(level); }
  $("toggle-marker").disabled = !item.marker;
  $("toggle-marker").classList.toggle("active", Boolean(item.marker));
  $("slice-slider").max = String(state.nSlices - 1);
  $("rating-form").reset();
  state.feedback = false;
  $("feedback").hidden = true;
  $("status").textContent = "";
  $("practice-badge").hidden = !item.practice;
  setFormEnabled(true);
  layout();
  sliceChanged();
  preload();
  startClock();
  viewer.focus({ preventScroll: true });
}

function updateProgress(body) {
  if (body.item && body.item.practice) {
    $("progress").textContent = `practice ${body.practice.done + 1} of ${body.practice.total}`;
  } else {
    $("progress").textContent = `case ${Math.min(body.rated + 1, body.total)} of ${body.total} (${body.rated} rated)`;
  }
}

async function loadNext() {
  const { status, body } = await api("/api/next");
  if (status === 401 || status === 403) { show("login"); return; }
  if (status !== 200) { $("status").textContent = "The server did not answer; try again."; return; }
  if (body.done) { state.item = null; show("done"); return; }
  show("study");
  state.practiceInfo = body.practice;
  updateProgress(body);
  renderItem(body.item);
}

function showFeedback(rating, lastPractice) {
  const truth = rating.truth;
  const text = $("feedback-text");
  text.replaceChildren();
  const verdict = document.createElement("span");
  const truthText = state.design === "2afc" ? (truth ? `${truth.toUpperCase()} held the synthetic tumour.` : "")
                                            : (truth ? `This lesion is ${truth}.` : "");
  if (!truth) {
    verdict.textContent = "Practice answer saved.";
  } else if (rating.answer === "not_visible") {
    verdict.textContent = "Not judged.";
  } else {
    const right = rating.answer === truth;
    verdict.textContent = right ? "Correct." : "Incorrect.";
    verdict.className = right ? "right" : "wrong";
  }
  const said = rating.answer === "not_visible" ? "not visible"
    : `${state.design === "2afc" ? rating.answer.toUpperCase() : rating.answer}, confidence ${rating.confidence}`;
  text.append(verdict, ` ${truthText} (Your answer: ${said}.)`);
  if (lastPractice) { text.append(" That was the last practice case: scored cases start now."); }
  state.feedback = true;
  setFormEnabled(false);
  $("feedback").hidden = false;
  $("feedback-next").focus({ preventScroll: true });
}

// Once per feedback: Enter on the focused button would otherwise load twice.
function continueAfterFeedback() {
  if (!state.feedback) { return; }
  state.feedback = false;
  $("feedback").hidden = true;
  loadNext();
}

async function submitRating(event) {
  if (event) { event.preventDefault(); }
  if (state.sending || state.feedback || !state.item || $("submit").disabled) { return; }
  const answer = document.querySelector("input[name=answer]:checked");
  const confidence = document.querySelector("input[name=confidence]:checked");
  if (!answer || (answer.value !== "not_visible" && !confidence)) { return; }
  state.sending = true;
  formChanged();
  $("status").textContent = "saving...";
  const item = state.item;
  try {
    const { status, body } = await api("/api/ratings", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({
        item_id: item.item_id, answer: answer.value,
        confidence: answer.value === "not_visible" ? null : Number(confidence.value),
        seconds: elapsedSeconds(), comment: $("comment").value.trim() || null,
        slices_visited: state.visited.size, window_width: state.window.width, window_level: state.window.level,
        zoom: state.zoom,
      }),
    });
    if (status === 200 || status === 201) {
      $("status").textContent = "";
      if (body.rating && body.rating.practice) {
        const practice = state.practiceInfo;
        state.sending = false;
        showFeedback(body.rating, Boolean(practice && practice.done + 1 >= practice.total && body.total > 0));
        return;
      }
      state.sending = false;
      await loadNext();
    } else {
      $("status").textContent = (body && body.error) || `not saved (HTTP ${status}); try again`;
    }
  } catch (e) {
    $("status").textContent = "not saved (network); try again";
  } finally {
    state.sending = false;
    formChanged();
  }
}

// --- sign-in --------------------------------------------------------------------------------------------
async function signIn(token) {
  const { status, body } = await api("/api/login", {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ token }),
  });
  if (status !== 200) { $("login-error").textContent = "This token is not valid."; show("login"); return false; }
  if (body.role !== "reader") { window.location.href = "/admin"; return false; }
  $("login-error").textContent = "";
  return true;
}

// A link /#token=... signs in, on first load and in a tab that already shows the page; the token is then
// removed from the address bar (and from the history).
async function signInFromHash() {
  const match = window.location.hash.match(/token=([^&]+)/);
  if (!match) { return null; }
  history.replaceState(null, "", window.location.pathname + window.location.search);
  return signIn(decodeURIComponent(match[1]));
}

async function begin() {
  const { status, body } = await api("/api/me");
  if (status !== 200) { show("login"); return; }
  if (body.role !== "reader") { window.location.href = "/admin"; return; }
  state.design = body.design;
  state.display = body.display;
  $("reader-name").textContent = body.name;
  buildAnswers();
  buildPresets();
  await loadNext();
}

// --- input ----------------------------------------------------------------------------------------------
function onKey(event) {
  const target = event.target;
  const typing = target.tagName === "TEXTAREA" || (target.tagName === "INPUT" && ["text", "password"].includes(target.type));
  if ($("study").hidden || !state.item) { return; }
  if (typing) {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) { event.preventDefault(); submitRating(); }
    if (event.key === "Escape") { target.blur(); }
    return;
  }
  if (event.ctrlKey || event.metaKey || event.altKey) { return; }
  if (state.feedback) {
    if (event.key === "Enter" || event.key === " ") { event.preventDefault(); continueAfterFeedback(); }
    return;
  }
  const key = event.key.length === 1 ? event.key.toLowerCase() : event.key;
  const slider = target.id === "slice-slider";
  const answers = Object.fromEntries(answerChoices().map((c) => [c[2].toLowerCase(), c[0]]));
  if (["ArrowUp", "ArrowRight", "ArrowDown", "ArrowLeft"].includes(key) && !slider) {
    moveSlices(key === "ArrowUp" || key === "ArrowRight" ? 1 : -1);
  } else if (key === "PageUp" || key === "PageDown") { moveSlices(key === "PageUp" ? 5 : -5); }
  else if (key === "Home" || key === "End") { moveSlices(key === "Home" ? -state.nSlices : state.nSlices); }
  else if (answers[key]) { chooseAnswer(answers[key]); }
  else if ("12345".includes(key) && key.length === 1) { chooseConfidence(key); }
  else if (key === "w") { cyclePreset(); }
  else if (key === "m") { toggleMarker(); }
  else if (key === "l") { toLesionSlices(); }
  else if (key === "+" || key === "=") { setZoom(state.zoom * 1.25); }
  else if (key === "-" || key === "_") { setZoom(state.zoom / 1.25); }
  else if (key === "0") { resetView(); }
  else if (key === "Enter") { if (target.tagName === "BUTTON" && target.id !== "submit") { return; } submitRating(); }
  else { return; }
  event.preventDefault();
}

function toggleMarker() {
  if (!state.item || !state.item.marker) { return; }
  state.markerVisible = !state.markerVisible;
  $("toggle-marker").classList.toggle("active", state.markerVisible);
  redraw();
}

function onWheel(event) {
  if (!state.item) { return; }
  event.preventDefault();
  if (event.ctrlKey || event.metaKey) {
    const figure = event.target.closest && event.target.closest(".view");
    const view = state.views.find((v) => v.el === figure) || state.views[0];
    const rect = view.canvas.getBoundingClientRect();
    view.zoomAt(Math.exp(-event.deltaY * 0.002), event.clientX - rect.left, event.clientY - rect.top);
    return;
  }
  // A mouse notch moves one slice; a touchpad's small deltas add up first.
  const delta = event.deltaMode === 0 ? event.deltaY : event.deltaY * 40;
  if (Math.abs(delta) >= 40) { state.wheelRest = 0; moveSlices(Math.sign(delta)); return; }
  state.wheelRest += delta;
  if (Math.abs(state.wheelRest) >= 60) { moveSlices(Math.sign(state.wheelRest)); state.wheelRest = 0; }
}

function start() {
  $("login-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    if (await signIn($("token").value.trim())) { await begin(); }
  });
  $("logout").addEventListener("click", async () => {
    await api("/api/logout", { method: "POST" }); state.item = null; show("login");
  });
  $("rating-form").addEventListener("submit", submitRating);
  $("rating-form").addEventListener("change", formChanged);
  $("feedback-next").addEventListener("click", continueAfterFeedback);
  $("reset-view").addEventListener("click", resetView);
  $("lesion-slice").addEventListener("click", () => { if (state.item) { toLesionSlices(); } });
  $("toggle-marker").addEventListener("click", toggleMarker);
  $("viewer").addEventListener("wheel", onWheel, { passive: false });
  $("slice-slider").addEventListener("input", () => {
    if (state.item) { moveSlices(Number($("slice-slider").value) - state.slices[state.item.panels[0]]); }
  });
  document.addEventListener("keydown", onKey);
  // The shortcuts are listed open where the window has room for them.
  $("help").open = window.innerHeight >= 800;
  window.addEventListener("resize", layout);
  if (typeof ResizeObserver !== "undefined") { new ResizeObserver(() => layout()).observe($("viewer")); }
  window.addEventListener("hashchange", async () => {
    const signed = await signInFromHash();
    if (signed) { await begin(); }
  });
  if (typeof DecompressionStream === "undefined") {
    show("login");
    $("login-error").textContent = "This browser cannot show the images; use a current Chrome, Edge, Firefox or Safari.";
    return;
  }
  (async () => {
    const signed = await signInFromHash();
    if (signed === false) { return; }
    await begin();
  })();
}

start();

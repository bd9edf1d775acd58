// Reader page: sign in, show one case at a time, scroll slices, send the rating. Plain JS, no libraries.
"use strict";

const state = { design: null, item: null, slice: 0, nSlices: 1, visibleMs: 0, visibleSince: null, sending: false };

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

// Reading time counts only while the page is visible (a reader who leaves for coffee is not timed).
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

function imageUrl(panel, view, index) {
  return `/api/image/${state.item.item_id}/${panel}/${view}/${index}`;
}

function setSlice(index) {
  if (!state.item) { return; }
  state.slice = Math.max(0, Math.min(state.nSlices - 1, index));
  for (const panel of state.item.panels) {
    $(`img-${panel}`).src = imageUrl(panel, "axial", state.slice);
  }
  $("slice-label").textContent = `slice ${state.slice + 1} / ${state.nSlices}`;
  $("slice-slider").value = String(state.slice);
}

function buildAnswers() {
  const box = $("answers");
  box.querySelectorAll("label").forEach((el) => el.remove());
  const choices = state.design === "2afc"
    ? [["a", "A is synthetic"], ["b", "B is synthetic"]]
    : [["real", "Real"], ["synthetic", "Synthetic"]];
  $("answer-legend").textContent = state.design === "2afc" ? "Which case holds the synthetic tumour?" : "This tumour is";
  $("instructions").textContent = state.design === "2afc"
    ? "One of the two cases holds a synthetic tumour. Scroll (mouse wheel or arrow keys) through the slices, then pick it."
    : "Scroll (mouse wheel or arrow keys) through the slices, then say whether the tumour is real or synthetic.";
  for (const [value, text] of choices) {
    const label = document.createElement("label");
    const input = document.createElement("input");
    input.type = "radio"; input.name = "answer"; input.value = value; input.id = `answer-${value}`;
    label.append(input, ` ${text}`);
    box.append(label);
  }
}

function renderItem(item) {
  state.item = item;
  state.nSlices = item.views.axial;
  const panels = $("panels");
  panels.replaceChildren();
  panels.classList.toggle("pair", item.panels.length > 1);
  for (const panel of item.panels) {
    const figure = document.createElement("figure");
    if (item.panels.length > 1) {
      const caption = document.createElement("figcaption");
      caption.textContent = panel.toUpperCase();
      figure.append(caption);
    }
    const views = document.createElement("div");
    views.className = "views";
    const stack = document.createElement("div");
    stack.className = "stack";
    const img = document.createElement("img");
    img.id = `img-${panel}`; img.alt = `case ${panel.toUpperCase()}, axial slice`; img.draggable = false;
    stack.append(img);
    views.append(stack);
    for (const view of ["coronal", "sagittal"]) {
      if (!item.views[view]) { continue; }
      const box = document.createElement("div");
      box.className = "reformat";
      const extra = document.createElement("img");
      extra.id = `img-${panel}-${view}`; extra.alt = view; extra.src = imageUrl(panel, view, 0);
      box.append(extra);
      views.append(box);
    }
    figure.append(views);
    panels.append(figure);
    // Preload the stack so that scrolling does not wait for the network.
    for (let k = 0; k < state.nSlices; k++) { new Image().src = imageUrl(panel, "axial", k); }
  }
  $("slice-slider").max = String(state.nSlices - 1);
  $("rating-form").reset();
  $("submit").disabled = true;
  $("status").textContent = "";
  setSlice(Math.floor(state.nSlices / 2));
  startClock();
  panels.focus({ preventScroll: true });
}

function updateProgress(rated, total) {
  $("progress").textContent = `case ${Math.min(rated + 1, total)} of ${total} (${rated} rated)`;
}

async function loadNext() {
  const { status, body } = await api("/api/next");
  if (status === 401 || status === 403) { show("login"); return; }
  if (status !== 200) { $("status").textContent = "The server did not answer; try again."; return; }
  if (body.done) { state.item = null; show("done"); return; }
  updateProgress(body.rated, body.total);
  show("study");
  renderItem(body.item);
}

async function submitRating(event) {
  event.preventDefault();
  if (state.sending || !state.item) { return; }
  const answer = document.querySelector("input[name=answer]:checked");
  const confidence = document.querySelector("input[name=confidence]:checked");
  if (!answer || !confidence) { return; }
  state.sending = true;
  $("submit").disabled = true;
  $("status").textContent = "saving...";
  try {
    const { status, body } = await api("/api/ratings", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ item_id: state.item.item_id, answer: answer.value,
                             confidence: Number(confidence.value), seconds: elapsedSeconds() }),
    });
    if (status === 200 || status === 201) { await loadNext(); }
    else { $("status").textContent = (body && body.error) || `not saved (HTTP ${status}); try again`; $("submit").disabled = false; }
  } catch (e) {
    $("status").textContent = "not saved (network); try again"; $("submit").disabled = false;
  } finally {
    state.sending = false;
  }
}

async function signIn(token) {
  const { status, body } = await api("/api/login", {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ token }),
  });
  if (status !== 200) { $("login-error").textContent = "This token is not valid."; show("login"); return false; }
  if (body.role !== "reader") { window.location.href = "/admin"; return false; }
  state.design = body.design;
  return true;
}

async function start() {
  $("login-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    if (await signIn($("token").value.trim())) { $("reader-name").textContent = ""; await begin(); }
  });
  $("logout").addEventListener("click", async () => { await api("/api/logout", { method: "POST" }); show("login"); });
  $("rating-form").addEventListener("submit", submitRating);
  $("rating-form").addEventListener("change", () => {
    $("submit").disabled = !(document.querySelector("input[name=answer]:checked")
                             && document.querySelector("input[name=confidence]:checked"));
  });
  $("panels").addEventListener("wheel", (event) => {
    event.preventDefault();
    setSlice(state.slice + (event.deltaY > 0 ? 1 : -1));
  }, { passive: false });
  $("slice-slider").addEventListener("input", () => setSlice(Number($("slice-slider").value)));
  document.addEventListener("keydown", (event) => {
    if (!state.item || event.target.tagName === "INPUT" && event.target.type !== "radio") { return; }
    if (event.key === "ArrowUp" || event.key === "ArrowRight") { setSlice(state.slice + 1); event.preventDefault(); }
    if (event.key === "ArrowDown" || event.key === "ArrowLeft") { setSlice(state.slice - 1); event.preventDefault(); }
  });

  // A link of the form /#token=... signs in at once; the token is then removed from the address bar.
  const match = window.location.hash.match(/token=([^&]+)/);
  if (match) {
    history.replaceState(null, "", window.location.pathname);
    if (!(await signIn(decodeURIComponent(match[1])))) { return; }
  }
  await begin();
}

async function begin() {
  const { status, body } = await api("/api/me");
  if (status !== 200) { show("login"); return; }
  if (body.role !== "reader") { window.location.href = "/admin"; return; }
  state.design = body.design;
  $("reader-name").textContent = body.name;
  buildAnswers();
  await loadNext();
}

start();

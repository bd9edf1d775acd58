// Admin page: progress of every reader (no answers). Refreshes every 10 s.
"use strict";

function $(id) { return document.getElementById(id); }

async function refresh() {
  const response = await fetch("/api/admin/progress", { credentials: "same-origin" });
  if (response.status !== 200) { $("login-form").hidden = false; $("progress-table").hidden = true; return false; }
  const data = await response.json();
  $("login-form").hidden = true;
  const done = data.readers.filter((r) => r.rated === r.total).length;
  $("summary").textContent = `${data.items} cases (${data.design}); ${data.readers.length} readers, ${done} finished`;
  const rows = data.readers.map((r) => {
    const tr = document.createElement("tr");
    for (const value of [r.reader, r.rated, r.total, r.last_rating || "-"]) {
      const td = document.createElement("td"); td.textContent = String(value); tr.append(td);
    }
    return tr;
  });
  $("progress-table").querySelector("tbody").replaceChildren(...rows);
  $("progress-table").hidden = false;
  return true;
}

$("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const response = await fetch("/api/login", {
    method: "POST", credentials: "same-origin", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ token: $("token").value.trim() }),
  });
  $("login-error").textContent = response.status === 200 ? "" : "This token is not valid.";
  if (!(await refresh()) && response.status === 200) { $("login-error").textContent = "This is not an admin token."; }
});

const match = window.location.hash.match(/token=([^&]+)/);
(async () => {
  if (match) {
    history.replaceState(null, "", window.location.pathname);
    await fetch("/api/login", { method: "POST", credentials: "same-origin", headers: { "Content-Type": "application/json" },
                                body: JSON.stringify({ token: decodeURIComponent(match[1]) }) });
  }
  await refresh();
  setInterval(refresh, 10000);
})();

// Shows the server address, the pool against its limit and the loaded models with their
// measured memory, each with a Stop button. Re-reads the status when the pool announces a
// change on /api/events, and at most once a second otherwise.
"use strict";

const $ = (id) => document.getElementById(id);

function mb(bytes) {
  return bytes == null ? "–" : `${(bytes / 1e6).toFixed(0)} MB`;
}

function row(cells) {
  const tr = document.createElement("tr");
  for (const [text, cls] of cells) {
    const td = document.createElement("td");
    td.textContent = text;
    if (cls) td.className = cls;
    tr.appendChild(td);
  }
  return tr;
}

function stopButton(m) {
  const button = document.createElement("button");
  button.textContent = "Stop";
  button.disabled = m.pinned || m.state === "unloading" || m.state === "loading";
  button.title = m.pinned ? "Pinned: remove it from preload in the config to stop it" : "Unload this model";
  button.onclick = async () => {
    button.disabled = true;
    const response = await fetch(`/api/memory/models/${encodeURIComponent(m.id)}`, { method: "DELETE" });
    if (!response.ok) {
      const body = await response.json().catch(() => ({}));
      button.title = (body.error && body.error.message) || `HTTP ${response.status}`;
    }
    scheduleRefresh();
  };
  return button;
}

async function refresh() {
  const status = await (await fetch("/api/status")).json();
  $("address").textContent = status.address;
  const memory = await (await fetch("/api/memory/status")).json();
  $("pool").textContent = `${mb(memory.pool.used)} of ${mb(memory.pool.limit)} (${memory.pool.percent_of_limit}%)`;
  if (memory.system) {
    $("system").textContent = `${mb(memory.system.used)} of ${mb(memory.system.total)} (${memory.system.percent_used}%)`;
  }
  const body = $("loaded").querySelector("tbody");
  body.replaceChildren(
    ...memory.models.map((m) => {
      const tr = row([
        [m.id],
        [m.in_flight > 0 ? `busy ×${m.in_flight}` : m.state],
        [mb(m.memory && m.memory.total), "num"],
        [mb(m.estimate && m.estimate.total), "num"],
      ]);
      if (m.memory) {
        tr.title = `weights ${mb(m.memory.weights)} · KV ${mb(m.memory.kv)} · compute ${mb(m.memory.compute)}`;
      }
      const cell = document.createElement("td");
      cell.appendChild(stopButton(m));
      tr.appendChild(cell);
      return tr;
    })
  );
  $("none").hidden = memory.models.length > 0;
  $("loaded").hidden = memory.models.length === 0;
  const settings = await (await fetch("/api/settings")).json();
  $("notices").replaceChildren(
    ...settings.notices.map((text) => {
      const li = document.createElement("li");
      li.textContent = text;
      return li;
    })
  );
  const models = await (await fetch("/v1/models")).json();
  $("available").replaceChildren(
    ...models.data.map((m) => {
      const li = document.createElement("li");
      li.textContent = `${m.id} (${mb(m.size_bytes)})`;
      return li;
    })
  );
}

let pending = false;
function scheduleRefresh() {
  if (pending) return;
  pending = true;
  setTimeout(() => {
    pending = false;
    refresh().catch(() => {});
  }, 1000);
}

const events = new EventSource("/api/events");
events.onopen = () => $("conn").classList.add("live");
events.onerror = () => $("conn").classList.remove("live");
events.onmessage = scheduleRefresh;
refresh().catch(() => {});
setInterval(scheduleRefresh, 5000);

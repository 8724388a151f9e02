// Shows the server address and the loaded models. Re-reads /api/status when the pool announces
// a change on /api/events, and at most once a second otherwise.
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

async function refresh() {
  const status = await (await fetch("/api/status")).json();
  $("address").textContent = status.address;
  const body = $("loaded").querySelector("tbody");
  body.replaceChildren(
    ...status.pool.models.map((m) =>
      row([
        [m.id],
        [m.state],
        [mb(m.footprint && m.footprint.total), "num"],
        [m.stats ? `${m.stats.active} active, ${m.stats.queued} waiting` : "–", "num"],
      ])
    )
  );
  $("none").hidden = status.pool.models.length > 0;
  $("loaded").hidden = status.pool.models.length === 0;
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

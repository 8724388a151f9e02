// The main window: memory gauges, the loaded models with a Stop button each, the timeline, the
// models on disk with a Load button each, downloads from the Hub with their progress, and the
// recent events in plain words.
//
// It follows /api/events and re-reads the state after events (at most once a second), and
// every 5 s for the gauges and the timeline; the idle countdowns tick locally in between.

import { getJSON, send, subscribe, throttle, gb, mb, fileSize, percent, seconds, countdown } from "/ui/client.js";
import { drawTimeline, describeWatermark } from "/ui/timeline.js";

const $ = (id) => document.getElementById(id);
const MAX_EVENTS = 20;
/**
 * The menu-bar panel (`/?panel`): the gauges and the loaded models with Stop, the rest hidden
 * (style.css), and only what those need read from the server.
 */
const PANEL = new URLSearchParams(location.search).has("panel");
if (PANEL) document.body.classList.add("panel");

/** Ids with a Load or Stop request from this page still in flight, so a refresh keeps their button busy. */
const pending = new Set();
/** Which model each evicted model made room for, to word its `unloaded` event that follows. */
const evictedFor = new Map();
/** Whether the status line shows a failed read, to clear it once reading works again. */
let readFailed = false;

const refreshSoon = throttle(() => refresh().catch(showReadError), 1000);

async function refresh() {
  if (PANEL) {
    const status = await getJSON("/api/memory/status");
    showGauges(status);
    showLoaded(status.models);
    return;
  }
  const [status, disk, history] = await Promise.all([
    getJSON("/api/memory/status"),
    getJSON("/api/models"),
    getJSON("/api/memory/history"),
  ]);
  showGauges(status);
  showLoaded(status.models);
  showOnDisk(disk.models);
  drawTimeline($("timeline"), history);
  $("watermark").textContent = describeWatermark(history.watermark);
  if (readFailed) {
    readFailed = false;
    announce("");
  }
}

function showReadError(error) {
  readFailed = true;
  announce(`Cannot read Headroom's state: ${error.message}`, "error");
}

/** Puts a message in the live region, so screen readers hear the outcome of an action. */
function announce(text, tone = "info") {
  const status = $("status");
  status.textContent = text;
  status.dataset.tone = tone;
}

// ---- Gauges ----

function showGauges(status) {
  const { pool, system } = status;
  const systemGauge = $("gauge-system");
  systemGauge.dataset.tier = pool.tier;
  $("system-tier").textContent = pool.tier;
  if (system) {
    const used = `${gb(system.used)} of ${gb(system.total)} · ${percent(system.percent_used)}`;
    setGauge(systemGauge, system.percent_used, used, `${used}, pressure ${pool.tier}`);
  } else {
    setGauge(systemGauge, 0, "System memory cannot be read");
  }
  const inPool = `${gb(pool.used)} of ${gb(pool.limit)} · ${percent(pool.percent_of_limit)}`;
  setGauge($("gauge-limit"), pool.percent_of_limit, inPool);
  // The desktop app shows the page title as its window title: a glance at the window list
  // (or a test with xdotool) sees the figures without opening the window.
  const systemPart = system ? `System ${percent(system.percent_used)}` : "System unknown";
  const name = PANEL ? "Headroom panel" : "Headroom";
  document.title = `${name} — ${systemPart} · Limit ${percent(pool.percent_of_limit)} · ${status.models.length} loaded`;
}

function setGauge(gauge, percentValue, figures, spoken = figures) {
  const clamped = Math.min(100, Math.max(0, percentValue));
  gauge.setAttribute("aria-valuenow", clamped.toFixed(1));
  gauge.setAttribute("aria-valuetext", spoken);
  gauge.querySelector(".fill").style.width = `${clamped}%`;
  gauge.querySelector(".figures").textContent = figures;
}

// ---- Rows kept by model id ----

/**
 * Brings the `data-model` children of `container` in line with `items`, one per item. They are
 * reused and only moved when out of place, so a focused button keeps its focus across refreshes.
 */
function syncKeyed(container, items, build, update) {
  const keyed = () => container.querySelectorAll(":scope > [data-model]");
  const existing = new Map([...keyed()].map((element) => [element.dataset.model, element]));
  items.forEach((item, i) => {
    let element = existing.get(item.id);
    if (!element) {
      element = build(item);
      element.dataset.model = item.id;
    }
    update(element, item);
    const there = keyed()[i];
    if (there !== element) container.insertBefore(element, there ?? null);
  });
  for (const stale of [...keyed()].slice(items.length)) stale.remove();
  showTableOrEmpty(container.closest("table"));
}

function showTableOrEmpty(table) {
  const empty = !table.querySelector("tbody [data-model], tbody[data-model]");
  table.hidden = empty;
  $(`${table.id}-empty`).hidden = !empty;
}

/** Appends a row header then data cells, one per class name given, and returns them. */
function cells(tr, classNames) {
  return classNames.map((className, i) => {
    const cell = document.createElement(i === 0 ? "th" : "td");
    if (i === 0) cell.scope = "row";
    cell.className = className;
    tr.append(cell);
    return cell;
  });
}

function rowButton(onClick) {
  const button = document.createElement("button");
  button.type = "button";
  button.addEventListener("click", () => onClick(button.closest("tr").dataset.model, button));
  return button;
}

/** Sets a row button's words; its spoken name adds the model, as every row has the same button. */
function labelButton(button, words, id) {
  button.textContent = words;
  button.setAttribute("aria-label", `${words} ${id}`);
}

// ---- Loaded models ----

function showLoaded(models) {
  syncKeyed($("loaded").tBodies[0], models, buildLoadedRow, updateLoadedRow);
}

function buildLoadedRow() {
  const tr = document.createElement("tr");
  const action = cells(tr, ["name", "state", "num", "num share", "num share", "num idle", "action"])[6];
  action.append(rowButton(stop));
  return tr;
}

function updateLoadedRow(tr, m) {
  const [name, state, memory, ofSystem, ofLimit, idle, action] = tr.cells;
  name.textContent = m.id;
  if (m.engine) {
    // Which engine serves it: the one place a user can tell MLX from llama.cpp.
    const engine = document.createElement("span");
    engine.className = "engine";
    engine.textContent = m.engine;
    engine.title = `Served by ${m.engine}`;
    name.append(" ", engine);
  }
  state.textContent = m.in_flight > 0 ? `busy ×${m.in_flight}` : m.state;
  if (m.memory) {
    memory.textContent = mb(m.memory.total);
    memory.title =
      `Measured: weights ${mb(m.memory.weights)} · KV cache ${mb(m.memory.kv)} · compute ${mb(m.memory.compute)}\n` +
      `Estimated before loading: ${mb(m.estimate?.total)}` +
      (m.estimate_error_percent == null ? "" : ` (off by ${percent(m.estimate_error_percent)})`);
  } else {
    // Not measured until the load finishes: show what it is expected to take, marked as such.
    memory.textContent = `≈${mb(m.estimate?.total)}`;
    memory.title = "Estimate: measured once the model has loaded";
  }
  ofSystem.textContent = percent(m.percent_of_system);
  ofLimit.textContent = percent(m.percent_of_limit);
  idle.dataset.expiresAt = m.expires_at ?? "";
  idle.dataset.label = idleLabel(m);
  tickCountdown(idle);

  const button = action.querySelector("button");
  const stopping = pending.has(m.id) || m.state === "unloading";
  labelButton(button, stopping ? "Stopping…" : "Stop", m.id);
  button.disabled = m.pinned || stopping || m.state === "loading";
  button.title = m.pinned
    ? "Pinned: Headroom keeps this model loaded. To stop it, unpin it in Preferences (Pinned models)."
    : m.state === "loading"
      ? "Still loading"
      : `Unload ${m.id} now`;
}

/** What the idle column says when there is no deadline to count down to. */
function idleLabel(m) {
  if (m.pinned) return "pinned";
  if (m.in_flight > 0 || m.state === "busy") return "busy";
  if (m.state !== "ready") return "–";
  return m.expires_at == null ? "never" : "";
}

function tickCountdown(cell) {
  const expiresAt = Number(cell.dataset.expiresAt);
  cell.textContent = cell.dataset.label || (expiresAt ? countdown(expiresAt - Date.now()) : "–");
}

async function stop(id, button) {
  pending.add(id);
  button.disabled = true;
  labelButton(button, "Stopping…", id);
  const result = await send("DELETE", `/api/memory/models/${encodeURIComponent(id)}`);
  pending.delete(id);
  if (result.ok) {
    announce(`Unloaded ${id}: ${mb(result.body.reclaimed)} back`);
  } else {
    announce(`Could not stop ${id}: ${result.body.error.message}`, "error");
  }
  refreshSoon();
}

// ---- Models on disk ----

// Each model is a <tbody> of two rows: its figures, then a full-width line for why it does not
// fit or why its load failed, which are sentences too long for a column.
function showOnDisk(models) {
  syncKeyed($("on-disk"), models.filter((m) => !m.loaded), buildDiskRows, updateDiskRows);
}

function buildDiskRows(m) {
  const group = document.createElement("tbody");
  const main = document.createElement("tr");
  main.dataset.model = m.id;
  const deleteButton = rowButton(remove);
  deleteButton.className = "delete";
  cells(main, ["name", "num", "num", "fit", "action"])[4].append(rowButton(load), deleteButton);
  const detail = document.createElement("tr");
  detail.className = "detail";
  const cell = document.createElement("td");
  cell.colSpan = 5;
  const reason = document.createElement("p");
  reason.className = "reason";
  const error = document.createElement("p");
  error.className = "row-error";
  error.setAttribute("aria-live", "polite");
  cell.append(reason, error);
  detail.append(cell);
  group.append(main, detail);
  return group;
}

function updateDiskRows(group, m) {
  const [name, size, needs, fit, action] = group.rows[0].cells;
  name.textContent = m.id;
  // Conversations saved at its last unload, restored when it loads again.
  const saved = m.saved_conversations ? `conversation cache: ${fileSize(m.saved_conversations)} on disk` : "";
  name.title = saved ? `${m.path}\n${saved}` : m.path;
  size.textContent = fileSize(m.size);
  size.title = saved;
  needs.textContent = m.estimate ? mb(m.estimate.total) : "–";
  [fit.textContent, fit.dataset.fits] = fitNow(m);
  group.querySelector(".reason").textContent = m.fits ? "" : m.reason ?? "";
  showDiskDetail(group);
  const [button, deleteButton] = action.querySelectorAll("button");
  button.disabled = pending.has(m.id);
  labelButton(button, pending.has(m.id) ? "Loading…" : "Load", m.id);
  // Only what Headroom downloaded into its own folder; another app's models are never deleted.
  deleteButton.hidden = !m.deletable;
  if (!deleteButton.dataset.confirm) labelButton(deleteButton, "Delete…", m.id);
}

/** Whether it can load now, in a few words, and as a key for their colour. */
function fitNow(m) {
  if (!m.fits) return ["does not fit", "no"];
  if (m.would_evict.length > 0) return [`would unload ${m.would_evict.join(", ")}`, "evicts"];
  return ["fits", "yes"];
}

/** Shows the detail line only when it has something to say, and a failed load's message once. */
function showDiskDetail(group) {
  const reason = group.querySelector(".reason");
  const error = group.querySelector(".row-error");
  reason.hidden = reason.textContent === "" || reason.textContent === error.textContent;
  group.rows[1].hidden = reason.hidden && error.textContent === "";
}

async function load(id, button) {
  const group = button.closest("tbody");
  const error = group.querySelector(".row-error");
  error.textContent = "";
  showDiskDetail(group);
  pending.add(id);
  button.disabled = true;
  labelButton(button, "Loading…", id);
  const result = await send("POST", `/api/memory/models/${encodeURIComponent(id)}/load`);
  pending.delete(id);
  if (!result.ok) {
    // The model stays on this list (it is not loaded), so the message shows where the person clicked.
    error.textContent = result.body.error.message;
    showDiskDetail(group);
    button.disabled = false;
    labelButton(button, "Load", id);
  }
  refreshSoon();
}

/** Delete asks once more on the button itself, then deletes the file. */
async function remove(id, button) {
  const group = button.closest("tbody");
  const error = group.querySelector(".row-error");
  if (!button.dataset.confirm) {
    button.dataset.confirm = "1";
    labelButton(button, "Delete the file?", id);
    setTimeout(() => {
      delete button.dataset.confirm;
      labelButton(button, "Delete…", id);
    }, 5000);
    return;
  }
  button.disabled = true;
  const result = await send("DELETE", `/api/models/${encodeURIComponent(id)}`);
  button.disabled = false;
  if (!result.ok) {
    error.textContent = result.body.error.message;
    showDiskDetail(group);
  } else {
    announce(`Deleted ${id}: ${fileSize(result.body.bytes)} of disk back`);
  }
  refreshSoon();
}

// ---- Unload all ----

async function unloadAll() {
  const button = $("unload-all");
  button.disabled = true;
  const result = await send("POST", "/api/memory/flush");
  button.disabled = false;
  if (!result.ok) {
    announce(`Could not unload: ${result.body.error.message}`, "error");
  } else if (result.body.unloaded.length === 0) {
    announce("Nothing to unload: no unpinned model is loaded.");
  } else {
    const count = result.body.unloaded.length;
    announce(`Unloaded ${count} model${count === 1 ? "" : "s"}: ${mb(result.body.released)} back`);
  }
  refreshSoon();
}

// ---- Recent events ----

function addEvent(text, tone, t = Date.now()) {
  const li = document.createElement("li");
  li.dataset.tone = tone;
  const time = document.createElement("time");
  time.dateTime = new Date(t).toISOString();
  time.textContent = new Date(t).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  li.append(time, " ", text);
  const list = $("events");
  list.prepend(li);
  while (list.children.length > MAX_EVENTS) list.lastElementChild.remove();
  $("events-empty").hidden = true;
}

const UNLOAD_REASONS = {
  requested: "(requested)",
  flush: "(unload all)",
  idle: "after idle timeout",
  pressure: "under memory pressure",
  file_changed: "because its file changed on disk",
  file_replaced: "to load its replaced file",
  shutdown: "at shutdown",
};

/** The API a generation came in through, as its users know it. */
const DIALECTS = {
  openai_chat: "OpenAI chat completions",
  openai_completions: "OpenAI completions",
  openai_responses: "OpenAI Responses",
  anthropic_messages: "Anthropic Messages",
  ollama_chat: "Ollama /api/chat",
  ollama_generate: "Ollama /api/generate",
};

/** A finished generation in plain words: which model, through which API, how it ended. */
function describeGeneration(e) {
  const via = `${e.model} via ${DIALECTS[e.dialect] ?? e.dialect}`;
  const tokens = `${e.generated_tokens} token${e.generated_tokens === 1 ? "" : "s"}`;
  const rate = e.tokens_per_second == null ? "" : ` at ${e.tokens_per_second.toFixed(1)} tok/s`;
  switch (e.outcome) {
    case "error":
      return [`Generation failed: ${via}`, "bad"];
    case "cancelled":
      return [`Client went away: ${via}, stopped after ${tokens}`, "warn"];
    default:
      return [`Answered ${via}: ${tokens}${rate}`, "info"];
  }
}

/** The event in plain words with a tone, or null for events that only mean "re-read". */
function describe(e) {
  switch (e.type) {
    case "loaded":
      return [`Loaded ${e.model} in ${seconds(e.load_ms)} (${mb(e.memory?.total)})`, "good"];
    case "load_failed":
      return [`Could not load ${e.model}: ${e.error?.message ?? e.error}`, "bad"];
    case "refused":
      return [`Refused ${e.model}: ${e.message}`, "bad"];
    case "unloaded": {
      const forModel = evictedFor.get(e.model);
      evictedFor.delete(e.model);
      const why =
        e.reason === "evicted"
          ? `to make room for ${forModel ?? "another model"}`
          : UNLOAD_REASONS[e.reason] ?? `(${e.reason})`;
      const back = e.reclaimed == null ? "" : `: ${mb(e.reclaimed)} back`;
      return [`Unloaded ${e.model} ${why}${back}`, "info"];
    }
    case "pressure": {
      const used = e.used_percent == null ? "" : ` (${Math.round(e.used_percent)}% used)`;
      const growth = e.growth_rate == null ? "" : `, other apps taking ${mb(e.growth_rate)}/s`;
      return [`Memory pressure: ${e.tier}${used}${growth}`, e.tier === "normal" ? "good" : "warn"];
    }
    case "settings_changed": {
      const later = e.restart_required.length ? `; after restart: ${e.restart_required.join(", ")}` : "";
      return [`Settings changed: ${e.changed.join(", ")}${later}`, "info"];
    }
    case "generation":
      return describeGeneration(e);
    case "lagged":
      return [`Missed ${e.missed} events; the page re-read the state`, "warn"];
    default:
      return null;
  }
}

// ---- Getting models ----

/** One row per pull: name, progress bar, figures, Cancel while it runs. */
function showPull(p) {
  let li = $("pulls").querySelector(`li[data-model="${CSS.escape(p.model)}"]`);
  if (!li) {
    li = document.createElement("li");
    li.dataset.model = p.model;
    const name = Object.assign(document.createElement("span"), { className: "pull-name" });
    const bar = Object.assign(document.createElement("progress"), { max: 1, value: 0 });
    const figures = Object.assign(document.createElement("span"), { className: "pull-figures" });
    const cancel = Object.assign(document.createElement("button"), { type: "button", textContent: "Cancel" });
    cancel.addEventListener("click", async () => {
      cancel.disabled = true;
      const result = await send("DELETE", `/api/models/pulls/${encodeURIComponent(p.model)}`);
      if (!result.ok) $("pull-error").textContent = result.body.error.message;
    });
    li.append(name, bar, figures, cancel);
    $("pulls").prepend(li);
  }
  const [name, bar, figures, cancel] = li.children;
  name.textContent = p.file ? `${p.repo}/${p.file}` : `${p.repo} (${p.files} files)`;
  li.dataset.state = p.state;
  bar.setAttribute("aria-label", `${p.model}: downloaded`);
  if (p.total > 0) {
    bar.max = p.total;
    bar.value = p.received;
  }
  const done = p.total > 0 ? `${fileSize(p.received)} of ${fileSize(p.total)}` : "starting";
  const speed = p.bytes_per_second > 0 ? ` · ${fileSize(p.bytes_per_second)}/s` : "";
  const left = p.seconds_left != null ? ` · ${countdown(p.seconds_left * 1000)} left` : "";
  figures.textContent =
    p.state === "downloading"
      ? `${done}${speed}${left}`
      : p.state === "done"
        ? `done: model ${p.model}`
        : p.state === "cancelled"
          ? "cancelled"
          : `failed: ${p.error}`;
  cancel.hidden = p.state !== "downloading";
}

const PULL_HINT = $("pull-hint").textContent;
let repoAsked = "";

/** What the repo typed holds, from the Hub: its GGUF files offered for the file field, or an MLX repo's size. */
async function showRepo() {
  const repo = $("pull-repo").value.trim();
  if (repo === repoAsked) return;
  repoAsked = repo;
  const [org, name, ...rest] = repo.split("/");
  $("pull-files").replaceChildren();
  if (!org || !name || rest.length) {
    $("pull-hint").textContent = PULL_HINT;
    return;
  }
  $("pull-hint").textContent = `Looking at ${repo}…`;
  const result = await send("GET", `/api/hub/${encodeURIComponent(org)}/${encodeURIComponent(name)}`);
  if (repo !== repoAsked) return;
  if (!result.ok) {
    // Asked again when the repo is typed or left again.
    repoAsked = "";
    $("pull-hint").textContent = result.body.error.message;
    return;
  }
  const { kind, files, total } = result.body;
  // A file chosen for another repo does not stay.
  if (!files.some((f) => f.file === $("pull-file").value)) $("pull-file").value = "";
  if (kind === "gguf") {
    $("pull-files").replaceChildren(
      ...files.map((f) => Object.assign(document.createElement("option"), { value: f.file, label: fileSize(f.size) })),
    );
    if (files.length === 1 && !$("pull-file").value) $("pull-file").value = files[0].file;
    $("pull-hint").textContent = `${files.length} GGUF ${files.length === 1 ? "file" : "files"} in ${repo}: choose one.`;
  } else if (kind === "mlx") {
    $("pull-file").value = "";
    $("pull-hint").textContent = `An MLX model: ${files.length} files, ${fileSize(total)}, downloaded as one folder. Leave the file empty.`;
  } else {
    $("pull-hint").textContent = `${repo} holds no GGUF file and no MLX model.`;
  }
}

async function startPull(event) {
  event.preventDefault();
  $("pull-error").textContent = "";
  const file = $("pull-file").value.trim();
  const body = { repo: $("pull-repo").value.trim(), ...(file ? { file } : {}) };
  const result = await send("POST", "/api/models/pull", body);
  if (!result.ok) {
    $("pull-error").textContent = result.body.error.message;
    return;
  }
  showPull(result.body);
}

function onEvent(e) {
  if (e.type === "pull") showPull(e);
  if (e.type === "evicted") evictedFor.set(e.model, e.for_model);
  if (e.type === "unloaded") {
    // Take the row away at once rather than a second later with the next refresh.
    $("loaded").querySelector(`tr[data-model="${CSS.escape(e.model)}"]`)?.remove();
    showTableOrEmpty($("loaded"));
  }
  if (e.type === "settings_changed") showNotices().catch(showReadError);
  const described = describe(e);
  if (described) addEvent(...described);
  refreshSoon();
}

// ---- Connection, notices, start ----

let wasLive = false;

function onConnection(live) {
  const connection = $("connection");
  connection.dataset.state = live ? "live" : "reconnecting";
  $("connection-label").textContent = live ? "live" : "reconnecting";
  // Events sent while the stream was down are lost: catch up on the state instead.
  if (live && !wasLive) refreshSoon();
  wasLive = live;
}

async function showNotices() {
  const { notices } = await getJSON("/api/settings");
  const banner = $("notices");
  banner.replaceChildren(
    ...notices.map((text) => {
      const p = document.createElement("p");
      p.textContent = text;
      return p;
    }),
  );
  banner.hidden = notices.length === 0;
}

/** A history mark's tone, as the live event it came from would have it. */
function markTone(mark) {
  if (mark.kind === "tier") return mark.tier === "normal" ? "good" : "warn";
  return mark.kind === "loaded" ? "good" : "info";
}

/** Lists what the history remembers, so the page opens with the recent past rather than empty. */
async function seed() {
  const [status, history] = await Promise.all([getJSON("/api/status"), getJSON("/api/memory/history")]);
  $("address").textContent = status.address;
  for (const mark of [...history.marks].sort((a, b) => a.t - b.t)) {
    addEvent(mark.text, markTone(mark), mark.t);
  }
}

function start() {
  $("unload-all").addEventListener("click", unloadAll);
  $("pull-form").addEventListener("submit", startPull);
  const lookUp = () =>
    showRepo().catch((error) => {
      repoAsked = "";
      $("pull-hint").textContent = error.message;
    });
  $("pull-repo").addEventListener("input", throttle(lookUp, 500));
  $("pull-repo").addEventListener("change", lookUp);
  getJSON("/api/models/pulls")
    .then(({ pulls }) => pulls.forEach(showPull))
    .catch(showReadError);
  setInterval(() => document.querySelectorAll("#loaded td.idle").forEach(tickCountdown), 1000);
  setInterval(refreshSoon, 5000);
  // Follow the stream only once the history is listed, so no event shows twice, as a mark and live.
  seed()
    .catch(showReadError)
    .finally(() => subscribe(onEvent, onConnection));
  refreshSoon();
  showNotices().catch(showReadError);
}

start();

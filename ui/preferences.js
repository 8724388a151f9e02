// Preferences: shows the settings in a form and saves only what the person changed, as a JSON
// merge patch, so a value set by hand in the config file (or a setting this form does not
// show) is never overwritten by saving something else.

import { getJSON, send, gb, parseDuration } from "/ui/client.js";

const $ = (id) => document.getElementById(id);

const IDLE_CHOICES = ["5m", "10m", "30m", "1h"];
const THRESHOLDS = ["elevated", "constrained", "critical", "emergency"];

/** The words for each setting in messages, and the controls marked invalid when it is refused. */
const SETTINGS = {
  idle_timeout: {
    name: "Idle timeout",
    // While custom minutes are shown, they are what is wrong, not the choice of "Custom".
    get controls() {
      return [$("idle-timeout").value === "custom" ? "idle-custom" : "idle-timeout"];
    },
  },
  memory_limit: { name: "Pool memory limit", controls: ["limit-auto", "limit-percent"] },
  pressure: { name: "Pressure thresholds", controls: THRESHOLDS.map((t) => `pressure-${t}`) },
  notifications: { name: "Notifications", controls: ["notifications"] },
  launch_at_login: { name: "Launch at login", controls: ["launch-at-login"] },
  pinned: { name: "Pinned models", controls: [] },
  models_dirs: { name: "Model folders", controls: ["models-dirs"] },
  sources: { name: "Other apps' models", controls: [] },
  hub_token: { name: "Hugging Face token", controls: ["hub-token"] },
  port: { name: "Port", controls: ["port"] },
};

/** The RAM and the pool limit in force, to word the slider in GB. */
const machine = { ram: null, limit: null };
/** The limit as saved ("auto", "40%" or bytes), to tell whether `machine.limit` is the automatic one. */
let limitSetting = null;
/** The models in the model folders, each offered as a model to pin. */
let modelsOnDisk = [];
/** Other apps' stores: where each is on this machine and how many models it holds. */
let storesFound = [];
/** An idle timeout that is not whole minutes ("90s") is kept as written until it is edited. */
let idleAsWritten = null;
/** The token as the server shows it: "(hidden)" when one is saved, null when none is. */
let savedToken = null;
/** The person asked to forget the saved token. */
let forgetToken = false;
/** The form's values right after it was filled: what differs from them on Save was changed. */
let baseline = null;

// ---- Filling the form ----

function fill(settings) {
  fillIdle(settings.idle_timeout);
  fillLimit(settings.memory_limit);
  for (const t of THRESHOLDS) $(`pressure-${t}`).value = settings.pressure[t];
  $("notifications").checked = settings.notifications;
  $("launch-at-login").checked = settings.launch_at_login;
  $("models-dirs").value = settings.models_dirs.join("\n");
  $("port").value = settings.port;
  fillPinned(settings.pinned);
  fillSources(settings.sources);
  fillToken(settings.hub_token);
  baseline = read().values;
}

function fillIdle(value) {
  const ms = parseDuration(value);
  // "60m" is the 1 hour choice: match choices by duration, not by spelling.
  const choice = value === "never" ? "never" : IDLE_CHOICES.find((c) => ms !== null && parseDuration(c) === ms);
  idleAsWritten = null;
  if (choice) {
    $("idle-timeout").value = choice;
    $("idle-custom").value = "";
  } else {
    $("idle-timeout").value = "custom";
    if (ms !== null && ms % 60_000 === 0) {
      $("idle-custom").value = String(ms / 60_000);
    } else {
      idleAsWritten = value;
      $("idle-custom").value = value;
    }
  }
  showIdleCustom();
}

function showIdleCustom() {
  $("idle-custom-group").hidden = $("idle-timeout").value !== "custom";
}

function fillLimit(value) {
  limitSetting = value;
  $("limit-auto").checked = value === "auto";
  // Unticking Automatic starts the slider from the limit in force, whatever set it.
  let percent = 75;
  if (typeof value === "string" && value.endsWith("%")) percent = parseFloat(value);
  else if (machine.ram && machine.limit) percent = (machine.limit / machine.ram) * 100;
  $("limit-percent").value = String(Math.round(percent));
  showLimitFigure();
}

function showLimitFigure() {
  const auto = $("limit-auto").checked;
  const slider = $("limit-percent");
  slider.disabled = auto;
  const percent = Number(slider.value);
  let figure;
  if (!machine.ram) figure = `${percent} % of RAM`;
  else if (auto && limitSetting === "auto") figure = `${gb(machine.limit)} of ${gb(machine.ram)}, chosen by Headroom`;
  else if (auto) figure = `chosen by Headroom from the ${gb(machine.ram)} of RAM`;
  else figure = `${gb((machine.ram * percent) / 100)} · ${percent} % of ${gb(machine.ram)}`;
  $("limit-figure").textContent = figure;
  slider.setAttribute("aria-valuetext", figure);
}

function fillPinned(pinned) {
  // A pinned model whose file is gone still gets a box, so it can be unpinned.
  const ids = [...new Set([...modelsOnDisk.map((m) => m.id), ...pinned])];
  $("pinned").replaceChildren(
    ...ids.map((id, i) => {
      const row = document.createElement("div");
      row.className = "row";
      const box = document.createElement("input");
      box.type = "checkbox";
      box.id = `pin-${i}`;
      box.value = id;
      box.checked = pinned.includes(id);
      box.setAttribute("aria-describedby", "error-pinned");
      const label = document.createElement("label");
      label.htmlFor = box.id;
      label.textContent = id;
      row.append(box, label);
      return row;
    }),
  );
  if (ids.length === 0) $("pinned").textContent = "No model on disk.";
}

/** A checkbox per store, with its folder and its models' count, or that it is not here. */
function fillSources(enabled) {
  const rows = storesFound.map((store) => {
    const box = Object.assign(document.createElement("input"), {
      type: "checkbox",
      value: store.source,
      checked: enabled.includes(store.source),
      id: `source-${store.source}`,
    });
    const where = store.folder
      ? `${store.folder}${store.models === null ? "" : ` · ${store.models} ${store.models === 1 ? "model" : "models"}`}`
      : "not found on this machine";
    const label = Object.assign(document.createElement("label"), { htmlFor: box.id });
    label.append(box, ` ${store.label} `, Object.assign(document.createElement("span"), { className: "hint", textContent: where }));
    const row = document.createElement("div");
    row.append(label);
    return row;
  });
  $("sources").replaceChildren(...rows);
}

/** The token field stays empty: a saved token is only said to be there, and can be forgotten. */
function fillToken(shown) {
  savedToken = shown ?? null;
  forgetToken = false;
  $("hub-token").value = "";
  $("hub-token").placeholder = savedToken ? "A token is saved" : "hf_…";
  $("hub-token-forget").hidden = !savedToken;
}

// ---- Reading the form ----

/** The settings as the form now says them, and what is wrong with any field, by setting name. */
function read() {
  const values = {};
  const errors = {};

  const idle = readIdle();
  if (idle.error) errors.idle_timeout = idle.error;
  else values.idle_timeout = idle.value;

  values.memory_limit = $("limit-auto").checked ? "auto" : `${$("limit-percent").value}%`;

  values.pressure = {};
  for (const t of THRESHOLDS) {
    const text = $(`pressure-${t}`).value.trim();
    if (text === "" || !Number.isFinite(Number(text))) errors.pressure = "Enter a percentage for each threshold.";
    values.pressure[t] = Number(text);
  }

  values.notifications = $("notifications").checked;
  values.launch_at_login = $("launch-at-login").checked;
  values.models_dirs = $("models-dirs").value.split("\n").map((line) => line.trim()).filter(Boolean);

  const port = $("port").value.trim();
  if (!/^\d+$/.test(port) || Number(port) > 65535) errors.port = "Enter a port number from 0 to 65535.";
  values.port = Number(port);

  values.pinned = [...$("pinned").querySelectorAll("input:checked")].map((box) => box.value);
  values.sources = [...$("sources").querySelectorAll("input:checked")].map((box) => box.value);

  // A token typed replaces the saved one; otherwise the saved one stays, unless forgotten.
  const token = $("hub-token").value.trim();
  if (token && !/^[\x21-\x7e]{1,512}$/.test(token)) errors.hub_token = "A token is printable characters with no spaces.";
  values.hub_token = token || (forgetToken ? null : savedToken);
  return { values, errors };
}

function readIdle() {
  const choice = $("idle-timeout").value;
  if (choice !== "custom") return { value: choice };
  const text = $("idle-custom").value.trim();
  if (idleAsWritten !== null && text === idleAsWritten) return { value: idleAsWritten };
  if (/^\d+$/.test(text) && Number(text) >= 1) return { value: `${Number(text)}m` };
  return { error: "Enter a whole number of minutes, 1 or more (or choose Never)." };
}

/** The merge patch from `before` to `after`: changed keys only, and only the changed thresholds. */
function diff(before, after) {
  const patch = {};
  for (const [key, value] of Object.entries(after)) {
    if (key === "pressure") {
      const changed = THRESHOLDS.filter((t) => value[t] !== before.pressure[t]);
      if (changed.length) patch.pressure = Object.fromEntries(changed.map((t) => [t, value[t]]));
    } else if (JSON.stringify(value) !== JSON.stringify(before[key])) {
      patch[key] = value;
    }
  }
  return patch;
}

// ---- Errors and saving ----

function clearErrors() {
  for (const element of document.querySelectorAll(".error")) element.textContent = "";
  for (const control of document.querySelectorAll("[aria-invalid]")) control.removeAttribute("aria-invalid");
}

/** Shows `message` beside the field for `setting`, or for the whole form if no field shows it. */
function showError(setting, message) {
  // A refused margin names "headroom_margin.relaxed": the part before the dot is the setting.
  const key = setting?.split(".")[0];
  const known = Object.hasOwn(SETTINGS, key ?? "") ? SETTINGS[key] : null;
  const target = known ? $(`error-${key}`) : $("error-form");
  target.textContent = known || !setting ? message : `${setting}: ${message}`;
  const controls = known ? known.controls.map($).filter((c) => c && !c.closest("[hidden]")) : [];
  for (const control of controls) control.setAttribute("aria-invalid", "true");
  return controls[0] ?? null;
}

function say(text, tone) {
  const status = $("save-status");
  status.textContent = text;
  status.className = tone === "good" ? "saved" : "";
}

async function save(event) {
  event.preventDefault();
  clearErrors();
  const { values, errors } = read();
  const invalid = Object.entries(errors).map(([setting, message]) => showError(setting, message));
  if (invalid.length) {
    invalid.find(Boolean)?.focus();
    say("Nothing saved: correct the field marked Error.");
    return;
  }
  const patch = diff(baseline, values);
  if (Object.keys(patch).length === 0) {
    say("No changes to save.");
    return;
  }
  say("Saving…");
  const button = $("save");
  button.disabled = true;
  const result = await send("PUT", "/api/settings", patch);
  button.disabled = false;
  if (!result.ok) {
    const { message, param } = result.body.error;
    showError(param, message)?.focus();
    say("Not saved.");
    return;
  }
  // A new limit is in force at once: read it so the slider's figure says what it now is. The
  // save itself succeeded, so a failed read only leaves the previous figure.
  await readMachine().catch(() => {});
  fill(result.body.settings);
  const later = result.body.restart_required.map((key) => SETTINGS[key]?.name ?? key);
  say(later.length ? `Saved. ${later.join(", ")}: applies after restart.` : "Saved.", "good");
}

// ---- Start ----

async function readMachine() {
  const status = await getJSON("/api/memory/status");
  machine.ram = status.system?.total ?? null;
  machine.limit = status.pool.limit;
}

async function start() {
  const [settings, models, status] = await Promise.all([
    getJSON("/api/settings"),
    getJSON("/api/models"),
    getJSON("/api/status"),
    readMachine(),
  ]);
  modelsOnDisk = models.models;
  storesFound = status.sources;
  fill(settings.settings);
  const banner = $("notices");
  banner.replaceChildren(...settings.notices.map((text) => Object.assign(document.createElement("p"), { textContent: text })));
  banner.hidden = settings.notices.length === 0;

  $("idle-timeout").addEventListener("change", showIdleCustom);
  $("limit-auto").addEventListener("change", showLimitFigure);
  $("limit-percent").addEventListener("input", showLimitFigure);
  $("prefs").addEventListener("submit", save);
  $("hub-token-forget").addEventListener("click", () => {
    forgetToken = true;
    $("hub-token").value = "";
    $("hub-token").placeholder = "Forgotten when you save";
    $("hub-token-forget").hidden = true;
  });
}

start().catch((error) => {
  $("error-form").textContent = `Cannot read the settings: ${error.message}`;
});

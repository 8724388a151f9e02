// The one place the pages talk to the Headroom server, and the number formatting they share,
// so the main window and Preferences word figures the same way.
//
// Memory is shown as macOS shows it: binary amounts labelled GB and MB (Activity Monitor calls
// a 16 GiB Mac's RAM "16 GB"), as the server's messages, the tray and notifications word it
// (vocab::memory_size), so a figure on the page matches the one in a history mark, the menu or
// Activity Monitor. File sizes are decimal, as Finder shows them (vocab::file_size).

/** Reads a JSON resource; throws an Error carrying the server's message if it fails. */
export async function getJSON(path) {
  const result = await send("GET", path);
  if (!result.ok) throw new Error(result.body.error.message);
  return result.body;
}

/**
 * Sends a request and resolves to `{ok, status, body}` whatever happens, so callers handle a
 * refused or failed request where they show it. A failed request's body always has the API's
 * error shape `{error: {message, type, code, param?}}`, even when the server could not be reached.
 */
export async function send(method, path, body) {
  const init = { method, headers: withKey({ Accept: "application/json" }) };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (e) {
    return failure(0, "unreachable", `Headroom cannot be reached (${e.message})`);
  }
  const text = await response.text();
  let parsed = null;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    // Not JSON: only a proxy or a crashed server answers like that; keep its words below.
  }
  if (response.ok) return { ok: true, status: response.status, body: parsed };
  if (response.status === 401) askForKey();
  if (parsed && parsed.error && typeof parsed.error.message === "string") {
    return { ok: false, status: response.status, body: parsed };
  }
  return failure(response.status, "http_error", text.trim() || `HTTP ${response.status}`);
}

function failure(status, code, message) {
  return { ok: false, status, body: { error: { message, type: "client_error", code } } };
}

/**
 * Follows the server's event stream. `onEvent` gets each parsed event; `onConnection(true|false)`
 * tells whether the stream is open. After a drop it reconnects a second later, so a
 * closed-then-open pair is the only sign of it: re-read the state on every reconnection,
 * since events sent meanwhile are lost.
 *
 * This reads the stream with `fetch` rather than `EventSource`, which cannot send the
 * `Authorization` header a server with an API key asks for.
 */
export function subscribe(onEvent, onConnection) {
  const follow = async () => {
    for (;;) {
      try {
        const response = await fetch("/api/events", { headers: withKey({ Accept: "text/event-stream" }) });
        if (response.status === 401) {
          onConnection(false);
          askForKey();
          return;
        }
        if (!response.ok || !response.body) throw new Error(`HTTP ${response.status}`);
        onConnection(true);
        await readEvents(response.body, onEvent);
      } catch {
        // Dropped or refused: the server restarting, or gone. Try again below.
      }
      onConnection(false);
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  };
  follow();
}

/** Calls `onEvent` with each `data:` payload of a server-sent event stream, parsed as JSON. */
async function readEvents(body, onEvent) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = block
        .split("\n")
        .filter((line) => line.startsWith("data:"))
        .map((line) => line.slice(5).replace(/^ /, ""))
        .join("\n");
      if (!data) continue; // A keep-alive comment.
      let event;
      try {
        event = JSON.parse(data);
      } catch {
        continue; // One garbled event must not stop the page from following the rest.
      }
      onEvent(event);
    }
  }
}

// The API key, for a server that has one. The app's windows are handed it before the page's
// scripts run (as `window.__HEADROOM_API_KEY__`); in a browser the user types it once. localStorage is per origin (host and port), so no
// other page, a local one on another port included, can read it.
const KEY_ITEM = "headroom.apiKey";

function withKey(headers) {
  const key = window.__HEADROOM_API_KEY__ ?? localStorage.getItem(KEY_ITEM);
  if (key) headers.Authorization = `Bearer ${key}`;
  return headers;
}

/** Asks for the API key once per page, stores it, and reloads the page with it. */
function askForKey() {
  if (document.getElementById("api-key-dialog")) return;
  const dialog = document.createElement("dialog");
  dialog.id = "api-key-dialog";
  const had = localStorage.getItem(KEY_ITEM);
  dialog.innerHTML = `
    <form method="dialog">
      <h2>API key</h2>
      <p class="key-why"></p>
      <input name="key" type="password" autocomplete="current-password" required minlength="16" aria-label="API key">
      <button type="submit" class="primary">Unlock</button>
    </form>`;
  dialog.querySelector(".key-why").textContent = had
    ? "The stored API key was refused. Enter the key set in Headroom's settings."
    : "This Headroom server needs its API key (HEADROOM_API_KEY or api_key in the config file).";
  dialog.querySelector("form").addEventListener("submit", () => {
    localStorage.setItem(KEY_ITEM, dialog.querySelector("input").value.trim());
    location.reload();
  });
  document.body.append(dialog);
  dialog.showModal();
}

/**
 * Wraps `fn` so that calls made in a burst run it once, and never more than once per
 * `intervalMs`: a load sends several events in a row, and each would otherwise re-read everything.
 */
export function throttle(fn, intervalMs) {
  let last = 0;
  let timer = null;
  return () => {
    if (timer) return;
    const wait = Math.max(0, last + intervalMs - Date.now());
    timer = setTimeout(() => {
      timer = null;
      last = Date.now();
      fn();
    }, wait);
  };
}

const MIB = 2 ** 20;
const GIB = 2 ** 30;

/** Memory in GB of 2^30 bytes: "24.0 GB". */
export function gb(bytes) {
  return bytes == null ? "–" : `${(bytes / GIB).toFixed(1)} GB`;
}

/** Memory in MB of 2^20 bytes: "118 MB". */
export function mb(bytes) {
  return bytes == null ? "–" : `${Math.round(bytes / MIB)} MB`;
}

/** A file's size in decimal units, as Finder shows it: "98 MB", "1.5 GB". */
export function fileSize(bytes) {
  if (bytes == null) return "–";
  return bytes >= 1e9 ? `${(bytes / 1e9).toFixed(1)} GB` : `${Math.round(bytes / 1e6)} MB`;
}

export function percent(value) {
  return value == null ? "–" : `${Number(value).toFixed(1)} %`;
}

/** "0.9 s" for a load, "450 ms" under a second. */
export function seconds(ms) {
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`;
}

/** A countdown as m:ss, or h:mm:ss from an hour on. */
export function countdown(ms) {
  const total = Math.max(0, Math.ceil(ms / 1000));
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = String(total % 60).padStart(2, "0");
  return h > 0 ? `${h}:${String(m).padStart(2, "0")}:${s}` : `${m}:${s}`;
}

const UNIT_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/**
 * Milliseconds in a duration written the way the settings write them ("90s", "5m", "1h30m"),
 * or null for anything else, "never" included.
 */
export function parseDuration(text) {
  const trimmed = String(text).trim();
  if (!/^(\d+(ms|s|m|h|d))+$/.test(trimmed)) return null;
  let total = 0;
  for (const [, n, unit] of trimmed.matchAll(/(\d+)(ms|s|m|h|d)/g)) total += Number(n) * UNIT_MS[unit];
  return total;
}

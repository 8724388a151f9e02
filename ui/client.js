// The one place the pages talk to the Headroom server, and the number formatting they share,
// so the main window and Preferences word figures the same way.
//
// Sizes use decimal units (1 GB = 10^9 bytes), as the server's own messages do, so a figure
// on the page matches the one in a history mark or the log.

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
  const init = { method, headers: { Accept: "application/json" } };
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
 * tells whether the stream is open. The browser reconnects by itself after a drop, so a
 * closed-then-open pair is the only sign of it: re-read the state on every reconnection,
 * since events sent meanwhile are lost.
 */
export function subscribe(onEvent, onConnection) {
  const source = new EventSource("/api/events");
  source.onopen = () => onConnection(true);
  source.onerror = () => onConnection(false);
  source.onmessage = (message) => {
    let event;
    try {
      event = JSON.parse(message.data);
    } catch {
      return; // One garbled line must not stop the page from following the rest.
    }
    onEvent(event);
  };
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

export function gb(bytes) {
  return bytes == null ? "–" : `${(bytes / 1e9).toFixed(1)} GB`;
}

export function mb(bytes) {
  return bytes == null ? "–" : `${Math.round(bytes / 1e6)} MB`;
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

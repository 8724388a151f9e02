// Draws /api/memory/history as an SVG chart: how much of the machine is in use, how much of it
// the models take, and the pool limit, with a mark for each load, unload and tier change, so a
// person can see what a load cost and what an unload gave back.

import { gb, mb } from "/ui/client.js";

const SVG = "http://www.w3.org/2000/svg";
// The drawing's own units; the viewBox in index.html scales them to the page width.
const WIDTH = 520;
const HEIGHT = 150;
const PAD = { left: 46, right: 8, top: 8, bottom: 20 };

function el(name, attrs = {}, text) {
  const node = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

/**
 * An SVG path through the samples' `key` values. A sample without a value (the system's memory
 * could not be read) breaks the line rather than drawing a false drop to zero.
 */
function path(samples, key, x, y) {
  let d = "";
  let pen = "M";
  for (const sample of samples) {
    const value = sample[key];
    if (value == null) {
      pen = "M";
      continue;
    }
    d += `${pen}${x(sample.t).toFixed(1)},${y(value).toFixed(1)}`;
    pen = "L";
  }
  return d;
}

function clock(t) {
  return new Date(t).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

/** Redraws `svg` (which keeps its first child, the <title>) from a history answer. */
export function drawTimeline(svg, history, now = Date.now()) {
  const { samples, marks, span_ms: span } = history;
  const start = now - span;
  const top = Math.max(1, ...samples.map((s) => Math.max(s.system_total ?? 0, s.limit ?? 0, s.system_used ?? 0)));
  const plotW = WIDTH - PAD.left - PAD.right;
  const plotH = HEIGHT - PAD.top - PAD.bottom;
  const x = (t) => PAD.left + ((t - start) / span) * plotW;
  const y = (bytes) => PAD.top + plotH - (bytes / top) * plotH;

  const title = svg.querySelector("title");
  const parts = [title];

  const axes = el("g", { class: "axes" });
  for (const fraction of [0, 0.5, 1]) {
    const bytes = top * fraction;
    axes.append(
      el("line", { class: "grid", x1: PAD.left, x2: WIDTH - PAD.right, y1: y(bytes), y2: y(bytes) }),
      el("text", { x: PAD.left - 4, y: y(bytes) + 3, "text-anchor": "end" }, bytes === 0 ? "0" : gb(bytes)),
    );
  }
  for (const minutesAgo of [10, 5, 0]) {
    const label = minutesAgo === 0 ? "now" : `−${minutesAgo} min`;
    const anchor = minutesAgo === 10 ? "start" : minutesAgo === 0 ? "end" : "middle";
    axes.append(el("text", { x: x(now - minutesAgo * 60_000), y: HEIGHT - 5, "text-anchor": anchor }, label));
  }
  parts.push(axes);

  parts.push(
    el("path", { class: "series limit", d: path(samples, "limit", x, y) }),
    el("path", { class: "series system", d: path(samples, "system_used", x, y) }),
    el("path", { class: "series pool", d: path(samples, "pool_used", x, y) }),
  );

  for (const mark of marks.filter((m) => m.t >= start)) {
    const g = el("g", { class: `mark ${mark.kind}` });
    const at = x(mark.t);
    g.append(
      el("title", {}, `${clock(mark.t)} · ${mark.text}`),
      // A wide transparent line under the thin one makes the tooltip easy to hover.
      el("line", { class: "hit", x1: at, x2: at, y1: PAD.top, y2: PAD.top + plotH }),
      el("line", { class: "rule", x1: at, x2: at, y1: PAD.top, y2: PAD.top + plotH }),
    );
    parts.push(g);
  }

  svg.replaceChildren(...parts);
  title.textContent = summary(samples, marks.length);
}

function summary(samples, markCount) {
  const last = samples[samples.length - 1];
  if (!last) return "Memory timeline: no samples yet";
  return (
    `Memory timeline for the last 10 minutes. Now: system ${gb(last.system_used)} of ${gb(last.system_total)} used, ` +
    `models ${gb(last.pool_used)} of a ${gb(last.limit)} limit; ${markCount} load, unload or tier marks.`
  );
}

/**
 * The peak memory of the running generation (or else of the last one), and how far above its
 * starting point it went: the cost of a generation beyond the loaded weights.
 */
export function describeWatermark(watermark) {
  if (!watermark || !watermark.peak) return "";
  const figures = `${mb(watermark.peak)} (+${mb(Math.max(0, watermark.peak - watermark.baseline))})`;
  return watermark.active
    ? `Peak during this generation: ${figures}`
    : `Peak during the last generation: ${figures}`;
}

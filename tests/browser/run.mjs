// Drives Headroom's web UI in a real Chromium against a real `headroom --headless`, the way a
// person would use it, and checks what the page shows against the server's own API and the
// config file on disk.
//
//   cd tests/browser && npm ci --no-audit --no-fund && node --test run.mjs
//
// HEADROOM_BIN picks the server binary, HEADROOM_TEST_MODELS_DIR the folder with the two test
// models. The UI under test is the one compiled into the binary, unless HEADROOM_UI_DIR is set
// (for working on the UI without rebuilding). Screenshots go to artifacts/.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { copyFile, mkdtemp, mkdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { homedir, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const BIN =
  process.env.HEADROOM_BIN ??
  join(process.env.CARGO_TARGET_DIR ?? join(homedir(), ".cache/headroom-target"), "debug/headroom");
const MODELS_DIR = process.env.HEADROOM_TEST_MODELS_DIR ?? "/root/.cache/headroom/test-models";
const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const ARTIFACTS = fileURLToPath(new URL("./artifacts/", import.meta.url));
// The README's picture of the window: taken by this suite, so it shows the UI as it is.
const README_SCREENSHOT = fileURLToPath(new URL("../../docs/images/window.png", import.meta.url));
const SMOL = "SmolLM2-135M-Instruct.Q4_1";
const GEMMA = "gemma-3-270m-q4_k_m";
const MINUTE = 60_000;

// ---- Servers ----

const running = new Set();
// A test run that is interrupted must not leave servers behind holding models in memory.
process.on("exit", () => {
  for (const child of running) child.kill("SIGKILL");
});

function freePort() {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
}

/** The environment for a server: ours without HEADROOM_* (so a developer's settings cannot leak in), plus `extra`. */
function serverEnv(extra) {
  const env = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith("HEADROOM_")));
  if (process.env.HEADROOM_UI_DIR) env.HEADROOM_UI_DIR = process.env.HEADROOM_UI_DIR;
  // Other apps' model stores on this machine stay out unless a test builds its own.
  return { ...env, HEADROOM_THREADS: "2", HEADROOM_SOURCES: "", ...extra };
}

/**
 * Starts a headless server with its own data folder and config file, and waits until it answers.
 * `env` adds to its environment, `config` is written as its config file first, `port` reuses one.
 */
async function startServer({ env = {}, config: configText = null, port: wanted = null } = {}) {
  const dir = await mkdtemp(join(tmpdir(), "headroom-browser-"));
  const port = wanted ?? (await freePort());
  const config = join(dir, "config.toml");
  if (configText !== null) await writeFile(config, configText);
  const args = ["--headless", "--port", String(port), "--data-dir", join(dir, "data"), "--config", config, "--models-dir", MODELS_DIR];
  const child = spawn(BIN, args, { env: serverEnv(env), stdio: ["ignore", "pipe", "pipe"] });
  running.add(child);
  let log = "";
  child.stdout.on("data", (chunk) => (log += chunk));
  child.stderr.on("data", (chunk) => (log += chunk));
  const exited = new Promise((resolve) => child.once("exit", resolve));

  const url = `http://127.0.0.1:${port}`;
  const server = {
    url,
    port,
    config,
    log: () => log,
    async api(path, init) {
      const response = await fetch(url + path, init);
      const text = await response.text();
      return { status: response.status, body: text ? JSON.parse(text) : null };
    },
    async stop() {
      child.kill("SIGTERM");
      const killer = setTimeout(() => child.kill("SIGKILL"), 10_000);
      await exited;
      clearTimeout(killer);
      running.delete(child);
      await rm(dir, { recursive: true, force: true });
    },
  };

  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`headroom exited with ${child.exitCode}:\n${log}`);
    try {
      if ((await fetch(`${url}/health`)).ok) return server;
    } catch {
      // Not listening yet.
    }
    if (Date.now() > deadline) {
      await server.stop();
      throw new Error(`headroom did not answer /health in 30 s:\n${log}`);
    }
    await sleep(100);
  }
}

// ---- Helpers ----

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Retries `check` until it stops throwing, for what the page or the server does a moment later. */
async function eventually(check, timeout = 15_000) {
  const deadline = Date.now() + timeout;
  for (;;) {
    try {
      return await check();
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await sleep(150);
    }
  }
}

async function modelStatus(server, id) {
  const { body } = await server.api("/api/memory/status");
  return body.models.find((m) => m.id === id) ?? null;
}

async function ensureLoaded(server, id) {
  const { status, body } = await server.api(`/api/memory/models/${id}/load`, { method: "POST" });
  assert.equal(status, 200, `loading ${id}: ${JSON.stringify(body)}`);
}

async function ensureUnloaded(server, id) {
  if (await modelStatus(server, id)) {
    const { status } = await server.api(`/api/memory/models/${id}`, { method: "DELETE" });
    assert.equal(status, 200);
  }
}

/** "2.0 GB of 25.3 GB · 7.8 %" → [2.0, 25.3, 7.8] */
function parseFigures(text) {
  const match = text.match(/([\d.]+) GB of ([\d.]+) GB · ([\d.]+) %/);
  assert.ok(match, `figures "${text}" are not "X GB of Y GB · Z %"`);
  return match.slice(1).map(Number);
}

const putJSON = (body) => ({ method: "PUT", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
// Memory as macOS shows it: GB of 2^30 bytes, MB of 2^20 (see ui/client.js).
const GIB = 2 ** 30;
const toGB = (bytes) => Number((bytes / GIB).toFixed(1));
const toMB = (bytes) => Math.round(bytes / 2 ** 20);

// ---- Browser ----

let browser;
let server;

before(async () => {
  await mkdir(ARTIFACTS, { recursive: true });
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--no-first-run", "--disable-gpu"],
  });
  server = await startServer();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

/**
 * Runs `body` with a fresh page on `target`. A failure leaves a screenshot in artifacts/ and
 * the page's script errors in the message, since a bare "timed out" says nothing.
 */
async function withPage(name, target, path, body) {
  const context = await browser.newContext({ viewport: { width: 560, height: 900 } });
  const page = await context.newPage();
  const scriptErrors = [];
  page.on("pageerror", (error) => scriptErrors.push(error.message));
  // The server sends a Content-Security-Policy; whatever it blocks is a defect of the page.
  const blocked = [];
  page.on("console", (message) => /Content Security Policy/i.test(message.text()) && blocked.push(message.text()));
  try {
    const response = await page.goto(target.url + path);
    assert.match(response.headers()["content-security-policy"] ?? "", /default-src 'self'/);
    await body(page);
    assert.deepEqual(scriptErrors, [], "the page threw");
    assert.deepEqual(blocked, [], "the page did something its Content-Security-Policy forbids");
  } catch (error) {
    await page.screenshot({ path: join(ARTIFACTS, `failure-${name}.png`), fullPage: true }).catch(() => {});
    error.message += `\npage errors: ${JSON.stringify(scriptErrors)}\nserver log tail:\n${target.log().slice(-2000)}`;
    throw error;
  } finally {
    await context.close();
  }
}

/** Waits until the main window follows the event stream and has drawn the gauges. */
async function mainReady(page) {
  await page.locator('#connection[data-state="live"]').waitFor({ timeout: 10_000 });
  await eventually(async () => assert.match(await page.locator("#limit-figures").textContent(), / GB of /));
}

const loadedRow = (page, id) => page.locator(`#loaded tr[data-model="${id}"]`);
const diskRow = (page, id) => page.locator(`#on-disk tr[data-model="${id}"]`);

// ---- Main window ----

test("the gauges show the figures of /api/memory/status", async (t) => {
  // With a model loaded, the pool figures are more than zeros.
  await ensureLoaded(server, GEMMA);
  t.after(() => ensureUnloaded(server, GEMMA));
  await withPage("gauges", server, "/", async (page) => {
    // Keep every status answer the page got, to check it shows the latest one to the digit.
    const answers = [];
    page.on("response", async (response) => {
      if (response.url().endsWith("/api/memory/status")) answers.push(await response.json().catch(() => null));
    });
    await mainReady(page);

    const { system, pool } = await eventually(async () => {
      const last = answers.at(-1);
      assert.ok(last, "the page has read /api/memory/status");
      const [used, total, percent] = parseFigures(await page.locator("#system-figures").textContent());
      assert.deepEqual([used, total, percent], [toGB(last.system.used), toGB(last.system.total), Number(last.system.percent_used.toFixed(1))]);
      const [poolUsed, limit, poolPercent] = parseFigures(await page.locator("#limit-figures").textContent());
      assert.deepEqual([poolUsed, limit, poolPercent], [toGB(last.pool.used), toGB(last.pool.limit), Number(last.pool.percent_of_limit.toFixed(1))]);
      return last;
    });
    assert.equal(await page.locator("#system-tier").textContent(), pool.tier, "the tier is written out");
    assert.equal(Number(await page.locator("#gauge-system").getAttribute("aria-valuenow")), Number(system.percent_used.toFixed(1)));
    assert.equal(Number(await page.locator("#gauge-limit").getAttribute("aria-valuenow")), Number(pool.percent_of_limit.toFixed(1)));

    // And against a reading of our own: the machine's use moves a little between two reads.
    const { body: now } = await server.api("/api/memory/status");
    const systemText = await page.locator("#system-figures").textContent();
    const limitText = await page.locator("#limit-figures").textContent();
    const [used, total, percent] = parseFigures(systemText);
    const [poolUsed, limit] = parseFigures(limitText);
    assert.equal(total, toGB(now.system.total));
    assert.ok(Math.abs(used - now.system.used / GIB) < 0.5, `system used ${used} GB vs ${now.system.used / GIB} GB`);
    assert.ok(Math.abs(percent - now.system.percent_used) < 2, `system ${percent} % vs ${now.system.percent_used} %`);
    assert.equal(limit, toGB(now.pool.limit));
    // The pool's use is measured too: resident weights grow as their pages are touched.
    assert.ok(Math.abs(poolUsed - now.pool.used / GIB) <= 0.1, `pool used ${poolUsed} GB vs ${now.pool.used / GIB} GB`);
    t.diagnostic(
      `System: page "${systemText}" · API ${now.system.used} of ${now.system.total} bytes, ${now.system.percent_used} %; ` +
        `Limit: page "${limitText}" · API ${now.pool.used} of ${now.pool.limit} bytes, ${now.pool.percent_of_limit} %; tier ${pool.tier}`,
    );
  });
});

test("Load on a model on disk loads it into the Loaded models table", async (t) => {
  await ensureUnloaded(server, SMOL);
  await withPage("load", server, "/", async (page) => {
    // The model's measured memory moves as its pages are touched: compare the page with the
    // figure it was given, not with a reading of our own taken a moment later.
    const answers = [];
    page.on("response", async (response) => {
      if (response.url().endsWith("/api/memory/status")) answers.push(await response.json().catch(() => null));
    });
    await mainReady(page);
    await diskRow(page, SMOL).getByRole("button", { name: "Load" }).click();

    const row = loadedRow(page, SMOL);
    await row.locator("td.state", { hasText: "ready" }).waitFor({ timeout: 20_000 });
    const { memoryText, status } = await eventually(async () => {
      const text = await row.locator("td").nth(1).textContent();
      assert.match(text, /^\d+ MB$/);
      const status = answers.at(-1)?.models.find((m) => m.id === SMOL);
      assert.ok(status, "the page's latest /api/memory/status lists the model");
      assert.equal(text, `${toMB(status.memory.total)} MB`, "the page shows the measured total");
      return { memoryText: text, status };
    });
    assert.match(await row.locator("td").nth(1).getAttribute("title"), /weights \d+ MB · KV cache \d+ MB · compute \d+ MB/);
    await diskRow(page, SMOL).waitFor({ state: "detached" });
    await eventually(async () => assert.match(await row.locator("td.idle").textContent(), /^\d+:\d\d$/));
    await page.screenshot({ path: join(ARTIFACTS, "main.png"), fullPage: true });
    await page.screenshot({ path: README_SCREENSHOT, fullPage: true });
    t.diagnostic(`loaded ${SMOL}: page ${memoryText} · API memory.total ${status.memory.total} bytes`);
  });
});

test("Stop unloads the model and Recent events says what it gave back", async (t) => {
  await ensureLoaded(server, SMOL);
  await withPage("stop", server, "/", async (page) => {
    await mainReady(page);
    const row = loadedRow(page, SMOL);
    await row.waitFor();
    const unload = page.waitForResponse((r) => r.request().method() === "DELETE");
    await row.getByRole("button", { name: "Stop" }).click();
    const report = await (await unload).json();

    await row.waitFor({ state: "detached", timeout: 10_000 });
    assert.equal(await modelStatus(server, SMOL), null, "/api/memory/status no longer lists it");
    const line = page.locator("#events li", { hasText: `Unloaded ${SMOL} (requested)` });
    await line.waitFor();
    const text = await line.textContent();
    assert.match(text, new RegExp(`: ${toMB(report.reclaimed)} MB back$`));
    await page.locator("#loaded-empty").waitFor();
    t.diagnostic(`events: "${text.trim()}" · API reclaimed ${report.reclaimed} bytes`);
  });
});

test("Recent events name the API each answer came in through", async (t) => {
  await withPage("dialects", server, "/", async (page) => {
    await mainReady(page);
    const post = async (path, body) => {
      const response = await fetch(`${server.url}${path}`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(body),
      });
      assert.equal(response.status, 200, `${path}: ${await response.clone().text()}`);
      return response.json();
    };
    const say = [{ role: "user", content: "Say hello." }];
    const anthropic = await post("/v1/messages", { model: SMOL, max_tokens: 4, messages: say });
    const ollama = await post("/api/chat", { model: SMOL, messages: say, stream: false, options: { num_predict: 4 } });
    const lines = [];
    for (const [api, tokens] of [
      ["Anthropic Messages", anthropic.usage.output_tokens],
      ["Ollama /api/chat", ollama.eval_count],
    ]) {
      const line = page.locator("#events li", { hasText: `Answered ${SMOL} via ${api}: ${tokens} token` });
      await line.waitFor();
      lines.push((await line.textContent()).trim());
    }
    // Stopped, the model keeps its conversations on disk, and its row on disk says so.
    await ensureUnloaded(server, SMOL);
    // The row header is the name; the first data cell, the size.
    const size = diskRow(page, SMOL).locator("td").first();
    await eventually(async () => assert.match((await size.getAttribute("title")) ?? "", /^conversation cache: \d+(\.\d)? MB on disk$/));
    lines.push(await size.getAttribute("title"));
    t.diagnostic(lines.join(" · "));
  });
});

test("a pinned model's Stop button is disabled and says why", async (t) => {
  const pinned = await startServer({ env: { HEADROOM_PINNED: SMOL } });
  try {
    await withPage("pinned", pinned, "/", async (page) => {
      await mainReady(page);
      const row = loadedRow(page, SMOL);
      await row.locator("td.state", { hasText: "ready" }).waitFor({ timeout: 20_000 });
      const stop = row.getByRole("button", { name: "Stop" });
      assert.equal(await stop.isDisabled(), true);
      const title = await stop.getAttribute("title");
      assert.match(title, /^Pinned: /);
      assert.match(title, /unpin it in Preferences/);
      await eventually(async () => assert.equal(await row.locator("td.idle").textContent(), "pinned"));
      // The disabled button tells the truth: the server refuses to stop it.
      const refused = await pinned.api(`/api/memory/models/${SMOL}`, { method: "DELETE" });
      assert.equal(refused.status, 409);
      assert.equal(refused.body.error.code, "model_pinned");
      t.diagnostic(`Stop disabled, title: "${title}"`);
    });
  } finally {
    await pinned.stop();
  }
});

test("a config file the server could not use is announced in a banner", async (t) => {
  const broken = await startServer({ config: "this is = not TOML [[\n" });
  try {
    await withPage("notices", broken, "/", async (page) => {
      await mainReady(page);
      const { notices } = (await broken.api("/api/settings")).body;
      assert.equal(notices.length, 1, "the server reports the reset");
      const banner = page.locator("#notices");
      await banner.waitFor();
      assert.equal((await banner.textContent()).trim(), notices[0]);
      t.diagnostic(`banner: "${notices[0].split("\n")[0]}…"`);
    });
  } finally {
    await broken.stop();
  }
});

test("the page follows the event stream without a reload", async (t) => {
  await withPage("live", server, "/", async (page) => {
    await mainReady(page);
    await page.evaluate(() => (window.notReloaded = true));
    const statusReads = [];
    page.on("request", (request) => {
      if (request.url().endsWith("/api/memory/status")) statusReads.push(Date.now());
    });
    const started = Date.now();

    await ensureLoaded(server, GEMMA);
    const row = loadedRow(page, GEMMA);
    await row.locator("td.state", { hasText: "ready" }).waitFor({ timeout: 10_000 });
    await page.locator("#events li", { hasText: `Loaded ${GEMMA} in` }).waitFor();
    await diskRow(page, GEMMA).waitFor({ state: "detached" });

    await ensureUnloaded(server, GEMMA);
    await row.waitFor({ state: "detached", timeout: 10_000 });
    await page.locator("#events li", { hasText: `Unloaded ${GEMMA} (requested)` }).waitFor();
    await diskRow(page, GEMMA).waitFor();
    assert.equal(await page.evaluate(() => window.notReloaded), true, "the page was not reloaded");

    // A burst of events (loading, loaded, unloading, unloaded) must not make the page poll harder.
    await sleep(1500);
    const seconds = (Date.now() - started) / 1000;
    assert.ok(statusReads.length <= Math.ceil(seconds) + 1, `${statusReads.length} status reads in ${seconds.toFixed(1)} s`);
    t.diagnostic(`row appeared and left on events; ${statusReads.length} status reads in ${seconds.toFixed(1)} s`);
  });
});

test("the page says when it lost the server and catches up when it is back", async (t) => {
  const first = await startServer();
  let second = null;
  try {
    await withPage("reconnect", first, "/", async (page) => {
      await mainReady(page);
      await first.stop();
      await page.locator('#connection[data-state="reconnecting"]').waitFor({ timeout: 10_000 });
      assert.equal(await page.locator("#connection-label").textContent(), "reconnecting");

      second = await startServer({ port: first.port });
      await ensureLoaded(second, SMOL);
      // The browser reconnects by itself; the page then re-reads what it missed.
      await page.locator('#connection[data-state="live"]').waitFor({ timeout: 15_000 });
      await loadedRow(page, SMOL).waitFor({ timeout: 10_000 });
      await eventually(async () => assert.equal(await page.locator("#status").textContent(), ""));
      t.diagnostic("live → reconnecting → live; a model loaded meanwhile shows up");
    });
  } finally {
    await first.stop();
    await second?.stop();
  }
});

test("a server with an API key asks for it once, then the page works with it", async (t) => {
  const key = "browser-key-0123456789abcdef";
  const keyed = await startServer({ env: { HEADROOM_API_KEY: key } });
  try {
    assert.equal((await keyed.api("/api/memory/status")).status, 401, "the API is closed without the key");
    await withPage("api-key", keyed, "/", async (page) => {
      const dialog = page.locator("#api-key-dialog");
      await dialog.waitFor({ timeout: 10_000 });
      assert.match(await dialog.textContent(), /needs its API key/);
      await page.screenshot({ path: join(ARTIFACTS, "api-key.png") });

      // A wrong key is refused and said so.
      await dialog.locator("input").fill("not-the-key-0123456789");
      await dialog.getByRole("button", { name: "Unlock" }).click();
      await page.locator("#api-key-dialog", { hasText: "was refused" }).waitFor({ timeout: 10_000 });

      await page.locator("#api-key-dialog input").fill(key);
      await page.locator("#api-key-dialog").getByRole("button", { name: "Unlock" }).click();
      // The event stream (read with fetch, which can send the key) goes live.
      await mainReady(page);
      assert.equal(await page.locator("#api-key-dialog").count(), 0, "no prompt once the key is right");
      await diskRow(page, SMOL).getByRole("button", { name: "Load" }).click();
      await loadedRow(page, SMOL).locator("td.state", { hasText: "ready" }).waitFor({ timeout: 20_000 });
      const { status, body } = await keyed.api("/api/memory/status", { headers: { Authorization: `Bearer ${key}` } });
      assert.equal(status, 200);
      assert.ok(body.models.some((m) => m.id === SMOL), "the page's Load, sent with the key, loaded the model");
      t.diagnostic("prompted for the key, refused a wrong one, then followed events and loaded a model with it");
    });
  } finally {
    await keyed.stop();
  }
});

test("a load the server refuses shows its message beside the model", async (t) => {
  await ensureUnloaded(server, GEMMA);
  const tiny = await server.api("/api/settings", putJSON({ memory_limit: 200_000_000 }));
  assert.equal(tiny.status, 200, JSON.stringify(tiny.body));
  t.after(() => server.api("/api/settings", putJSON({ memory_limit: "auto" })));

  await withPage("refused", server, "/", async (page) => {
    await mainReady(page);
    const model = page.locator(`#on-disk tbody[data-model="${GEMMA}"]`);
    await model.locator("td.fit", { hasText: "does not fit" }).waitFor();
    const answer = page.waitForResponse((r) => r.url().endsWith(`/${GEMMA}/load`));
    await diskRow(page, GEMMA).getByRole("button", { name: "Load" }).click();
    const refused = await answer;
    assert.equal(refused.status(), 503);
    const { error } = await refused.json();
    await model.locator(".row-error", { hasText: error.message }).waitFor();
    await page.locator("#events li", { hasText: `Refused ${GEMMA}: ${error.message}` }).waitFor();
    assert.equal(await modelStatus(server, GEMMA), null, "the model did not load");
    t.diagnostic(`${refused.status()} ${error.code}: "${error.message}" shown beside the model`);
  });
});

// ---- Preferences ----

/** Waits until Preferences has filled its form from the server. */
async function prefsReady(page) {
  await eventually(async () => assert.notEqual(await page.locator("#port").inputValue(), ""));
}

test("saving 5 minutes in Preferences writes the config file and moves the idle deadline", async (t) => {
  await ensureUnloaded(server, SMOL);
  await ensureLoaded(server, SMOL);
  const before = await modelStatus(server, SMOL);
  const beforeIn = before.expires_at - Date.now();
  assert.ok(Math.abs(beforeIn - 10 * MINUTE) < 30_000, `expires in ${beforeIn} ms, not about 10 min`);

  await withPage("prefs-save", server, "/ui/preferences.html", async (page) => {
    await prefsReady(page);
    assert.equal(await page.locator("#idle-timeout").inputValue(), "10m");
    const puts = [];
    page.on("request", (request) => request.method() === "PUT" && puts.push(request.postDataJSON()));

    await page.getByLabel("Unload a model after it has been idle for").selectOption("5m");
    await page.getByRole("button", { name: "Save" }).click();
    await page.locator("#save-status", { hasText: "Saved" }).waitFor();
    assert.deepEqual(puts, [{ idle_timeout: "5m" }], "only the changed setting is sent");
    await page.screenshot({ path: join(ARTIFACTS, "preferences.png"), fullPage: true });
  });

  const config = await readFile(server.config, "utf8");
  assert.match(config, /^idle_timeout = "5m"$/m);
  const after = await modelStatus(server, SMOL);
  const afterIn = after.expires_at - Date.now();
  assert.ok(Math.abs(afterIn - 5 * MINUTE) < 30_000, `expires in ${afterIn} ms, not about 5 min`);
  assert.equal(after.expires_at - after.last_used, 5 * MINUTE);
  t.diagnostic(`expires_at: before now+${(beforeIn / 1000).toFixed(0)} s, after now+${(afterIn / 1000).toFixed(0)} s; config has idle_timeout = "5m"`);
});

test("Preferences lists other apps' stores with their models, and leaving one out is saved", async (t) => {
  // A home folder with llama.cpp's download cache holding the test model, and no other store.
  const home = await mkdtemp(join(tmpdir(), "headroom-home-"));
  const cache = join(home, ".cache", "llama.cpp");
  await mkdir(cache, { recursive: true });
  await copyFile(join(MODELS_DIR, `${SMOL}.gguf`), join(cache, `org_repo_${SMOL}.gguf`));
  const own = await startServer({ env: { HOME: home, XDG_CACHE_HOME: join(home, ".cache"), HEADROOM_SOURCES: "huggingface,lm_studio,ollama,llama_cpp" } });
  t.after(async () => {
    await own.stop();
    await rm(home, { recursive: true, force: true });
  });
  const models = (await own.api("/api/models")).body.models;
  assert.ok(models.some((m) => m.id === `llamacpp:org_repo_${SMOL}` && m.source === "llama_cpp"), JSON.stringify(models.map((m) => m.id)));

  await withPage("prefs-sources", own, "/ui/preferences.html", async (page) => {
    await prefsReady(page);
    const row = page.locator("#sources label", { hasText: "llama.cpp cache" });
    await row.waitFor();
    const text = await row.innerText();
    assert.match(text, new RegExp(`${cache.replaceAll(".", "\\.")} · 1 model`), text);
    assert.match(await page.locator("#sources label", { hasText: "Ollama" }).innerText(), /not found on this machine/);
    assert.equal(await page.locator("#source-llama_cpp").isChecked(), true);
    const puts = [];
    page.on("request", (request) => request.method() === "PUT" && puts.push(request.postDataJSON()));
    await page.locator("#source-llama_cpp").uncheck();
    await page.getByRole("button", { name: "Save" }).click();
    await page.locator("#save-status", { hasText: "Other apps' models: applies after restart" }).waitFor();
    assert.deepEqual(puts, [{ sources: ["huggingface", "lm_studio", "ollama"] }]);
    await page.screenshot({ path: join(ARTIFACTS, "preferences-sources.png"), fullPage: true });
  });
  const config = await readFile(own.config, "utf8");
  assert.match(config, /^sources = \[\s*"huggingface",\s*"lm_studio",\s*"ollama",?\s*\]$/m);
  t.diagnostic(`listed: llamacpp:org_repo_${SMOL}; saved: sources without llama_cpp`);
});

test("a Hugging Face token typed in Preferences is saved, never shown again, and Forget removes it", async (t) => {
  const own = await startServer();
  t.after(() => own.stop());
  const token = "hf_browserTestToken0123456789";
  await withPage("prefs-token", own, "/ui/preferences.html", async (page) => {
    await prefsReady(page);
    const field = page.getByLabel("Hugging Face token");
    assert.equal(await field.getAttribute("type"), "password");
    const puts = [];
    page.on("request", (request) => request.method() === "PUT" && puts.push(request.postDataJSON()));
    await field.fill("has a space");
    await page.getByRole("button", { name: "Save" }).click();
    await page.locator("#error-hub_token", { hasText: "no spaces" }).waitFor();
    assert.deepEqual(puts, [], "nothing is sent while the field is wrong");
    await field.fill(token);
    await page.getByRole("button", { name: "Save" }).click();
    await page.locator("#save-status", { hasText: "Saved" }).waitFor();
    assert.deepEqual(puts, [{ hub_token: token }]);
    assert.match(await readFile(own.config, "utf8"), new RegExp(`^hub_token = "${token}"$`, "m"));
    // Saved: the field is empty again and says so; the page never holds the token.
    assert.equal(await field.inputValue(), "");
    assert.equal(await field.getAttribute("placeholder"), "A token is saved");
    assert.ok(!(await page.content()).includes(token));
    await page.getByRole("button", { name: "Forget" }).click();
    await page.getByRole("button", { name: "Save" }).click();
    await page.locator("#save-status", { hasText: "Saved" }).waitFor();
    assert.deepEqual(puts[1], { hub_token: null });
    assert.equal(await field.getAttribute("placeholder"), "hf_…");
  });
  const shown = (await own.api("/api/settings")).body.settings.hub_token;
  assert.equal(shown, null);
  const config = await readFile(own.config, "utf8");
  assert.ok(!config.includes(token), config);
  t.diagnostic("saved as (hidden), the field emptied, then forgotten: the config file no longer holds it");
});

/**
 * A local stand-in for the Hugging Face Hub holding one repo with one GGUF file, `file`:
 * `/api/models/<org>/<repo>/tree/main` lists it, `/<org>/<repo>/resolve/main/<file>` redirects
 * to `/cdn/<file>` with `X-Linked-Etag` (the sha256) and `X-Linked-Size`; the storage sends the
 * file 1 MiB every 40 ms, so a page can watch it arrive.
 */
async function startHub(bytes, sha256, file) {
  const http = await import("node:http");
  const hub = http.createServer(async (request, response) => {
    if (/^\/api\/models\/[^/]+\/[^/]+\/tree\/main/.test(request.url)) {
      const listing = [
        { type: "file", oid: "0".repeat(40), size: 12, path: "README.md" },
        { type: "file", oid: "1".repeat(40), size: bytes.length, path: file, lfs: { oid: sha256, size: bytes.length, pointerSize: 134 } },
      ];
      response.writeHead(200, { "Content-Type": "application/json" }).end(JSON.stringify(listing));
      return;
    }
    const resolve = request.url.match(/^\/[^/]+\/[^/]+\/resolve\/main\/(.+)$/);
    if (resolve) {
      response.writeHead(302, {
        Location: `/cdn/${resolve[1]}`,
        "X-Linked-Etag": `"${sha256}"`,
        "X-Linked-Size": String(bytes.length),
      });
      response.end();
      return;
    }
    if (!request.url.startsWith("/cdn/")) {
      response.writeHead(404).end();
      return;
    }
    const start = Number((request.headers.range ?? "").match(/^bytes=(\d+)-$/)?.[1] ?? 0);
    response.writeHead(start > 0 ? 206 : 200, { "Content-Length": String(bytes.length - start) });
    for (let at = start; at < bytes.length && !response.destroyed; at += 1 << 20) {
      response.write(bytes.subarray(at, Math.min(at + (1 << 20), bytes.length)));
      await sleep(40);
    }
    response.end();
  });
  await new Promise((resolve) => hub.listen(0, "127.0.0.1", resolve));
  return { url: `http://127.0.0.1:${hub.address().port}`, close: () => new Promise((resolve) => hub.close(resolve)) };
}

test("a download from the Hub shows its progress moving, then the model on disk, which Delete removes", async (t) => {
  const bytes = await readFile(join(MODELS_DIR, `${SMOL}.gguf`));
  const sha256 = (await readFile(join(MODELS_DIR, `${SMOL}.gguf.sha256`), "utf8")).split(/\s+/)[0];
  const hub = await startHub(bytes, sha256, "SmolLM2-pulled.gguf");
  const own = await startServer({ env: { HF_ENDPOINT: hub.url } });
  t.after(async () => {
    await own.stop();
    await hub.close();
  });
  await withPage("pull", own, "/", async (page) => {
    await mainReady(page);
    // The repo typed is looked up on the Hub: its one GGUF file is offered and filled in.
    await page.getByLabel("Hugging Face repo").fill("bartowski/SmolLM2-135M-Instruct-GGUF");
    await page.locator("#pull-hint", { hasText: "1 GGUF file in bartowski/SmolLM2-135M-Instruct-GGUF: choose one." }).waitFor();
    assert.equal(await page.getByLabel("GGUF file").inputValue(), "SmolLM2-pulled.gguf");
    assert.equal(await page.locator("#pull-files option").getAttribute("label"), "98 MB");
    await page.getByRole("button", { name: "Download" }).click();
    const bar = page.locator('#pulls li[data-model="SmolLM2-pulled"] progress');
    await bar.waitFor();
    const readings = [];
    await eventually(async () => {
      readings.push(await bar.evaluate((b) => b.value / b.max));
      const moving = readings.filter((r) => r > 0 && r < 1);
      assert.ok(new Set(moving).size >= 2, `progress readings ${JSON.stringify(readings)}`);
    }, 60_000);
    const figures = await page.locator('#pulls li[data-model="SmolLM2-pulled"] .pull-figures').innerText();
    assert.match(figures, /MB of \d+ MB · [\d.]+ MB\/s · \d+:\d\d left/, figures);
    await page.screenshot({ path: join(ARTIFACTS, "pull-progress.png"), fullPage: true });
    await page.locator('#pulls li[data-model="SmolLM2-pulled"][data-state="done"]').waitFor({ timeout: 60_000 });
    assert.match(await page.locator('#pulls li[data-model="SmolLM2-pulled"] .pull-figures').innerText(), /done: model SmolLM2-pulled/);
    await diskRow(page, "SmolLM2-pulled").waitFor({ timeout: 10_000 });
    // Delete asks once more on the button, then the file goes; a model of a folder the person
    // added offers no Delete.
    const pulled = join(own.config, "..", "data", "models", "SmolLM2-pulled.gguf");
    await stat(pulled);
    await diskRow(page, "SmolLM2-pulled").getByRole("button", { name: "Delete… SmolLM2-pulled" }).click();
    await diskRow(page, "SmolLM2-pulled").getByRole("button", { name: "Delete the file? SmolLM2-pulled" }).click();
    await diskRow(page, "SmolLM2-pulled").waitFor({ state: "detached", timeout: 10_000 });
    await assert.rejects(stat(pulled), /ENOENT/);
    assert.equal(await diskRow(page, SMOL).locator("button.delete").isVisible(), false);
    t.diagnostic(`progress seen: ${readings.map((r) => r.toFixed(2)).join(", ")}; then done, listed on disk, and deleted after a second click`);
  });
});

test("an invalid custom idle timeout shows an error beside the field and saves nothing", async (t) => {
  const configBefore = await readFile(server.config, "utf8");
  const settingsBefore = (await server.api("/api/settings")).body.settings;

  await withPage("prefs-invalid", server, "/ui/preferences.html", async (page) => {
    await prefsReady(page);
    const writes = [];
    page.on("request", (request) => request.method() !== "GET" && writes.push(request.method()));

    await page.locator("#idle-timeout").selectOption("custom");
    const custom = page.getByLabel("Custom idle timeout, in minutes");
    for (const value of ["-5", "abc", "0", "1.5"]) {
      await custom.fill(value);
      await page.getByRole("button", { name: "Save" }).click();
      const error = page.locator("#error-idle_timeout");
      await error.filter({ hasText: "whole number of minutes" }).waitFor();
      assert.equal(await custom.getAttribute("aria-invalid"), "true", `"${value}" is marked invalid`);
      assert.match(await custom.getAttribute("aria-describedby"), /\berror-idle_timeout\b/);
      assert.match(await page.locator("#save-status").textContent(), /Nothing saved/);
    }
    await page.screenshot({ path: join(ARTIFACTS, "preferences-error.png"), fullPage: true });
    assert.deepEqual(writes, [], "no request was sent");
  });

  assert.equal(await readFile(server.config, "utf8"), configBefore, "the config file is unchanged");
  assert.deepEqual((await server.api("/api/settings")).body.settings, settingsBefore, "the settings are unchanged");
  t.diagnostic("-5, abc, 0, 1.5: each refused beside the field; no request sent; config and settings unchanged");
});

test("a value the server refuses shows its message beside the field it names", async (t) => {
  const configBefore = await readFile(server.config, "utf8");
  await withPage("prefs-refused", server, "/ui/preferences.html", async (page) => {
    await prefsReady(page);
    // Critical below constrained: only the server knows the thresholds must rise.
    await page.getByLabel("Critical").fill("70");
    const answer = page.waitForResponse((r) => r.request().method() === "PUT");
    await page.getByRole("button", { name: "Save" }).click();
    const refused = await answer;
    assert.equal(refused.status(), 422);
    const { error } = await refused.json();
    assert.equal(error.param, "pressure");
    await page.locator("#error-pressure", { hasText: error.message }).waitFor();
    assert.equal(await page.getByLabel("Critical").getAttribute("aria-invalid"), "true");
    assert.equal(await page.locator("#error-form").textContent(), "");
    t.diagnostic(`422 param "${error.param}" shown beside the thresholds: "${error.message}"`);
  });
  assert.equal(await readFile(server.config, "utf8"), configBefore, "the config file is unchanged");
});

test("an idle timeout outside the list shows as custom, and saving nothing sends nothing", async (t) => {
  const shown = {};
  for (const [written, expected] of [["2h", "120"], ["90s", "90s"]]) {
    const put = await server.api("/api/settings", putJSON({ idle_timeout: written }));
    assert.equal(put.status, 200, JSON.stringify(put.body));
    await withPage(`prefs-custom-${written}`, server, "/ui/preferences.html", async (page) => {
      await prefsReady(page);
      assert.equal(await page.locator("#idle-timeout").inputValue(), "custom");
      const custom = page.getByLabel("Custom idle timeout, in minutes");
      assert.equal(await custom.isVisible(), true);
      shown[written] = await custom.inputValue();
      assert.equal(shown[written], expected);

      const writes = [];
      page.on("request", (request) => request.method() !== "GET" && writes.push(request.method()));
      await page.getByRole("button", { name: "Save" }).click();
      await page.locator("#save-status", { hasText: "No changes to save" }).waitFor();
      assert.deepEqual(writes, []);
    });
  }
  t.diagnostic(`"2h" shown as ${shown["2h"]} minutes, "90s" kept as "${shown["90s"]}"; Save sent nothing`);
});

test("the memory limit slider shows its figure live and saves a percentage of RAM", async (t) => {
  t.after(() => server.api("/api/settings", putJSON({ memory_limit: "auto" })));
  const { body: before } = await server.api("/api/memory/status");
  const ram = before.system.total;
  let figure;
  await withPage("prefs-limit", server, "/ui/preferences.html", async (page) => {
    await prefsReady(page);
    const auto = page.getByLabel("Automatic");
    assert.equal(await auto.isChecked(), true);
    const slider = page.getByLabel("Pool memory limit, percent of RAM");
    assert.equal(await slider.isDisabled(), true, "the slider is off while the limit is automatic");
    await auto.uncheck();
    await slider.fill("40");
    figure = await page.locator("#limit-figure").textContent();
    assert.equal(figure, `${toGB(ram * 0.4).toFixed(1)} GB · 40 % of ${toGB(ram).toFixed(1)} GB`);

    const puts = [];
    page.on("request", (request) => request.method() === "PUT" && puts.push(request.postDataJSON()));
    await page.getByRole("button", { name: "Save" }).click();
    await page.locator("#save-status", { hasText: "Saved" }).waitFor();
    assert.deepEqual(puts, [{ memory_limit: "40%" }]);
  });
  const { body: after } = await server.api("/api/memory/status");
  assert.ok(Math.abs(after.pool.limit - ram * 0.4) < ram * 0.01, `limit ${after.pool.limit} is not 40 % of ${ram}`);
  assert.match(await readFile(server.config, "utf8"), /^memory_limit = "40%"$/m);
  t.diagnostic(`slider figure "${figure}"; pool limit now ${after.pool.limit} bytes of ${ram}`);
});

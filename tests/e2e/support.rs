//! Starting and talking to a headless server.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

pub const SMOLLM2: &str = "SmolLM2-135M-Instruct.Q4_1";
pub const GEMMA: &str = "gemma-3-270m-q4_k_m";
/// all-MiniLM-L6-v2, an embedding model (BERT, mean pooling).
pub const MINILM: &str = "all-MiniLM-L6-v2-f16";

/// The folder with the real test models; the suite cannot mean anything without them.
pub fn models_dir() -> PathBuf {
    let dir = std::env::var_os("HEADROOM_TEST_MODELS_DIR")
        .map(PathBuf::from)
        .expect("HEADROOM_TEST_MODELS_DIR is not set: run the tests through scripts/test.sh, which fetches the models");
    assert!(
        dir.join(format!("{SMOLLM2}.gguf")).is_file(),
        "{} has no {SMOLLM2}.gguf: run scripts/test.sh",
        dir.display()
    );
    dir
}

pub fn model_path(id: &str) -> PathBuf {
    models_dir().join(format!("{id}.gguf"))
}

/// A running `headroom --headless`. Dropping it kills the process.
pub struct Server {
    child: Option<Child>,
    pub base: String,
    pub port: u16,
    /// Keeps the data and config folders alive for the server's lifetime.
    _home: tempfile::TempDir,
    data_dir: PathBuf,
    stderr_log: PathBuf,
    pub client: reqwest::Client,
}

pub struct Options {
    pub parallel: u32,
    pub context_size: u32,
    pub extra_models_dir: Option<PathBuf>,
    pub queue_size: u32,
    /// More `HEADROOM_*` settings (memory limit, pinned models, ...).
    pub env: Vec<(&'static str, String)>,
    /// The config file's text, if any.
    pub config: Option<String>,
    /// Where the config file is, when not in the server's own temporary folder.
    pub config_path: Option<PathBuf>,
    /// Cgroup folders to run the server in (a v1 memory cgroup, a unified-hierarchy one).
    pub cgroups: Vec<PathBuf>,
    /// Run the desktop app (tray and window) instead of `--headless`; `env` then needs a
    /// `DISPLAY`.
    pub desktop: bool,
    /// An API key for the server; the test's client then sends it with every request.
    pub api_key: Option<String>,
    /// The data folder, when it must outlive the server (a restart that finds what the last
    /// run left); otherwise one in the server's temporary folder.
    pub data_dir: Option<PathBuf>,
    /// Run the server in a mount namespace of its own, its data folder a tmpfs of this many
    /// bytes: a small disk that can fill up. The test reaches it through
    /// [`Server::as_seen`].
    pub tmpfs: Option<u64>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            parallel: 4,
            context_size: 1024,
            extra_models_dir: None,
            queue_size: 32,
            env: Vec::new(),
            config: None,
            config_path: None,
            cgroups: Vec::new(),
            desktop: false,
            api_key: None,
            data_dir: None,
            tmpfs: None,
        }
    }
}

impl Options {
    pub fn with_env(key: &'static str, value: impl Into<String>) -> Self {
        Self {
            env: vec![(key, value.into())],
            ..Self::default()
        }
    }
}

impl Server {
    pub fn start() -> Self {
        Self::start_with(Options::default())
    }

    pub fn start_with(options: Options) -> Self {
        let home = tempfile::tempdir().expect("temp dir");
        let stderr_log = home.path().join("stderr.log");
        let data_dir = options
            .data_dir
            .clone()
            .unwrap_or_else(|| home.path().join("data"));
        let config_path = options
            .config_path
            .clone()
            .unwrap_or_else(|| home.path().join("config.toml"));
        if let Some(config) = &options.config {
            std::fs::write(&config_path, config).expect("write config");
        }
        let mut command = if let Some(bytes) = options.tmpfs {
            assert!(options.cgroups.is_empty(), "a tmpfs or cgroups, not both");
            std::fs::create_dir_all(&data_dir).expect("data folder");
            // The shell mounts the tmpfs in the new namespace, then becomes the server.
            let mut command = Command::new("unshare");
            command
                .args(["--mount", "--propagation", "private", "sh", "-c"])
                .arg("mount -t tmpfs -o size=\"$TMPFS_SIZE\" tmpfs \"$TMPFS_AT\" && exec \"$0\" \"$@\"")
                .arg(env!("CARGO_BIN_EXE_headroom"))
                .env("TMPFS_SIZE", bytes.to_string())
                .env("TMPFS_AT", &data_dir);
            command
        } else if options.cgroups.is_empty() {
            Command::new(env!("CARGO_BIN_EXE_headroom"))
        } else {
            // The shell joins the cgroups, then becomes the server (same pid).
            let join = join_cgroups(&options.cgroups);
            let mut command = Command::new("sh");
            command
                .arg("-c")
                .arg(format!("{join}exec \"$0\" \"$@\""))
                .arg(env!("CARGO_BIN_EXE_headroom"));
            command
        };
        if !options.desktop {
            command.arg("--headless");
        }
        command
            .arg("--port")
            .arg("0")
            .arg("--data-dir")
            .arg(&data_dir)
            .arg("--config")
            .arg(&config_path)
            .arg("--models-dir")
            .arg(models_dir());
        if let Some(dir) = &options.extra_models_dir {
            command.arg("--models-dir").arg(dir);
        }
        command
            .env_remove("HEADROOM_MODELS_DIR")
            .env_remove("HEADROOM_PORT")
            .env_remove("HEADROOM_BIND")
            .env_remove("HEADROOM_API_KEY")
            // Other apps' stores on this machine stay out of the tests' model lists
            // (tests/e2e/sources.rs builds its own).
            .env("HEADROOM_SOURCES", "")
            .env("HEADROOM_THREADS", "2")
            .env("HEADROOM_PARALLEL", options.parallel.to_string())
            .env("HEADROOM_CONTEXT_SIZE", options.context_size.to_string())
            .env("HEADROOM_QUEUE_SIZE", options.queue_size.to_string())
            .env("HEADROOM_LOG", "info,headroom_core=debug,llama-cpp-2=warn")
            .envs(options.env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr_log).expect("log file"));
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(key) = &options.api_key {
            command.env("HEADROOM_API_KEY", key);
            let bearer = format!("Bearer {key}").parse().expect("a header value");
            headers.insert(reqwest::header::AUTHORIZATION, bearer);
        }
        let mut child = command.spawn().expect("start headroom");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("Headroom listening on ") {
                    let _ = tx.send(url.trim().to_string());
                }
            }
        });
        let base = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(base) => base,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "headroom did not announce its address; stderr:\n{}",
                    std::fs::read_to_string(&stderr_log).unwrap_or_default()
                );
            }
        };
        let port = base
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("port in address");
        Self {
            child: Some(child),
            base,
            port,
            _home: home,
            data_dir,
            stderr_log,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(300))
                .default_headers(headers)
                .build()
                .expect("client"),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The server's data folder (`--data-dir`).
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir.clone()
    }

    /// `path` as the server sees it, inside its mount namespace (a `tmpfs` data folder).
    pub fn as_seen(&self, path: &Path) -> PathBuf {
        let relative = path.strip_prefix("/").unwrap_or(path);
        PathBuf::from(format!("/proc/{}/root", self.pid())).join(relative)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).expect("running")
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_log).unwrap_or_default()
    }

    /// Resident memory of the server process, from /proc.
    pub fn rss(&self) -> u64 {
        rss_of(self.pid())
    }

    /// The anonymous part of the resident memory: the heap and the buffers llama.cpp allocates,
    /// not the mapped model file.
    pub fn rss_anon(&self) -> u64 {
        proc_status_bytes(self.pid(), "RssAnon:")
    }

    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.post_bytes(path, body.to_string().into_bytes()).await
    }

    /// Posts any bytes as JSON (bad JSON included); the answer must be JSON.
    pub async fn post_bytes(&self, path: &str, body: Vec<u8>) -> (u16, Value) {
        let response = self
            .client
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("request sent");
        json_answer(response).await
    }

    /// A short text completion ("Hi", `max_tokens` tokens): its status and JSON body.
    pub async fn complete(&self, model: &str, max_tokens: u32) -> (u16, Value) {
        self.post(
            "/v1/completions",
            &serde_json::json!({"model": model, "prompt": "Hi", "max_tokens": max_tokens}),
        )
        .await
    }

    /// A short text completion that must be answered with 200.
    pub async fn complete_ok(&self, model: &str, max_tokens: u32) -> Value {
        let (status, body) = self.complete(model, max_tokens).await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// Starts a streamed greedy count ("6, 7, 8, ..."), which runs on for as long as
    /// `max_tokens` allows, and returns once the response headers are in.
    pub async fn start_counting_stream(&self, max_tokens: u32) -> reqwest::Response {
        let body = serde_json::json!({
            "model": SMOLLM2, "prompt": "1, 2, 3, 4, 5,", "temperature": 0,
            "max_tokens": max_tokens, "stream": true,
        });
        let response = self
            .client
            .post(self.url("/v1/completions"))
            .json(&body)
            .send()
            .await
            .expect("sent");
        assert_eq!(response.status(), 200);
        response
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let response = self
            .client
            .get(self.url(path))
            .send()
            .await
            .expect("request sent");
        let status = response.status().as_u16();
        let json = response.json().await.expect("JSON body");
        (status, json)
    }

    /// The Prometheus text of `/metrics`.
    pub async fn metrics(&self) -> String {
        self.client
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text")
    }

    /// One unlabelled figure of `/metrics`, such as `headroom_runtime_tasks_alive`.
    pub async fn metric(&self, name: &str) -> f64 {
        let text = self.metrics().await;
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
    }

    pub async fn status(&self) -> Value {
        self.get("/api/status").await.1
    }

    /// The status entry of a loaded model.
    pub async fn model_status(&self, id: &str) -> Option<Value> {
        let status = self.status().await;
        status["pool"]["models"]
            .as_array()
            .and_then(|models| models.iter().find(|m| m["id"] == id).cloned())
    }

    /// Sends a request with any method; the answer must be JSON.
    pub async fn call(&self, method: reqwest::Method, path: &str) -> (u16, Value) {
        let response = self
            .client
            .request(method, self.url(path))
            .send()
            .await
            .expect("request sent");
        json_answer(response).await
    }

    /// Sends JSON with any method; the answer must be JSON.
    pub async fn send_json(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &Value,
    ) -> (u16, Value) {
        let response = self
            .client
            .request(method, self.url(path))
            .json(body)
            .send()
            .await
            .expect("request sent");
        json_answer(response).await
    }

    /// Posts JSON; the answer's status, whether it carries `Retry-After`, and its JSON body.
    pub async fn post_with_retry_after(&self, path: &str, body: &Value) -> (u16, bool, Value) {
        let response = self
            .client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("request sent");
        let retry_after = response.headers().contains_key("retry-after");
        let (status, json) = json_answer(response).await;
        (status, retry_after, json)
    }

    /// Pressure thresholds under what this machine already uses (critical at once), or with
    /// `false` the defaults again; through the live settings API, as Preferences does.
    pub async fn set_critical_thresholds(&self, critical_now: bool) {
        let pressure = if critical_now {
            serde_json::json!({"elevated": 1, "constrained": 2, "critical": 3, "emergency": 99.9})
        } else {
            serde_json::json!({"elevated": 75, "constrained": 85, "critical": 90, "emergency": 95})
        };
        let (status, body) = self
            .send_json(
                reqwest::Method::PUT,
                "/api/settings",
                &serde_json::json!({ "pressure": pressure }),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }

    /// Seconds from now until `id`'s idle deadline (`expires_at`), or `None` when it has none.
    pub async fn expires_in(&self, id: &str) -> Option<f64> {
        let model = self.memory_status(id).await.expect("loaded");
        let at = model["expires_at"].as_u64()?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_millis() as f64;
        Some((at as f64 - now) / 1000.0)
    }

    /// `/api/memory/status`'s entry for a model.
    pub async fn memory_status(&self, id: &str) -> Option<Value> {
        let (_, status) = self.get("/api/memory/status").await;
        status["models"]
            .as_array()
            .and_then(|models| models.iter().find(|m| m["id"] == id).cloned())
    }

    /// Subscribes to `/api/events`; returns once the subscription is in place.
    pub async fn events(&self) -> EventLog {
        let response = self
            .client
            .get(self.url("/api/events"))
            .send()
            .await
            .expect("events");
        assert_eq!(response.status(), 200);
        let events = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = std::sync::Arc::clone(&events);
        tokio::spawn(async move {
            let mut response = response;
            let mut buffer = String::new();
            while let Ok(Some(chunk)) = response.chunk().await {
                buffer.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(end) = buffer.find("\n\n") {
                    let event: String = buffer.drain(..end + 2).collect();
                    // Keep-alive comments (": ...") carry no data.
                    let data: String = event
                        .lines()
                        .filter_map(|l| l.strip_prefix("data:"))
                        .map(str::trim_start)
                        .collect();
                    if let Ok(value) = serde_json::from_str::<Value>(&data) {
                        sink.lock().expect("event log").push(value);
                    }
                }
            }
        });
        EventLog { events }
    }

    /// Sends SIGTERM and waits for the exit code.
    pub fn terminate(&mut self, within: Duration) -> Option<i32> {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status();
        self.wait_exit(within, "SIGTERM")
    }

    /// Waits for the process to exit by itself (after `cause`) and returns its exit code.
    pub fn wait_exit(&mut self, within: Duration, cause: &str) -> Option<i32> {
        let mut child = self.child.take()?;
        let deadline = Instant::now() + within;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "headroom did not exit within {within:?} of {cause}; stderr:\n{}",
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // A failing test shows what the server said: on CI that log is the only witness (its
        // folder goes with the test).
        if std::thread::panicking() {
            let log = self.stderr();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(LOG_TAIL)..];
            eprintln!(
                "--- the server's last {} log lines ---\n{}",
                tail.len(),
                tail.join("\n")
            );
        }
    }
}

/// How much of the server's log a failing test prints.
const LOG_TAIL: usize = 60;

/// The status and the JSON body of an answer that must be JSON.
async fn json_answer(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    let json =
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}"));
    (status, json)
}

/// A shell prefix that moves the shell into each of `cgroups` (`echo $$ > …/cgroup.procs`);
/// what it then runs or `exec`s starts inside them.
pub fn join_cgroups(cgroups: &[PathBuf]) -> String {
    cgroups
        .iter()
        .map(|c| format!("echo $$ > '{}/cgroup.procs' && ", c.display()))
        .collect()
}

/// The mappings of a GUI toolkit (WebKit, GTK, JavaScriptCore) in process `pid`'s memory, and
/// how many mappings it has in all.
pub fn gui_mappings(pid: u32) -> (Vec<String>, usize) {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).expect("maps");
    let gui = maps
        .lines()
        .filter(|l| l.contains("webkit") || l.contains("gtk") || l.contains("javascriptcore"))
        .map(str::to_string)
        .collect();
    (gui, maps.lines().count())
}

pub fn rss_of(pid: u32) -> u64 {
    proc_status_bytes(pid, "VmRSS:")
}

/// A `kB` field of `/proc/<pid>/status`, in bytes.
pub fn proc_status_bytes(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// The `data:` payloads of an SSE body, in order.
/// Reads a stream to its end and checks it ran its full length, uncut: `[DONE]` last, and the
/// chunk before it finished for `length`. Returns that chunk.
pub async fn read_to_full_length(stream: reqwest::Response) -> Value {
    let text = stream.text().await.expect("stream body");
    let data = sse_data(&text);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"), "{text}");
    let last: Value = serde_json::from_str(&data[data.len() - 2]).expect("last chunk");
    assert_eq!(last["choices"][0]["finish_reason"], "length", "{text}");
    last
}

/// The peak resident memory of a process, sampled every 20 ms on a thread of its own.
pub struct PeakRss {
    peak: std::sync::Arc<std::sync::atomic::AtomicU64>,
    sampling: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl PeakRss {
    /// Starts sampling `pid`, counting from `floor` (what it held before).
    pub fn start(pid: u32, floor: u64) -> Self {
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
        use std::sync::Arc;
        let peak = Arc::new(AtomicU64::new(floor));
        let sampling = Arc::new(AtomicBool::new(true));
        let thread = {
            let (peak, sampling) = (Arc::clone(&peak), Arc::clone(&sampling));
            std::thread::spawn(move || {
                while sampling.load(Ordering::Relaxed) {
                    peak.fetch_max(rss_of(pid), Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
        };
        Self {
            peak,
            sampling,
            thread,
        }
    }

    /// Stops sampling; the peak seen.
    pub fn stop(self) -> u64 {
        use std::sync::atomic::Ordering;
        self.sampling.store(false, Ordering::Relaxed);
        self.thread.join().expect("sampler");
        self.peak.load(Ordering::Relaxed)
    }
}

pub fn sse_data(body: &str) -> Vec<String> {
    body.split("\n\n")
        .filter(|event| !event.trim().is_empty())
        .map(|event| {
            let data: Vec<&str> = event
                .lines()
                .filter_map(|l| l.strip_prefix("data: ").or_else(|| l.strip_prefix("data:")))
                .collect();
            assert!(!data.is_empty(), "SSE event without data: {event:?}");
            data.join("\n")
        })
        .collect()
}

pub fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).expect("model file").len()
}

pub fn chat_body(model: &str, user: &str, max_tokens: u32, seed: u64) -> Value {
    serde_json::json!({
        "model": model,
        "messages": [{"role": "user", "content": user}],
        "max_tokens": max_tokens,
        "temperature": 0.8,
        "seed": seed,
    })
}

/// The pool events a test has seen so far.
pub struct EventLog {
    events: std::sync::Arc<std::sync::Mutex<Vec<Value>>>,
}

impl EventLog {
    pub fn all(&self) -> Vec<Value> {
        self.events.lock().expect("event log").clone()
    }

    /// Waits until an event matches, and returns it.
    pub async fn wait_for(&self, what: &str, matches: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(found) = self.all().into_iter().find(|e| matches(e)) {
                return found;
            }
            assert!(
                Instant::now() < deadline,
                "no {what} event within 60 s; saw {:#?}",
                self.all()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The position of the first event of `kind` for `model`.
    pub fn position(&self, kind: &str, model: &str) -> Option<usize> {
        self.all()
            .iter()
            .position(|e| e["type"] == kind && e["model"] == model)
    }
}

/// Total RAM of this machine, from /proc/meminfo.
pub fn total_ram() -> u64 {
    let meminfo = std::fs::read_to_string("/proc/meminfo").expect("meminfo");
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .expect("MemTotal")
}

pub fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

/// The machine's own addresses other than loopback, from `hostname -I`.
pub fn non_loopback_addresses() -> Vec<std::net::IpAddr> {
    let out = std::process::Command::new("hostname")
        .arg("-I")
        .output()
        .expect("hostname");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|a| a.parse().ok())
        .filter(|a: &std::net::IpAddr| !a.is_loopback())
        .collect()
}

/// The folder scripts/test.sh installs the Python clients (openai, anthropic, jsonschema, gguf)
/// into.
pub fn pythonpath() -> String {
    std::env::var("HEADROOM_TEST_PYTHONPATH").expect(
        "HEADROOM_TEST_PYTHONPATH: the folder scripts/test.sh installs the Python clients into",
    )
}

/// Runs one check of a client script in tests/e2e (`script BASE_URL MODEL CHECK EXTRA…`) and
/// returns the JSON it prints; panics with its output and the server's log if it fails.
pub fn python_check(
    server: &Server,
    script: &str,
    base_url: &str,
    model: &str,
    check: &str,
    extra: &[&str],
) -> Value {
    let path = format!("{}/../tests/e2e/{script}", env!("CARGO_MANIFEST_DIR"));
    let output = Command::new("python3")
        .arg(path)
        .args([base_url, model, check])
        .args(extra)
        .env("PYTHONPATH", pythonpath())
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{check} on {model} failed:\n{stdout}\n{}\nserver log:\n{}",
        String::from_utf8_lossy(&output.stderr),
        server.stderr()
    );
    let measured: Value = serde_json::from_str(stdout.trim()).expect("the check prints JSON");
    println!("{model} {check}: {measured}");
    measured
}

/// SmolLM2 copied into `dir` as `model` with another chat template (a fixture), by the `gguf`
/// package's own metadata tool.
pub fn retemplated(dir: &std::path::Path, model: &str, fixture: &str) {
    let template = format!(
        "{}/core/src/engine/tools/fixtures/{fixture}",
        env!("CARGO_MANIFEST_DIR")
    );
    let copied = Command::new("python3")
        .args([
            "-m",
            "gguf.scripts.gguf_new_metadata",
            "--chat-template-file",
        ])
        .arg(template)
        .arg(model_path(SMOLLM2))
        .arg(dir.join(format!("{model}.gguf")))
        .env("PYTHONPATH", pythonpath())
        .output()
        .expect("python3 runs");
    assert!(
        copied.status.success(),
        "{}",
        String::from_utf8_lossy(&copied.stderr)
    );
}

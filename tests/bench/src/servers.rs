//! Starting the two servers the benchmark compares, with the same model, threads and context.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::{json, Value};

use crate::client::{Endpoint, EventLog};
use crate::process::{join_cgroups, Guarded};

/// How both servers are set up for one measurement.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub threads: u32,
    /// Requests decoded together (llama-server's `-np`, Headroom's `parallel`).
    pub slots: u32,
    /// Tokens of context each slot gets.
    pub context_per_slot: u32,
}

/// `headroom --headless` (or the desktop app) with folders of its own.
pub struct Headroom {
    pub endpoint: Endpoint,
    pub events: EventLog,
    process: Guarded,
    home: tempfile::TempDir,
}

pub struct HeadroomLaunch<'a> {
    pub binary: &'a Path,
    pub models_dir: &'a Path,
    pub shape: Shape,
    /// Cgroup folders the process joins before it starts (the pressure measurement).
    pub cgroups: &'a [PathBuf],
    /// Start the desktop app instead of `--headless`, with this environment (DISPLAY, bus).
    pub desktop: Option<&'a [(String, String)]>,
    /// More settings, as `HEADROOM_*` variables.
    pub env: &'a [(&'a str, &'a str)],
}

impl Headroom {
    pub async fn start(launch: HeadroomLaunch<'_>) -> anyhow::Result<Self> {
        let home = tempfile::tempdir().context("temporary folder")?;
        let join = join_cgroups(launch.cgroups);
        // The shell joins the cgroups, then becomes the server (same pid).
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(format!("{join}exec \"$0\" \"$@\""))
            .arg(launch.binary);
        if launch.desktop.is_none() {
            command.arg("--headless");
        }
        let stderr = std::fs::File::create(home.path().join("stderr.log")).context("log file")?;
        command
            .args(["--port", "0", "--models-dir"])
            .arg(launch.models_dir)
            .arg("--data-dir")
            .arg(home.path().join("data"))
            .arg("--config")
            .arg(home.path().join("config.toml"))
            .env_remove("HEADROOM_API_KEY")
            .env_remove("HEADROOM_BIND")
            .env_remove("HEADROOM_MODELS_DIR")
            .env("HEADROOM_THREADS", launch.shape.threads.to_string())
            .env("HEADROOM_PARALLEL", launch.shape.slots.to_string())
            .env(
                "HEADROOM_CONTEXT_SIZE",
                launch.shape.context_per_slot.to_string(),
            )
            // Nothing unloads behind the benchmark's back but what it measures.
            .env("HEADROOM_IDLE_TIMEOUT", "never")
            .env("HEADROOM_NOTIFICATIONS", "false")
            .env("HEADROOM_LOG", "warn")
            .envs(launch.desktop.unwrap_or_default().iter().cloned())
            .envs(launch.env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr);
        let mut child = command.spawn().context("start headroom")?;
        let stdout = child.stdout.take().context("headroom's stdout")?;
        let process = Guarded(child);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("Headroom listening on ") {
                    let _ = tx.send(url.trim().to_string());
                }
            }
        });
        let base = tokio::task::spawn_blocking(move || rx.recv_timeout(Duration::from_secs(60)))
            .await?
            .with_context(|| {
                format!(
                    "headroom did not start: {}",
                    std::fs::read_to_string(home.path().join("stderr.log")).unwrap_or_default()
                )
            })?;
        let endpoint = Endpoint::new(base)?;
        let events = endpoint.events().await?;
        Ok(Self {
            endpoint,
            events,
            process,
            home,
        })
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Loads `model` and waits for its `loaded` event: the time the request took, and the event
    /// (measured footprint, estimate, load_ms).
    pub async fn load(&self, model: &str) -> anyhow::Result<(Duration, Value)> {
        let mark = self.events.mark();
        let started = Instant::now();
        self.endpoint
            .post(&format!("/api/memory/models/{model}/load"), &json!({}))
            .await?;
        let took = started.elapsed();
        let (_, loaded) = self
            .events
            .wait_for(mark, Duration::from_secs(60), "loaded", |e| {
                e["type"] == "loaded" && e["model"] == model
            })
            .await?;
        Ok((took, loaded))
    }

    /// Presses Stop: the time from the request to the `unloaded` event, and the event.
    pub async fn unload(&self, model: &str) -> anyhow::Result<(Duration, Value)> {
        let mark = self.events.mark();
        let started = Instant::now();
        self.endpoint
            .send(
                reqwest::Method::DELETE,
                &format!("/api/memory/models/{model}"),
                None,
            )
            .await?;
        let (at, unloaded) = self
            .events
            .wait_for(mark, Duration::from_secs(60), "unloaded", |e| {
                e["type"] == "unloaded" && e["model"] == model
            })
            .await?;
        Ok((at - started, unloaded))
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.home.path().join("stderr.log")).unwrap_or_default()
    }
}

/// llama.cpp's `llama-server` with one model.
pub struct Reference {
    pub endpoint: Endpoint,
    process: Guarded,
    /// llama-server's own log, kept for as long as it runs.
    _log: tempfile::NamedTempFile,
}

impl Reference {
    /// Starts it and waits until `/health` says the model is ready: the time from the spawn
    /// to ready is its load time (its process start included, a few ms).
    /// llama-server without its prompt cache, for the engine-to-engine rows.
    pub async fn start(
        binary: &Path,
        model: &Path,
        shape: Shape,
    ) -> anyhow::Result<(Self, Duration)> {
        Self::start_with(binary, model, shape, false).await
    }

    /// llama-server as its users run it: its prompt cache on (the default).
    pub async fn start_as_shipped(
        binary: &Path,
        model: &Path,
        shape: Shape,
    ) -> anyhow::Result<(Self, Duration)> {
        Self::start_with(binary, model, shape, true).await
    }

    async fn start_with(
        binary: &Path,
        model: &Path,
        shape: Shape,
        prompt_cache: bool,
    ) -> anyhow::Result<(Self, Duration)> {
        let port = free_port()?;
        let log = tempfile::NamedTempFile::new().context("log file")?;
        let started = Instant::now();
        let child = Command::new(binary)
            .arg("-m")
            .arg(model)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["-t", &shape.threads.to_string()])
            .args(["-tb", &shape.threads.to_string()])
            .args(["-np", &shape.slots.to_string()])
            // `-c` is the whole context, shared by the slots.
            .args(["-c", &(shape.context_per_slot * shape.slots).to_string()])
            // No warm-up decode at load: its load time then leaves out what Headroom's includes
            // (a one-token warm-up), which errs in its favour.
            .arg("--no-warmup")
            // Without a prompt cache (and Headroom's off too) for the engine-to-engine rows,
            // where a repeated prompt would measure the cache instead of the engine.
            .args(if prompt_cache {
                &[][..]
            } else {
                &["--no-cache-prompt", "-cram", "0"][..]
            })
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log.reopen().context("log file")?)
            .spawn()
            .with_context(|| format!("start {}", binary.display()))?;
        let mut process = Guarded(child);
        let endpoint = Endpoint::new(format!("http://127.0.0.1:{port}"))?;
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Some(status) = process.exited() {
                bail!(
                    "llama-server exited ({status}): {}",
                    std::fs::read_to_string(log.path()).unwrap_or_default()
                );
            }
            let ready = endpoint
                .client
                .get(endpoint.url("/health"))
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                break;
            }
            if Instant::now() > deadline {
                bail!("llama-server was not ready within 120 s");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let took = started.elapsed();
        Ok((
            Self {
                endpoint,
                process,
                _log: log,
            },
            took,
        ))
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }
}

fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("a free port")?;
    Ok(listener.local_addr()?.port())
}

//! The window process: the app binary run as `headroom --window`, started when a window is
//! asked for, given its requests on its standard input (`WindowRequest`), and left to exit when
//! its last window closes. WebKit and its helper processes live only as long as it does, so
//! with no window open the menu bar holds no WebKit at all.

use std::io::Write as _;
use std::process::{ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use headroom_core::api::AppState;

use crate::window_request::WindowRequest;

/// The variables that tell the window process where the server is and, if it has one, its API
/// key: in its environment, which only its user can read, not in its arguments, which anyone
/// can.
pub const URL_VARIABLE: &str = "HEADROOM_WINDOW_URL";
pub const KEY_VARIABLE: &str = "HEADROOM_WINDOW_KEY";

pub struct Windows {
    url: String,
    core: AppState,
    running: Option<Running>,
}

struct Running {
    stdin: ChildStdin,
    exited: Arc<AtomicBool>,
}

impl Windows {
    pub fn new(url: String, core: AppState) -> Self {
        Self {
            url,
            core,
            running: None,
        }
    }

    /// Hands `request` to the window process, starting one if none is running. Failures are
    /// logged: they come from a menu click, with nobody to return them to.
    pub fn request(&mut self, request: WindowRequest) {
        let line = format!("{}\n", request.to_line());
        if let Some(running) = self
            .running
            .as_mut()
            .filter(|r| !r.exited.load(Ordering::Acquire))
        {
            if running.stdin.write_all(line.as_bytes()).is_ok() {
                return;
            }
        }
        // None running, or it was on its way out: a new one.
        match self.start() {
            Ok(mut running) => {
                if let Err(e) = running.stdin.write_all(line.as_bytes()) {
                    tracing::error!("cannot ask the window process for {line:?}: {e}");
                }
                self.running = Some(running);
            }
            Err(e) => tracing::error!("cannot open a window: {e:#}"),
        }
    }

    fn start(&self) -> anyhow::Result<Running> {
        let app = crate::app_binary().ok_or_else(|| {
            anyhow::anyhow!(
                "the app binary ({}) is not beside this one",
                crate::APP_BINARY
            )
        })?;
        let mut command = Command::new(&app);
        command
            .arg("--window")
            .env(URL_VARIABLE, &self.url)
            .env_remove(KEY_VARIABLE)
            .stdin(Stdio::piped());
        if let Some(key) = self.core.live.store().api_key() {
            command.env(KEY_VARIABLE, key);
        }
        let mut child = command
            .spawn()
            .map_err(|e| anyhow::anyhow!("cannot start {}: {e}", app.display()))?;
        let stdin = child
            .stdin
            .take()
            .ok_or_else(|| anyhow::anyhow!("the window process has no input"))?;
        tracing::info!(pid = child.id(), "the window process started");
        // Waited for as soon as it exits, so it leaves no zombie behind.
        let exited = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&exited);
        std::thread::spawn(move || {
            let status = child.wait();
            flag.store(true, Ordering::Release);
            tracing::info!(?status, "the window process exited");
        });
        Ok(Running { stdin, exited })
    }

    /// Quit: the window process's input closes, which ends it; waits a little for it.
    pub fn close(&mut self) {
        let Some(running) = self.running.take() else {
            return;
        };
        let Running { stdin, exited } = running;
        drop(stdin);
        let deadline = Instant::now() + Duration::from_secs(3);
        while !exited.load(Ordering::Acquire) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

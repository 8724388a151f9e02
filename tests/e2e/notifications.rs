//! A private session bus with a recorder owning `org.freedesktop.Notifications`, so tests can
//! read the desktop notifications the server sends.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{Options, Server};

/// `dbus-daemon --session` plus the recorder; both stop on drop.
pub struct NotificationRecorder {
    bus: Child,
    recorder: Child,
    pub address: String,
    output: PathBuf,
    _dir: tempfile::TempDir,
}

impl NotificationRecorder {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("tmp");
        let output = dir.path().join("notifications.jsonl");
        let mut bus = Command::new("dbus-daemon")
            .args(["--session", "--nofork", "--print-address=1"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("dbus-daemon (Debian's dbus-daemon package; scripts/test.sh installs it)");
        let mut address = String::new();
        BufReader::new(bus.stdout.take().expect("stdout"))
            .read_line(&mut address)
            .expect("bus address");
        let address = address.trim().to_string();
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/e2e/dbus/notification_recorder.py");
        let mut recorder = Command::new("/usr/bin/python3")
            .arg(&script)
            .arg(&output)
            .env("DBUS_SESSION_BUS_ADDRESS", &address)
            .stdout(Stdio::piped())
            .spawn()
            .expect("the recorder (python3-dbus and python3-gi from Debian)");
        let mut ready = String::new();
        BufReader::new(recorder.stdout.take().expect("stdout"))
            .read_line(&mut ready)
            .expect("recorder output");
        assert_eq!(ready.trim(), "ready", "the recorder did not start");
        Self {
            bus,
            recorder,
            address,
            output,
            _dir: dir,
        }
    }

    pub fn received(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.output)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Waits up to `within` for a notification whose summary contains `summary`.
    pub fn wait_for(&self, summary: &str, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            if let Some(n) = self
                .received()
                .into_iter()
                .find(|n| n["summary"].as_str().is_some_and(|s| s.contains(summary)))
            {
                return n;
            }
            assert!(
                Instant::now() < deadline,
                "no notification {summary:?} within {within:?}; received {:?}",
                self.received()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for NotificationRecorder {
    fn drop(&mut self) {
        let _ = self.recorder.kill();
        let _ = self.recorder.wait();
        let _ = self.bus.kill();
        let _ = self.bus.wait();
    }
}

#[tokio::test]
async fn a_config_file_moved_aside_is_announced() {
    let recorder = NotificationRecorder::start();
    let _server = Server::start_with(Options {
        config: Some("parallel = 0\n".into()),
        env: vec![("DBUS_SESSION_BUS_ADDRESS", recorder.address.clone())],
        ..Options::default()
    });
    let n = recorder.wait_for("settings were reset", Duration::from_secs(10));
    assert_eq!(n["app_name"], "Headroom");
    let body = n["body"].as_str().expect("body");
    assert!(
        body.contains("parallel") && body.contains("moved to"),
        "{body}"
    );
}

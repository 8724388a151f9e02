//! Real memory pressure: the server runs in a memory cgroup, page-cache thrash inside the
//! cgroup makes the kernel stall, and the pressure monitor unloads the model before anything
//! is OOM-killed.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use crate::notifications::NotificationRecorder;
use crate::support::{join_cgroups, Options, Server, SMOLLM2};

/// A v1 memory cgroup of its own (the limit), and a cgroup in the unified hierarchy beside it
/// (its own pressure figures: this machine mounts both, systemd's hybrid layout); removed on
/// drop.
pub struct MemoryCgroup {
    path: PathBuf,
    pub unified: PathBuf,
}

impl MemoryCgroup {
    pub fn create(limit: u64) -> Self {
        let root = Path::new("/sys/fs/cgroup/memory");
        assert!(
            root.is_dir(),
            "no cgroup v1 memory controller at {}: this test needs one (these machines have it)",
            root.display()
        );
        let path = root.join(format!("headroom-e2e-{}", std::process::id()));
        std::fs::create_dir_all(&path).expect("create the cgroup (the suite runs as root)");
        std::fs::write(path.join("memory.limit_in_bytes"), limit.to_string()).expect("limit");
        let unified = Path::new("/sys/fs/cgroup/unified")
            .join(format!("headroom-e2e-{}", std::process::id()));
        std::fs::create_dir_all(&unified).expect("create the unified cgroup");
        Self { path, unified }
    }

    pub fn folders(&self) -> Vec<PathBuf> {
        vec![self.path.clone(), self.unified.clone()]
    }

    pub fn oom_kills(&self) -> u64 {
        std::fs::read_to_string(self.path.join("memory.oom_control"))
            .expect("oom_control")
            .lines()
            .find_map(|l| l.strip_prefix("oom_kill "))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for MemoryCgroup {
    fn drop(&mut self) {
        // Empty once its processes are gone; give them a moment.
        for _ in 0..50 {
            let _ = std::fs::remove_dir(&self.unified);
            if std::fs::remove_dir(&self.path).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Readers at once. One reader's reclaim stalls the machine ~30 ms per 2 s window here, under
/// the triggers' thresholds (150 ms some, 100 ms full): the test then passed only when the
/// server's own memory squeezed the cache enough, and on a fresh machine it once did not.
/// Three stall 170–290 ms (some) and 100–210 ms (full) per window from the first one.
const READERS: usize = 3;

/// Readers of a file, in a process group of their own inside the cgroup; dropping it kills
/// the group (the loops and their `cat`s), so no read outlives the test.
struct Thrash(Child);

impl Drop for Thrash {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.0.id())])
            .status();
        let _ = self.0.wait();
    }
}

/// Reads a file over and over from inside the cgroup: its page cache fills the cgroup, and the
/// kernel has to reclaim under the limit, which is what memory pressure is.
fn thrash(cgroup: &MemoryCgroup, file: &Path) -> Thrash {
    let readers: Vec<String> = (1..=READERS).map(|i| i.to_string()).collect();
    let child = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{}for i in {}; do (while true; do cat '{}' > /dev/null; done) & done; wait",
            join_cgroups(&cgroup.folders()),
            readers.join(" "),
            file.display()
        ))
        .process_group(0)
        .spawn()
        .expect("start the thrash");
    Thrash(child)
}

/// A 1.5 GB file in `dir`, on disk, not tmpfs: file pages the kernel can drop and read back.
/// Written with direct I/O, so none of it is cached yet and the reads inside a cgroup are
/// charged to it.
fn uncached_file(dir: &Path) -> PathBuf {
    let big = dir.join("big");
    let status = Command::new("dd")
        .args([
            "if=/dev/zero",
            "bs=1M",
            "count=1500",
            "oflag=direct",
            "status=none",
        ])
        .arg(format!("of={}", big.display()))
        .status()
        .expect("dd");
    assert!(status.success());
    big
}

#[tokio::test]
async fn real_memory_pressure_unloads_the_model_and_nothing_is_killed() {
    let cgroup = MemoryCgroup::create(700 << 20);
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tmp");
    let big = uncached_file(dir.path());

    let recorder = NotificationRecorder::start();
    let server = Server::start_with(Options {
        cgroups: cgroup.folders(),
        env: vec![("DBUS_SESSION_BUS_ADDRESS", recorder.address.clone())],
        ..Options::default()
    });
    let events = server.events().await;
    let (status, body) = server
        .call(Method::POST, &format!("/api/memory/models/{SMOLLM2}/load"))
        .await;
    assert_eq!(status, 200, "{body}");
    let (_, memory) = server.get("/api/memory/status").await;
    assert_eq!(memory["system"]["cgroup_limited"], true, "{memory}");

    let thrasher = thrash(&cgroup, &big);
    let unloaded = tokio::time::timeout(
        Duration::from_secs(60),
        events.wait_for("pressure unload", |e| {
            e["type"] == "unloaded" && e["model"] == SMOLLM2
        }),
    )
    .await;
    drop(thrasher);
    let unloaded = unloaded.expect("an unload within 60 s of the thrash");
    let pressure: Vec<Value> = events
        .all()
        .into_iter()
        .filter(|e| e["type"] == "pressure")
        .collect();
    println!("pressure events: {pressure:?}");
    println!(
        "unloaded: reason {}, {} ms from the pressure signal to memory freed, {:?}% of {} bytes back",
        unloaded["reason"], unloaded["since_pressure_ms"], unloaded["reclaimed_percent"], unloaded["footprint"]["total"]
    );
    assert_eq!(unloaded["reason"], "pressure", "{unloaded}");
    assert!(
        unloaded["since_pressure_ms"].as_u64().is_some(),
        "{unloaded}"
    );
    assert!(
        pressure
            .iter()
            .any(|e| e["tier"] == "critical" || e["tier"] == "emergency"),
        "{pressure:?}"
    );
    // The server is up, and nothing in the cgroup was OOM-killed.
    let (status, _) = server.get("/health").await;
    assert_eq!(status, 200);
    assert_eq!(cgroup.oom_kills(), 0);
    // The cgroup's own pressure file was watched beside the system's (both triggers armed).
    // Whether it fires depends on how the stall falls between the cgroup and the rest; its
    // figures are printed beside the system's.
    let own = format!("{}/memory.pressure", cgroup.unified.display());
    let log = server.stderr();
    let lines = |what: &str| {
        log.lines()
            .filter(|l| l.contains(what) && l.contains(&own))
            .count()
    };
    println!(
        "own cgroup trigger: armed {}, fired {}; its stall figures: {:?}; the system's: {:?}",
        lines("trigger armed"),
        lines("trigger fired"),
        std::fs::read_to_string(&own).unwrap_or_default(),
        std::fs::read_to_string("/proc/pressure/memory").unwrap_or_default(),
    );
    assert_eq!(lines("trigger armed"), 2, "{log}");
    // What the monitor saw at each change, free memory included.
    for line in log.lines().filter(|l| l.contains("tier changed")) {
        println!("{line}");
    }

    // The user is told what happened, what was done and what to do.
    let n = recorder.wait_for("Memory is", Duration::from_secs(10));
    println!("notification: {n}");
    let body = n["body"].as_str().expect("body");
    assert!(body.contains(SMOLLM2) && body.contains("MB"), "{body}");
    assert!(
        body.contains("Close apps or lower the pool limit in Preferences"),
        "{body}"
    );
    assert_eq!(recorder.received().len(), 1, "rate-limited to one");
    drop(server);
}

#[tokio::test]
async fn at_critical_new_requests_wait_outside_and_running_ones_finish() {
    let server = Server::start();
    let events = server.events().await;
    // Long enough to outlast the setup below on a slow, busy machine (900 tokens, 10 s at
    // 90 tok/s): in one CI run 300 tokens had ended by the time critical was reached, and
    // critical found the model idle and unloaded it.
    let stream = server.start_counting_stream(900).await;
    let (_, memory) = server.get("/api/memory/status").await;
    let relaxed_margin = memory["pool"]["headroom_margin"].as_u64().expect("margin");
    assert_eq!(memory["pool"]["tier"], "normal", "{memory}");

    server.set_critical_thresholds(true).await;
    events
        .wait_for("critical", |e| {
            e["type"] == "pressure" && e["tier"] == "critical"
        })
        .await;
    // The stream is still running: what follows is about a request in flight at critical.
    let running = server.memory_status(SMOLLM2).await.expect("loaded");
    assert!(running["in_flight"].as_u64() > Some(0), "{running}");
    // New requests get 503 with Retry-After, on the loaded model too.
    let body = json!({"model": SMOLLM2, "prompt": "Hi", "max_tokens": 2});
    let (status, retry_after, answer) =
        server.post_with_retry_after("/v1/completions", &body).await;
    assert_eq!(status, 503, "{answer}");
    assert!(retry_after, "503 without Retry-After");
    assert_eq!(answer["error"]["code"], "low_memory", "{answer}");
    let message = answer["error"]["message"].as_str().expect("message");
    assert!(message.contains("critical"), "{message}");
    // The margin grows with the tier.
    let (_, memory) = server.get("/api/memory/status").await;
    assert_eq!(memory["pool"]["tier"], "critical", "{memory}");
    let critical_margin = memory["pool"]["headroom_margin"].as_u64().expect("margin");
    assert_eq!(
        critical_margin,
        memory["pool"]["headroom_margins"]["critical"]
            .as_u64()
            .expect("table")
    );
    assert!(critical_margin > relaxed_margin, "{memory}");

    // The stream that was running is not cut: a busy model is not unloaded below emergency.
    crate::support::read_to_full_length(stream).await;
    // Once it is idle, critical unloads it.
    let unloaded = events
        .wait_for("pressure unload", |e| {
            e["type"] == "unloaded" && e["model"] == SMOLLM2
        })
        .await;
    assert_eq!(unloaded["reason"], "pressure", "{unloaded}");

    server.set_critical_thresholds(false).await;
    events
        .wait_for("normal", |e| {
            e["type"] == "pressure" && e["tier"] == "normal"
        })
        .await;
    let (status, answer) = server.post("/v1/completions", &body).await;
    assert_eq!(status, 200, "{answer}");
}

/// The other side: a cgroup thrashing against its own limit stalls the machine's PSI figures
/// too, and the trigger on them fires in a server outside it; but that server has most of the
/// machine's memory free, so the stall is not a shortage it could relieve. Nothing is unloaded
/// or refused.
#[tokio::test]
async fn stalls_elsewhere_with_memory_free_unload_nothing_and_refuse_nothing() {
    // Free memory outright, not just cache that could be dropped: the premise of the test.
    let _ = Command::new("sync").status();
    std::fs::write("/proc/sys/vm/drop_caches", "1").expect("drop the page cache (as root)");
    let cgroup = MemoryCgroup::create(700 << 20);
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tmp");
    let big = uncached_file(dir.path());
    let server = Server::start();
    let events = server.events().await;
    let (status, body) = server
        .call(Method::POST, &format!("/api/memory/models/{SMOLLM2}/load"))
        .await;
    assert_eq!(status, 200, "{body}");

    let thrasher = thrash(&cgroup, &big);
    let mut waited = Duration::ZERO;
    while !server.stderr().contains("memory pressure trigger fired") {
        assert!(
            waited < Duration::from_secs(60),
            "no stall reached the server's trigger within 60 s; its log:\n{}",
            server.stderr()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        waited += Duration::from_millis(200);
    }
    // The monitor looks at once on the trigger; a request after that look, still in the
    // thrash, is answered.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let body = json!({"model": SMOLLM2, "prompt": "Hi", "max_tokens": 4});
    let (status, answer) = server.post("/v1/completions", &body).await;
    drop(thrasher);
    assert_eq!(status, 200, "{answer}");
    println!("trigger fired after {waited:?} of thrash; the model stayed and answered");

    let log = server.stderr();
    for line in log.lines().filter(|l| l.contains("trigger fired")) {
        println!("{line}");
    }
    let acted: Vec<Value> = events
        .all()
        .into_iter()
        .filter(|e| {
            e["type"] == "unloaded"
                || (e["type"] == "pressure"
                    && !matches!(e["tier"].as_str(), Some("normal" | "elevated")))
        })
        .collect();
    assert!(acted.is_empty(), "{acted:?}");
    assert!(server.memory_status(SMOLLM2).await.is_some(), "unloaded");
    // And the monitor said why it let the stall pass.
    assert!(
        log.contains("with plenty of memory free: not pressure"),
        "{log}"
    );
}

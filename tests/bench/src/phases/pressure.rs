//! Reaction to real memory pressure: Headroom runs in a memory cgroup with a model loaded, a
//! few readers thrash the page cache inside the same cgroup until the kernel stalls, and the
//! pressure monitor unloads the model. Two times per run: from the PSI event Headroom received
//! to memory freed (Headroom's own clock, in its `unloaded` event), and from the first stall the
//! kernel counted for the cgroup to the `unloaded` event reaching the benchmark.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

use super::{Context, Model};
use crate::process::{drop_page_cache, join_cgroups, Guarded};
use crate::report::Row;
use crate::servers::{Headroom, HeadroomLaunch};
use crate::stats::Figure;

/// The cgroup's limit: room for the model and the server, not for the thrash's page cache.
const LIMIT: u64 = 700 << 20;
/// The file the thrash reads, larger than the limit.
const THRASH_MB: u64 = 1500;
/// Readers at once. One stalls the machine ~30 ms per 2 s window here, under Headroom's
/// triggers (150 ms some, 100 ms full) unless the server's own memory squeezes the cache, so
/// the cgroup's stall counter often had not moved by the unload; three stall 170–290 ms (some)
/// and 100–210 ms (full) per window from the first one.
const READERS: usize = 3;

/// A v1 memory cgroup (the limit) and a unified-hierarchy cgroup beside it (its own pressure
/// figures: systemd's hybrid layout mounts both). Removed on drop.
pub(super) struct MemoryCgroup {
    limited: PathBuf,
    unified: PathBuf,
}

impl MemoryCgroup {
    /// A fresh pair, the v1 one limited to `limit` bytes.
    pub(super) fn create(limit: u64) -> anyhow::Result<Self> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let name = format!(
            "headroom-bench-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let limited = Path::new("/sys/fs/cgroup/memory").join(&name);
        let unified = Path::new("/sys/fs/cgroup/unified").join(&name);
        std::fs::create_dir_all(&limited).with_context(|| {
            format!(
                "create {} (needs root and a cgroup v1 memory controller)",
                limited.display()
            )
        })?;
        std::fs::create_dir_all(&unified)
            .with_context(|| format!("create {}", unified.display()))?;
        let cgroup = Self { limited, unified };
        std::fs::write(
            cgroup.limited.join("memory.limit_in_bytes"),
            limit.to_string(),
        )
        .context("set the cgroup's limit")?;
        Ok(cgroup)
    }

    pub(super) fn folders(&self) -> [PathBuf; 2] {
        [self.limited.clone(), self.unified.clone()]
    }

    /// Processes in the cgroup the kernel's OOM killer has killed.
    pub(super) fn oom_kills(&self) -> u64 {
        std::fs::read_to_string(self.limited.join("memory.oom_control"))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("oom_kill "))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0)
    }

    fn pressure_file(&self) -> PathBuf {
        self.unified.join("memory.pressure")
    }
}

/// Microseconds some task in the cgroup has stalled on memory, ever (PSI's `some total=`).
fn stalled_us(pressure_file: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(pressure_file).ok()?;
    text.lines()
        .find(|l| l.starts_with("some "))?
        .split_whitespace()
        .find_map(|f| f.strip_prefix("total="))?
        .parse()
        .ok()
}

impl Drop for MemoryCgroup {
    fn drop(&mut self) {
        for _ in 0..50 {
            let _ = std::fs::remove_dir(&self.unified);
            if std::fs::remove_dir(&self.limited).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Watches the cgroup's stall counter every millisecond, and keeps the moment it first grew.
struct StallWatch {
    first: Arc<Mutex<Option<Instant>>>,
    watching: Arc<AtomicBool>,
}

impl StallWatch {
    fn start(cgroup: &MemoryCgroup) -> anyhow::Result<Self> {
        let file = cgroup.pressure_file();
        let start = stalled_us(&file).context("the cgroup has no memory.pressure (PSI)")?;
        let first = Arc::new(Mutex::new(None));
        let watching = Arc::new(AtomicBool::new(true));
        let (seen, on) = (Arc::clone(&first), Arc::clone(&watching));
        std::thread::spawn(move || {
            while on.load(Ordering::Relaxed) {
                if stalled_us(&file).is_some_and(|now| now > start) {
                    if let Ok(mut seen) = seen.lock() {
                        *seen = Some(Instant::now());
                    }
                    return;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        Ok(Self { first, watching })
    }

    fn first_stall(&self) -> Option<Instant> {
        self.first.lock().ok().and_then(|f| *f)
    }
}

impl Drop for StallWatch {
    fn drop(&mut self) {
        self.watching.store(false, Ordering::Relaxed);
    }
}

pub async fn run(cx: &Context, model: Model, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let big = thrash_file(&cx.scratch)?;
    let cgroup = MemoryCgroup::create(LIMIT)?;
    let mut from_psi = Vec::new();
    let mut from_stall = Vec::new();
    for _ in 0..cx.runs {
        drop_page_cache(&big)?;
        let headroom = Headroom::start(HeadroomLaunch {
            binary: &cx.headroom,
            models_dir: &cx.models_dir,
            shape: cx.shape(1),
            cgroups: &cgroup.folders(),
            desktop: None,
            env: &[],
        })
        .await?;
        headroom.load(model.id).await?;
        let mark = headroom.events.mark();
        let watch = StallWatch::start(&cgroup)?;
        let thrash = thrash(&cgroup, &big)?;
        let unloaded = headroom
            .events
            .wait_for(mark, Duration::from_secs(60), "pressure unload", |e| {
                e["type"] == "unloaded" && e["model"] == model.id
            })
            .await;
        drop(thrash);
        let (at, unloaded) = unloaded?;
        if unloaded["reason"] != "pressure" {
            bail!("the model was unloaded for another reason: {unloaded}");
        }
        if let Some(ms) = unloaded["since_pressure_ms"].as_f64() {
            from_psi.push(ms);
        }
        if let Some(stall) = watch.first_stall() {
            from_stall.push((at - stall).as_secs_f64() * 1e3);
        }
    }
    rows.push(
        Row::new("pressure: PSI event to memory freed", "ms")
            .model(model.name)
            .headroom(Figure::of(&from_psi))
            .note("700 MB cgroup, page-cache thrash; llama-server has no pressure response"),
    );
    rows.push(
        Row::new("pressure: first stall to unloaded event", "ms")
            .model(model.name)
            .headroom(Figure::of(&from_stall))
            // In the other runs the cgroup's own stall counter had not moved by the time of
            // the unload, so there is no start to count from.
            .note(format!(
                "PSI's trigger window is the shortest the kernel grants (500 ms as root, else 2 s); stalls seen in {} of {} runs",
                from_stall.len(),
                cx.runs
            )),
    );
    Ok(())
}

/// A file larger than the cgroup's limit, written once with direct I/O so none of it is
/// cached by whoever wrote it.
fn thrash_file(scratch: &Path) -> anyhow::Result<PathBuf> {
    let big = scratch.join("thrash.bin");
    if std::fs::metadata(&big).is_ok_and(|m| m.len() == THRASH_MB << 20) {
        return Ok(big);
    }
    std::fs::create_dir_all(scratch)?;
    let status = Command::new("dd")
        .args(["if=/dev/zero", "bs=1M", "oflag=direct", "status=none"])
        .arg(format!("count={THRASH_MB}"))
        .arg(format!("of={}", big.display()))
        .status()
        .context("dd")?;
    if !status.success() {
        bail!("dd could not write {}", big.display());
    }
    Ok(big)
}

/// A process group reading a file in loops; dropping it kills the loops and their `cat`s.
struct Thrash(Guarded);

impl Drop for Thrash {
    fn drop(&mut self) {
        if let Ok(group) = i32::try_from(self.0.pid()) {
            // SAFETY: signals the process group this struct started and still waits for.
            unsafe { libc::kill(-group, libc::SIGKILL) };
        }
    }
}

/// Reads `file` over and over from inside the cgroup: its page cache fills the cgroup, and
/// the kernel has to reclaim under the limit, which is what memory pressure is.
fn thrash(cgroup: &MemoryCgroup, file: &Path) -> anyhow::Result<Thrash> {
    use std::os::unix::process::CommandExt;
    let readers: Vec<String> = (1..=READERS).map(|i| i.to_string()).collect();
    let child = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{}exec sh -c 'for i in {}; do (while true; do cat \"$0\" > /dev/null; done) & done; wait' '{}'",
            join_cgroups(&cgroup.folders()),
            readers.join(" "),
            file.display()
        ))
        .stdout(Stdio::null())
        .process_group(0)
        .spawn()
        .context("start the thrash")?;
    Ok(Thrash(Guarded(child)))
}

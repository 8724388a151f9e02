//! What the benchmark reads about a process from outside it, the way `ps` and `top` would:
//! resident memory and CPU time from /proc, so Headroom and llama-server are measured alike.

use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context};

/// Resident memory in bytes (`VmRSS`).
pub fn rss(pid: u32) -> anyhow::Result<u64> {
    status_bytes(pid, "VmRSS:")
}

/// Resident anonymous memory in bytes (`RssAnon`): the process's private part, without the
/// file pages of its binary and libraries.
pub fn rss_anon(pid: u32) -> anyhow::Result<u64> {
    status_bytes(pid, "RssAnon:")
}

fn status_bytes(pid: u32, name: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("process {pid} is gone"))?;
    status_field(&status, name).ok_or_else(|| anyhow!("no {name} for process {pid}"))
}

/// A "Name:  1234 kB" line of /proc/<pid>/status, in bytes.
fn status_field(status: &str, name: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
}

/// A shell prefix that moves the shell into each of `cgroups` (`echo $$ > …/cgroup.procs`);
/// what it then `exec`s starts inside them, with the same pid.
pub fn join_cgroups(cgroups: &[PathBuf]) -> String {
    cgroups
        .iter()
        .map(|c| format!("echo $$ > '{}/cgroup.procs' && ", c.display()))
        .collect()
}

/// User plus system CPU time so far, in seconds.
pub fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("process {pid} is gone"))?;
    let ticks = parse_cpu_ticks(&stat).ok_or_else(|| anyhow!("unreadable /proc/{pid}/stat"))?;
    // SAFETY: sysconf only reads a configuration value.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    Ok(ticks as f64 / per_second.max(1) as f64)
}

/// utime + stime (fields 14 and 15). The command name (field 2) may hold spaces and
/// parentheses, so count from the last ')'.
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3, so utime (14) is index 11 here.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Drops `path`'s pages from the page cache, so the next read comes from the disk: a cold load.
pub fn drop_page_cache(path: &Path) -> anyhow::Result<()> {
    use std::os::fd::AsRawFd;
    let file = std::fs::File::open(path).with_context(|| format!("open {}", path.display()))?;
    // SAFETY: the descriptor is open for the duration of the call.
    let rc = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    if rc != 0 {
        return Err(std::io::Error::from_raw_os_error(rc))
            .with_context(|| format!("posix_fadvise({})", path.display()));
    }
    Ok(())
}

/// The peak resident memory of a process, sampled every 10 ms on a thread of its own (RSS can
/// rise and fall between two HTTP round trips).
pub struct PeakRss {
    peak: Arc<AtomicU64>,
    sampling: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl PeakRss {
    pub fn start(pid: u32) -> Self {
        let peak = Arc::new(AtomicU64::new(0));
        let sampling = Arc::new(AtomicBool::new(true));
        let thread = {
            let (peak, sampling) = (Arc::clone(&peak), Arc::clone(&sampling));
            std::thread::spawn(move || {
                while sampling.load(Ordering::Relaxed) {
                    if let Ok(now) = rss(pid) {
                        peak.fetch_max(now, Ordering::Relaxed);
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            })
        };
        Self {
            peak,
            sampling,
            thread,
        }
    }

    pub fn stop(self) -> u64 {
        self.sampling.store(false, Ordering::Relaxed);
        let _ = self.thread.join();
        self.peak.load(Ordering::Relaxed)
    }
}

/// A child process killed when dropped, so an error anywhere leaves no server behind.
pub struct Guarded(pub Child);

impl Guarded {
    pub fn pid(&self) -> u32 {
        self.0.id()
    }

    /// Whether it has exited, with its status.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.0.try_wait().ok().flatten()
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_rss_and_cpu_ticks_from_proc_text() {
        assert_eq!(
            status_field("Name:\tx\nVmRSS:\t   2048 kB\n", "VmRSS:"),
            Some(2 * 1024 * 1024)
        );
        assert_eq!(status_field("Name:\tx\n", "VmRSS:"), None);
        let stat = "42 (a (b) c) S 1 42 42 0 -1 4194560 100 0 0 0 7 5 0 0 20 0 1 0";
        assert_eq!(parse_cpu_ticks(stat), Some(12));
        assert_eq!(parse_cpu_ticks("42 (x) S 1"), None);
    }

    #[test]
    fn this_process_has_memory_and_cpu_time() {
        let me = std::process::id();
        assert!(rss(me).expect("rss") > 1 << 20);
        // CPU time counts in clock ticks (10 ms): spin until one shows, for at most 5 s.
        let started = std::time::Instant::now();
        let mut sum = 0u64;
        while cpu_seconds(me).expect("cpu") == 0.0 {
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "no CPU time after 5 s of spinning"
            );
            for i in 0..100_000u64 {
                sum = std::hint::black_box(sum.wrapping_add(i * i));
            }
        }
    }
}

//! Linux: `/proc/meminfo`, `/proc/pressure/memory`, and the limits of this process's own
//! memory cgroup (v1 `memory.limit_in_bytes`, v2 `memory.max`).
//!
//! The roots (`/proc`, `/sys/fs/cgroup`) are parameters so tests can point them at fixture
//! folders.

use std::path::{Path, PathBuf};

use super::{with_process, MemoryProbe, MemorySnapshot, OsPressure, ProbeError, Stall};

/// Reads the figures from `proc_root` and `cgroup_root`.
#[derive(Debug, Clone)]
pub struct LinuxProbe {
    pub proc_root: PathBuf,
    pub cgroup_root: PathBuf,
}

impl Default for LinuxProbe {
    fn default() -> Self {
        Self {
            proc_root: PathBuf::from("/proc"),
            cgroup_root: PathBuf::from("/sys/fs/cgroup"),
        }
    }
}

/// The host's figures from `/proc/meminfo`, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Meminfo {
    pub total: u64,
    pub available: u64,
    /// `MemFree`: not even cache.
    pub free: u64,
    pub cached: u64,
    pub swap_total: u64,
    pub swap_free: u64,
}

/// The limits and use of a memory cgroup, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CgroupMemory {
    /// `None`: no limit.
    pub limit: Option<u64>,
    pub usage: u64,
    /// Inactive file pages: cache the kernel reclaims first, not counted as used (as `docker
    /// stats` and the kubelet count a container's working set).
    pub inactive_file: u64,
    /// Active file pages: cache in use, counted as used; but cache all the same, which the
    /// pressure monitor leaves out of other apps' growth.
    pub active_file: u64,
}

/// Where this process's memory cgroup is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CgroupPath {
    V1(String),
    V2(String),
}

impl MemoryProbe for LinuxProbe {
    fn snapshot(&self) -> Result<MemorySnapshot, ProbeError> {
        let meminfo = parse_meminfo(&read(&self.proc_root.join("meminfo"))?).ok_or_else(|| {
            ProbeError::Parse {
                what: "/proc/meminfo".into(),
            }
        })?;
        let cgroup = self.own_cgroup();
        // PSI: the worse of the own cgroup's (a container stalls on its own limit while the
        // host is at ease) and the system's (other apps stalling is the machine in trouble).
        let own = self
            .own_pressure_file()
            .and_then(|file| read_opt(&file))
            .and_then(|text| parse_psi(&text));
        let system = read_opt(&self.proc_root.join("pressure/memory")).and_then(|t| parse_psi(&t));
        let stall = match (own, system) {
            (Some(a), Some(b)) => Some(Stall {
                some_avg10: a.some_avg10.max(b.some_avg10),
                full_avg10: a.full_avg10.max(b.full_avg10),
            }),
            (a, b) => a.or(b),
        };
        Ok(with_process(snapshot_from(
            meminfo,
            cgroup.map(|(_, m)| m),
            stall,
        )))
    }
}

impl LinuxProbe {
    /// The own cgroup's `memory.pressure`: the cgroup v2 one below the root. The root's is
    /// the system's, except in a cgroup namespace (a container), where the root is the
    /// container's own cgroup and has a `memory.current` the host's root lacks. With a v1
    /// memory controller the unified (v2) hierarchy still keeps pressure figures per cgroup, at
    /// `unified/` in hybrid setups.
    pub fn own_pressure_file(&self) -> Option<PathBuf> {
        let path = parse_unified_path(&read_opt(&self.proc_root.join("self/cgroup"))?)?;
        let path = path.trim_start_matches('/');
        if path.is_empty() {
            let namespaced = self.cgroup_root.join("memory.current").exists();
            let file = self.cgroup_root.join("memory.pressure");
            return (namespaced && file.exists()).then_some(file);
        }
        [
            self.cgroup_root.join(path),
            self.cgroup_root.join("unified").join(path),
        ]
        .into_iter()
        .map(|dir| dir.join("memory.pressure"))
        .find(|file| file.exists())
    }

    /// This process's v1 memory cgroup folder and its limit, when the limit is below the host's
    /// RAM (the pressure monitor sets usage thresholds on it).
    pub fn own_v1_memory_cgroup(&self) -> Option<(PathBuf, u64)> {
        let CgroupPath::V1(path) =
            parse_proc_cgroup(&read_opt(&self.proc_root.join("self/cgroup"))?)?
        else {
            return None;
        };
        let dir = self
            .cgroup_root
            .join("memory")
            .join(path.trim_start_matches('/'));
        let limit = read_number(&dir.join("memory.limit_in_bytes"))?;
        let host = parse_meminfo(&read_opt(&self.proc_root.join("meminfo"))?)?.total;
        (limit < host).then_some((dir, limit))
    }

    /// This process's memory cgroup and its figures, when it has a limit.
    fn own_cgroup(&self) -> Option<(CgroupPath, CgroupMemory)> {
        let path = parse_proc_cgroup(&read_opt(&self.proc_root.join("self/cgroup"))?)?;
        let memory = match &path {
            CgroupPath::V1(p) => {
                let dir = self
                    .cgroup_root
                    .join("memory")
                    .join(p.trim_start_matches('/'));
                let stat = read_opt(&dir.join("memory.stat")).unwrap_or_default();
                CgroupMemory {
                    limit: read_number(&dir.join("memory.limit_in_bytes")),
                    usage: read_number(&dir.join("memory.usage_in_bytes"))?,
                    inactive_file: stat_field(&stat, "total_inactive_file").unwrap_or(0),
                    active_file: stat_field(&stat, "total_active_file").unwrap_or(0),
                }
            }
            CgroupPath::V2(p) => {
                let dir = self.cgroup_root.join(p.trim_start_matches('/'));
                let stat = read_opt(&dir.join("memory.stat")).unwrap_or_default();
                CgroupMemory {
                    limit: read_number(&dir.join("memory.max")),
                    usage: read_number(&dir.join("memory.current"))?,
                    inactive_file: stat_field(&stat, "inactive_file").unwrap_or(0),
                    active_file: stat_field(&stat, "active_file").unwrap_or(0),
                }
            }
        };
        Some((path, memory))
    }
}

/// The snapshot from the host's figures and, when the process is in a limited cgroup, the
/// cgroup's: the tighter of the two is what this process can use.
pub fn snapshot_from(
    host: Meminfo,
    cgroup: Option<CgroupMemory>,
    stall: Option<Stall>,
) -> MemorySnapshot {
    let swap_used = host.swap_total.saturating_sub(host.swap_free);
    let mut snapshot = MemorySnapshot {
        total: host.total,
        used: host.total.saturating_sub(host.available),
        available: host.available.min(host.total),
        wired: None,
        compressed: None,
        cached_files: host.cached,
        file_in_use: 0,
        free: Some(host.free.min(host.total)),
        swap_used,
        pressure: OsPressure::Unknown,
        stall,
        cgroup_limited: false,
        process: None,
    };
    if let Some(cgroup) = cgroup {
        if let Some(limit) = cgroup.limit.filter(|l| *l < host.total) {
            let used = cgroup.usage.saturating_sub(cgroup.inactive_file).min(limit);
            snapshot.total = limit;
            snapshot.used = used;
            snapshot.file_in_use = cgroup.active_file.min(used);
            // The host may be shorter still than the cgroup's own room.
            snapshot.available = (limit - used).min(host.available);
            // Cache counts here: the cgroup reclaims once its usage, cache and all, meets the
            // limit.
            snapshot.free = Some(limit.saturating_sub(cgroup.usage).min(host.free));
            snapshot.cgroup_limited = true;
        }
    }
    snapshot
}

/// `MemTotal`, `MemAvailable`, `Cached`, `SwapTotal`, `SwapFree`.
pub fn parse_meminfo(text: &str) -> Option<Meminfo> {
    let field = |name: &str| {
        text.lines().find_map(|line| {
            let rest = line.strip_prefix(name)?.strip_prefix(':')?;
            rest.trim()
                .strip_suffix("kB")?
                .trim()
                .parse::<u64>()
                .ok()?
                .checked_mul(1024)
        })
    };
    Some(Meminfo {
        total: field("MemTotal")?,
        available: field("MemAvailable")?,
        // Absent (never on a real kernel): nothing free, so stalls keep counting.
        free: field("MemFree").unwrap_or(0),
        cached: field("Cached").unwrap_or(0),
        swap_total: field("SwapTotal").unwrap_or(0),
        swap_free: field("SwapFree").unwrap_or(0),
    })
}

/// `some avg10=…` and `full avg10=…` from a PSI file.
pub fn parse_psi(text: &str) -> Option<Stall> {
    let avg10 = |kind: &str| {
        text.lines()
            .find(|l| l.starts_with(kind))?
            .split_whitespace()
            .find_map(|f| f.strip_prefix("avg10="))?
            .parse::<f64>()
            .ok()
    };
    Some(Stall {
        some_avg10: avg10("some")?,
        // Older kernels have no `full` line for the whole system.
        full_avg10: avg10("full").unwrap_or(0.0),
    })
}

/// The memory cgroup in `/proc/self/cgroup`: v1's `N:memory:/path` (or a comma list holding
/// `memory`), else v2's `0::/path`.
pub fn parse_proc_cgroup(text: &str) -> Option<CgroupPath> {
    let mut v2 = None;
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if controllers.split(',').any(|c| c == "memory") {
            return Some(CgroupPath::V1(path.to_string()));
        }
        if controllers.is_empty() {
            v2 = Some(CgroupPath::V2(path.to_string()));
        }
    }
    v2
}

/// The process's place in the unified (v2) hierarchy: the `0::/path` line.
pub fn parse_unified_path(text: &str) -> Option<String> {
    text.lines()
        .find_map(|line| line.strip_prefix("0::"))
        .map(str::to_string)
}

/// A `memory.stat` field, in bytes.
fn stat_field(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (key, value) = line.split_once(' ')?;
        (key == name).then(|| value.trim().parse().ok()).flatten()
    })
}

fn read(path: &Path) -> Result<String, ProbeError> {
    std::fs::read_to_string(path).map_err(|source| ProbeError::Read {
        what: path.display().to_string(),
        source,
    })
}

fn read_opt(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

/// A number file; "max" (v2's "no limit") and v1's huge sentinel are `None`.
fn read_number(path: &Path) -> Option<u64> {
    let text = read_opt(path)?;
    let value: u64 = text.trim().parse().ok()?;
    // v1 writes "no limit" as the largest page-aligned i64.
    (value < (1 << 62)).then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    const MEMINFO: &str = "MemTotal:       24608932 kB\nMemFree:         1000000 kB\n\
        MemAvailable:   20000000 kB\nBuffers:          100000 kB\nCached:          6000000 kB\n\
        SwapCached:            0 kB\nSwapTotal:       2097148 kB\nSwapFree:        1048574 kB\n";

    #[test]
    fn meminfo_fields() {
        let m = parse_meminfo(MEMINFO).expect("parses");
        assert_eq!(m.total, 24_608_932 * 1024);
        assert_eq!(m.available, 20_000_000 * 1024);
        assert_eq!(m.cached, 6_000_000 * 1024);
        assert_eq!(m.free, 1_000_000 * 1024);
        assert_eq!(m.swap_total - m.swap_free, 1_048_574 * 1024);
        assert_eq!(parse_meminfo("MemTotal: 1 kB\n"), None);
    }

    #[test]
    fn psi_lines() {
        let s = parse_psi(
            "some avg10=12.50 avg60=3.00 avg300=1.00 total=12345\nfull avg10=4.25 avg60=1.00 avg300=0.00 total=99\n",
        )
        .expect("parses");
        assert_eq!(
            s,
            Stall {
                some_avg10: 12.5,
                full_avg10: 4.25
            }
        );
        assert_eq!(parse_psi("nonsense"), None);
    }

    #[test]
    fn own_cgroup_in_v1_and_v2() {
        let v1 = "9:name=systemd:/\n5:devices:/\n4:memory:/process_api/cb77\n0::/\n";
        assert_eq!(
            parse_proc_cgroup(v1),
            Some(CgroupPath::V1("/process_api/cb77".into()))
        );
        let v1_joined = "3:cpu,memory:/job\n";
        assert_eq!(
            parse_proc_cgroup(v1_joined),
            Some(CgroupPath::V1("/job".into()))
        );
        let v2 = "0::/user.slice/app.scope\n";
        assert_eq!(
            parse_proc_cgroup(v2),
            Some(CgroupPath::V2("/user.slice/app.scope".into()))
        );
        assert_eq!(parse_proc_cgroup(""), None);
    }

    #[test]
    fn without_a_cgroup_limit_the_host_figures_stand() {
        let host = parse_meminfo(MEMINFO).expect("parses");
        let s = snapshot_from(
            host,
            Some(CgroupMemory {
                limit: None,
                usage: 5 * GIB,
                inactive_file: 0,
                active_file: 0,
            }),
            None,
        );
        assert!(!s.cgroup_limited);
        assert_eq!(s.total, host.total);
        assert_eq!(s.available, host.available);
        assert_eq!(s.used, host.total - host.available);
        assert_eq!(s.free, Some(host.free));
        assert_eq!(s.swap_used, 1_048_574 * 1024);
    }

    #[test]
    fn a_cgroup_limit_is_the_total_and_its_inactive_cache_is_not_used() {
        let host = parse_meminfo(MEMINFO).expect("parses");
        // 2 GiB limit, 1.5 GiB charged of which 0.5 GiB is inactive file cache: 1 GiB used,
        // 1 GiB available.
        let s = snapshot_from(
            host,
            Some(CgroupMemory {
                limit: Some(2 * GIB),
                usage: 3 * GIB / 2,
                inactive_file: GIB / 2,
                active_file: GIB / 4,
            }),
            Some(Stall {
                some_avg10: 1.0,
                full_avg10: 0.0,
            }),
        );
        assert!(s.cgroup_limited);
        assert_eq!((s.total, s.used, s.available), (2 * GIB, GIB, GIB));
        assert_eq!(s.used_percent(), 50.0);
        // Of the used, the active file cache is what the growth rate leaves out.
        assert_eq!(s.file_in_use, GIB / 4);
        // Free is the room under the limit, cache included: the cgroup reclaims at the limit.
        assert_eq!(s.free, Some(GIB / 2));
        // The host shorter than the cgroup: the host's figure wins.
        let tight_host = Meminfo {
            available: GIB / 4,
            ..host
        };
        let s = snapshot_from(
            tight_host,
            Some(CgroupMemory {
                limit: Some(2 * GIB),
                usage: GIB,
                inactive_file: 0,
                active_file: 0,
            }),
            None,
        );
        assert_eq!(s.available, GIB / 4);
    }

    #[test]
    fn the_probe_reads_fixture_folders() {
        let root = tempfile::tempdir().expect("tmp");
        let proc_root = root.path().join("proc");
        let cg = root.path().join("cgroup");
        std::fs::create_dir_all(proc_root.join("self")).expect("dir");
        std::fs::create_dir_all(proc_root.join("pressure")).expect("dir");
        std::fs::create_dir_all(cg.join("memory/job")).expect("dir");
        std::fs::write(proc_root.join("meminfo"), MEMINFO).expect("w");
        std::fs::write(proc_root.join("self/cgroup"), "4:memory:/job\n0::/\n").expect("w");
        std::fs::write(
            proc_root.join("pressure/memory"),
            "some avg10=2.00 avg60=0 avg300=0 total=1\nfull avg10=1.00 avg60=0 avg300=0 total=1\n",
        )
        .expect("w");
        std::fs::write(cg.join("memory/job/memory.limit_in_bytes"), "1073741824\n").expect("w");
        std::fs::write(cg.join("memory/job/memory.usage_in_bytes"), "805306368\n").expect("w");
        std::fs::write(
            cg.join("memory/job/memory.stat"),
            "cache 1\ntotal_inactive_file 268435456\n",
        )
        .expect("w");
        let probe = LinuxProbe {
            proc_root,
            cgroup_root: cg,
        };
        let s = probe.snapshot().expect("snapshot");
        assert!(s.cgroup_limited);
        assert_eq!((s.total, s.used, s.available), (GIB, GIB / 2, GIB / 2));
        assert_eq!(
            probe.own_v1_memory_cgroup(),
            Some((probe.cgroup_root.join("memory/job"), GIB))
        );
        assert_eq!(
            s.stall,
            Some(Stall {
                some_avg10: 2.0,
                full_avg10: 1.0
            })
        );
        // v1's "unlimited" sentinel is no limit.
        std::fs::write(
            probe.cgroup_root.join("memory/job/memory.limit_in_bytes"),
            "9223372036854771712\n",
        )
        .expect("w");
        assert!(!probe.snapshot().expect("snapshot").cgroup_limited);
        assert_eq!(probe.own_v1_memory_cgroup(), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_machine() {
        let s = LinuxProbe::default().snapshot().expect("snapshot");
        assert!(
            s.total > 0 && s.available <= s.total && s.used <= s.total,
            "{s:?}"
        );
        assert!(s.process.is_some());
    }
}

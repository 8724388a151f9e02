//! Linux: PSI triggers on the system's `/proc/pressure/memory` and, when the process runs in a
//! cgroup v2 with its own `memory.pressure`, on that file too (a container can stall on its own
//! limit while the host is at ease); and in a limited v1 memory cgroup, usage thresholds on its
//! limit (`threshold.rs`).
//!
//! The triggers use the shortest window the kernel grants: 500 ms where the process may
//! (`CAP_SYS_RESOURCE`), else 2 s, the shortest for everyone. The stall that fires them is the
//! same share of either window.

use std::path::PathBuf;

use tokio::sync::mpsc;

use super::psi::{PsiTrigger, StallKind, WINDOWS_US};
use super::{forward, threshold, Wake};
use crate::memory::probe::linux::LinuxProbe;

/// Some tasks stalled this share of the window (150 ms of 2 s): constrained at least.
const SOME_STALL_PER_MILLE: u64 = 75;
/// Every task stalled this share of the window (100 ms of 2 s): critical at least.
const FULL_STALL_PER_MILLE: u64 = 50;

pub(super) fn arm(tx: &mpsc::Sender<Wake>) {
    let probe = LinuxProbe::default();
    for file in pressure_files(&probe) {
        for (kind, per_mille, wake) in [
            (StallKind::Some, SOME_STALL_PER_MILLE, Wake::Stall),
            (StallKind::Full, FULL_STALL_PER_MILLE, Wake::FullStall),
        ] {
            match arm_shortest(&file, kind, per_mille) {
                Ok((trigger, stall_us, window_us)) => {
                    tracing::info!(file = %file.display(), ?kind, stall_us, window_us, "memory pressure trigger armed");
                    tokio::spawn(watch(trigger, file.clone(), wake, tx.clone()));
                }
                Err(e) => tracing::info!(
                    file = %file.display(), error = %e,
                    "no PSI trigger here (kernel without PSI, or not permitted); the poll covers it"
                ),
            }
        }
    }
    if let Some((dir, limit)) = probe.own_v1_memory_cgroup() {
        if let Err(e) = threshold::arm(&dir, limit, tx) {
            tracing::info!(cgroup = %dir.display(), error = %e, "no memory usage thresholds on this cgroup; the poll covers it");
        }
    }
}

/// A trigger on the shortest window the kernel accepts from this process.
fn arm_shortest(
    file: &std::path::Path,
    kind: StallKind,
    per_mille: u64,
) -> std::io::Result<(PsiTrigger, u64, u64)> {
    let mut refused = None;
    for window_us in WINDOWS_US {
        let stall_us = window_us * per_mille / 1000;
        match PsiTrigger::arm(file, kind, stall_us, window_us) {
            Ok(trigger) => return Ok((trigger, stall_us, window_us)),
            Err(e) => refused = Some(e),
        }
    }
    Err(refused.unwrap_or_else(|| std::io::Error::other("no window to try")))
}

/// The system's pressure file, then the own cgroup's when it has one.
fn pressure_files(probe: &LinuxProbe) -> Vec<PathBuf> {
    let mut files = vec![probe.proc_root.join("pressure/memory")];
    files.extend(probe.own_pressure_file());
    files
}

async fn watch(trigger: PsiTrigger, file: PathBuf, wake: Wake, tx: mpsc::Sender<Wake>) {
    loop {
        if let Err(e) = trigger.fired().await {
            tracing::warn!(file = %file.display(), error = %e, "a pressure trigger failed; the poll covers it");
            return;
        }
        tracing::info!(file = %file.display(), ?wake, "memory pressure trigger fired");
        forward(&tx, wake);
        if tx.is_closed() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_own_cgroups_pressure_file_is_watched_beside_the_systems() {
        let root = tempfile::tempdir().expect("tempdir");
        let proc_root = root.path().join("proc");
        let cgroup_root = root.path().join("cgroup");
        std::fs::create_dir_all(proc_root.join("self")).expect("mkdir");
        std::fs::create_dir_all(cgroup_root.join("app.slice/job")).expect("mkdir");
        std::fs::write(proc_root.join("self/cgroup"), "0::/app.slice/job\n").expect("write");
        std::fs::write(cgroup_root.join("app.slice/job/memory.pressure"), "").expect("write");
        let probe = LinuxProbe {
            proc_root: proc_root.clone(),
            cgroup_root: cgroup_root.clone(),
        };
        assert_eq!(
            pressure_files(&probe),
            vec![
                proc_root.join("pressure/memory"),
                cgroup_root.join("app.slice/job/memory.pressure")
            ]
        );
        // A v1 memory controller beside a unified hierarchy (hybrid): the unified one's file.
        std::fs::create_dir_all(cgroup_root.join("unified/job")).expect("mkdir");
        std::fs::write(cgroup_root.join("unified/job/memory.pressure"), "").expect("write");
        std::fs::write(proc_root.join("self/cgroup"), "4:memory:/job\n0::/job\n").expect("write");
        assert_eq!(
            pressure_files(&probe),
            vec![
                proc_root.join("pressure/memory"),
                cgroup_root.join("unified/job/memory.pressure")
            ]
        );
        // The root cgroup's pressure is the system's...
        std::fs::write(proc_root.join("self/cgroup"), "4:memory:/job\n0::/\n").expect("write");
        std::fs::write(cgroup_root.join("memory.pressure"), "").expect("write");
        assert_eq!(
            pressure_files(&probe),
            vec![proc_root.join("pressure/memory")]
        );
        // ...except in a container (a cgroup namespace), where the root is the container's.
        std::fs::write(cgroup_root.join("memory.current"), "1000").expect("write");
        assert_eq!(
            pressure_files(&probe),
            vec![
                proc_root.join("pressure/memory"),
                cgroup_root.join("memory.pressure")
            ]
        );
    }
}

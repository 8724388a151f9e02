//! This process's resident memory, split into anonymous pages (heap: KV caches, compute
//! buffers) and file-backed pages (mmap'd model weights), because the two behave differently:
//! the kernel can drop clean file pages under pressure and read them back, anonymous pages can
//! only be swapped.

/// Resident bytes of this process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ProcessMemory {
    /// Everything resident (anonymous + file-backed + shared).
    pub resident: u64,
    /// Anonymous pages: the heap and anonymous mappings.
    pub anon: u64,
    /// File-backed pages: mapped files such as model weights, and the program itself.
    pub file: u64,
}

/// This process's resident memory, or `None` where it cannot be read.
#[cfg(target_os = "linux")]
pub fn process_memory() -> Option<ProcessMemory> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_status(&status)
}

/// macOS: the process's physical footprint (what Activity Monitor's Memory column shows and what
/// the kernel's memory pressure charges the process for), and its resident size, from
/// `proc_pid_rusage`. See [`from_footprint`] for how they split.
#[cfg(target_os = "macos")]
pub fn process_memory() -> Option<ProcessMemory> {
    let mut info = std::mem::MaybeUninit::<libc::rusage_info_v2>::zeroed();
    // SAFETY: the buffer is a rusage_info_v2, the flavour asked for; the kernel fills it.
    let result = unsafe {
        libc::proc_pid_rusage(
            libc::getpid(),
            libc::RUSAGE_INFO_V2,
            info.as_mut_ptr().cast::<libc::rusage_info_t>(),
        )
    };
    if result != 0 {
        return None;
    }
    // SAFETY: zero-initialised plain integers, written by the kernel on success.
    let info = unsafe { info.assume_init() };
    Some(from_footprint(
        info.ri_resident_size,
        info.ri_phys_footprint,
    ))
}

/// Elsewhere the split is not available here; everything counts as anonymous.
#[cfg(not(any(target_os = "linux", target_os = "macos")))]
pub fn process_memory() -> Option<ProcessMemory> {
    use sysinfo::{ProcessRefreshKind, ProcessesToUpdate, System};
    let pid = sysinfo::get_current_pid().ok()?;
    let mut sys = System::new();
    sys.refresh_processes_specifics(
        ProcessesToUpdate::Some(&[pid]),
        true,
        ProcessRefreshKind::nothing().with_memory(),
    );
    let resident = sys.process(pid)?.memory();
    Some(ProcessMemory {
        resident,
        anon: resident,
        file: 0,
    })
}

/// macOS's figures as the split the pool measures with. The physical footprint counts the
/// process's dirty anonymous memory, its compressed pages and its Metal (IOKit) allocations —
/// the KV cache and compute buffers a model on the GPU holds, which the resident size may not
/// show — and not the clean file pages of mapped weights, which the kernel can drop. So the
/// footprint is the "anonymous" part; the resident pages beyond it are the file-backed part
/// (mapped weights). When compressed or GPU memory makes the footprint exceed the resident
/// size, no file pages are counted rather than a negative amount.
#[cfg_attr(not(target_os = "macos"), allow(dead_code))]
pub fn from_footprint(resident: u64, footprint: u64) -> ProcessMemory {
    ProcessMemory {
        resident: resident.max(footprint),
        anon: footprint,
        file: resident.saturating_sub(footprint),
    }
}

/// Bytes of this process that are resident in RAM, or `None` where it cannot be read.
pub fn process_rss() -> Option<u64> {
    process_memory().map(|m| m.resident)
}

/// Reads `VmRSS`, `RssAnon` and `RssFile` (kB) from the text of `/proc/<pid>/status`.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn parse_status(status: &str) -> Option<ProcessMemory> {
    let field = |name: &str| {
        status.lines().find_map(|line| {
            let rest = line.strip_prefix(name)?.strip_prefix(':')?;
            let kb: u64 = rest.trim().strip_suffix("kB")?.trim().parse().ok()?;
            kb.checked_mul(1024)
        })
    };
    Some(ProcessMemory {
        resident: field("VmRSS")?,
        anon: field("RssAnon")?,
        file: field("RssFile")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mac_footprint_splits_into_anonymous_and_mapped() {
        // A model on Metal, by hand: 1.2 GB resident, of which 0.5 GB are the mapped weights'
        // clean pages; footprint 0.7 GB (heap, KV and compute in Metal buffers).
        let m = from_footprint(1_200_000_000, 700_000_000);
        assert_eq!(
            (m.resident, m.anon, m.file),
            (1_200_000_000, 700_000_000, 500_000_000)
        );
        // Weights wired by Metal and KV in GPU memory the resident size does not show: the
        // footprint (1.5 GB) exceeds the resident size (1.0 GB); all of it counts, no file pages.
        let m = from_footprint(1_000_000_000, 1_500_000_000);
        assert_eq!(
            (m.resident, m.anon, m.file),
            (1_500_000_000, 1_500_000_000, 0)
        );
    }

    #[test]
    fn status_fields_are_read_in_bytes() {
        let status = "Name:\theadroom\nVmPeak:\t  999 kB\nVmRSS:\t  3000 kB\nRssAnon:\t  2000 kB\n\
                      RssFile:\t   900 kB\nRssShmem:\t   100 kB\n";
        assert_eq!(
            parse_status(status),
            Some(ProcessMemory {
                resident: 3000 * 1024,
                anon: 2000 * 1024,
                file: 900 * 1024,
            })
        );
        assert_eq!(parse_status("VmRSS:\t1 kB\n"), None);
        assert_eq!(
            parse_status("VmRSS: x kB\nRssAnon: 1 kB\nRssFile: 1 kB\n"),
            None
        );
    }

    #[test]
    fn touching_memory_shows_up_as_anonymous() {
        let before = process_memory().expect("readable");
        let block = vec![1u8; 64 << 20];
        let after = process_memory().expect("readable");
        assert!(
            after.anon >= before.anon + (60 << 20),
            "{before:?} -> {after:?}"
        );
        assert!(after.resident >= before.resident + (60 << 20));
        drop(block);
    }
}

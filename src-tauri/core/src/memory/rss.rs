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

/// Outside Linux the split is not available here; everything counts as anonymous.
#[cfg(not(target_os = "linux"))]
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

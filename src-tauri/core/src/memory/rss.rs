//! This process's resident memory.

/// Bytes of this process that are resident in RAM (anonymous and file-backed pages together),
/// or `None` where it cannot be read.
#[cfg(target_os = "linux")]
pub fn process_rss() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages = parse_statm_resident(&statm)?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(page).ok().map(|page| pages * page)
}

#[cfg(not(target_os = "linux"))]
pub fn process_rss() -> Option<u64> {
    use sysinfo::{ProcessRefreshKind, ProcessesToUpdate, System};
    let pid = sysinfo::get_current_pid().ok()?;
    let mut sys = System::new();
    sys.refresh_processes_specifics(
        ProcessesToUpdate::Some(&[pid]),
        true,
        ProcessRefreshKind::nothing().with_memory(),
    );
    sys.process(pid).map(|p| p.memory())
}

/// The second field of `/proc/<pid>/statm` is the resident page count.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn parse_statm_resident(statm: &str) -> Option<u64> {
    statm.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statm_resident_is_the_second_field() {
        assert_eq!(
            parse_statm_resident("6112 1523 812 1 0 1342 0\n"),
            Some(1523)
        );
        assert_eq!(parse_statm_resident("6112"), None);
        assert_eq!(parse_statm_resident("a b"), None);
    }

    #[test]
    fn touching_memory_shows_up_in_rss() {
        let before = process_rss().expect("rss readable");
        let block = vec![1u8; 64 << 20];
        let after = process_rss().expect("rss readable");
        assert!(after >= before + (60 << 20), "{before} -> {after}");
        drop(block);
    }
}

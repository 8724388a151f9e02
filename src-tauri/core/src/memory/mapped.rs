//! How much of one mapped file is resident in this process: the honest size of mmap'd model
//! weights, which occupy RAM only as far as their pages have been read in (and which the kernel
//! may drop again under pressure).

use std::path::Path;

/// Resident bytes of every mapping of `path` in this process, or `None` where it cannot be read
/// (not Linux, or `/proc` unavailable). A file that is not mapped gives `Some(0)`.
#[cfg(target_os = "linux")]
pub fn resident_bytes_of_file(path: &Path) -> Option<u64> {
    let smaps = std::fs::read_to_string("/proc/self/smaps").ok()?;
    let path = path.canonicalize().ok()?;
    Some(resident_in_smaps(&smaps, &path.to_string_lossy()))
}

#[cfg(not(target_os = "linux"))]
pub fn resident_bytes_of_file(_path: &Path) -> Option<u64> {
    None
}

/// Sums the `Rss:` lines of the mappings in `smaps` whose path is `path`.
///
/// A mapping starts with a header line `start-end perms offset dev inode [path]`; its fields
/// follow as `Name: value kB` lines until the next header.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn resident_in_smaps(smaps: &str, path: &str) -> u64 {
    let mut total: u64 = 0;
    let mut in_file = false;
    for line in smaps.lines() {
        if is_mapping_header(line) {
            in_file = mapping_path(line) == Some(path);
        } else if in_file {
            if let Some(rest) = line.strip_prefix("Rss:") {
                let kb = rest
                    .trim()
                    .strip_suffix("kB")
                    .and_then(|n| n.trim().parse::<u64>().ok())
                    .unwrap_or(0);
                total = total.saturating_add(kb.saturating_mul(1024));
            }
        }
    }
    total
}

/// Field lines are `Key: value`; a header's first word is an address range with a '-'.
fn is_mapping_header(line: &str) -> bool {
    line.split_whitespace()
        .next()
        .is_some_and(|first| first.contains('-') && !first.ends_with(':'))
}

/// The path of a header line: everything after the fifth field (paths may contain spaces).
fn mapping_path(line: &str) -> Option<&str> {
    let mut rest = line;
    for _ in 0..5 {
        rest = rest.trim_start();
        let end = rest.find(char::is_whitespace)?;
        rest = &rest[end..];
    }
    let path = rest.trim();
    (!path.is_empty()).then_some(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMAPS: &str = "\
55d0c0a00000-55d0c0a20000 r--p 00000000 08:01 1234    /usr/bin/headroom
Size:                128 kB
Rss:                 120 kB
7f0000000000-7f0006000000 r--p 00000000 08:01 777     /models/my model.gguf
Size:              98304 kB
Rss:               90000 kB
Pss:               90000 kB
7f0006000000-7f0006100000 rw-p 00000000 00:00 0
Size:               1024 kB
Rss:                1024 kB
7f0007000000-7f0007001000 r--p 06000000 08:01 777     /models/my model.gguf
Size:                  4 kB
Rss:                   4 kB
VmFlags: rd mr mw me
";

    #[test]
    fn sums_every_mapping_of_the_file_and_nothing_else() {
        assert_eq!(
            resident_in_smaps(SMAPS, "/models/my model.gguf"),
            (90000 + 4) * 1024
        );
        assert_eq!(resident_in_smaps(SMAPS, "/usr/bin/headroom"), 120 * 1024);
        assert_eq!(resident_in_smaps(SMAPS, "/models/other.gguf"), 0);
        assert_eq!(resident_in_smaps("", "/x"), 0);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_mapped_file_is_found_in_our_own_smaps() {
        use std::io::Write;
        let mut file = tempfile::NamedTempFile::new().expect("temp file");
        file.write_all(&vec![7u8; 1 << 20]).expect("write");
        let map = std::fs::File::open(file.path()).expect("open");
        // Reading through a private read-only mapping makes its pages resident.
        // SAFETY: the mapping is read-only, private, and unmapped before the file goes away.
        unsafe {
            let len = 1 << 20;
            let ptr = libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE | libc::MAP_POPULATE,
                std::os::fd::AsRawFd::as_raw_fd(&map),
                0,
            );
            assert_ne!(ptr, libc::MAP_FAILED);
            let resident = resident_bytes_of_file(file.path()).expect("smaps readable");
            libc::munmap(ptr, len);
            assert_eq!(resident, 1 << 20);
        }
    }
}

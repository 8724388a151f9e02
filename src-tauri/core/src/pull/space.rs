//! Whether a download fits on the disk, checked before the first byte is written.

use std::path::Path;

/// Bytes free for this user on the filesystem holding `folder`; None where it cannot be read.
pub fn available(folder: &Path) -> Option<u64> {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        let path = std::ffi::CString::new(folder.as_os_str().as_bytes()).ok()?;
        let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: `path` is a NUL-terminated string and `stat` a place for the answer.
        if unsafe { libc::statvfs(path.as_ptr(), &mut stat) } != 0 {
            return None;
        }
        #[allow(clippy::unnecessary_cast)] // u32 on macOS, u64 on Linux
        Some((stat.f_bavail as u64).saturating_mul(stat.f_frsize as u64))
    }
    #[cfg(not(unix))]
    {
        let _ = folder;
        None
    }
}

/// The bytes missing to write `remaining` more with `available` free, keeping `reserve` free
/// for the rest of the machine; None when it fits.
pub fn missing(remaining: u64, available: u64, reserve: u64) -> Option<u64> {
    let needed = remaining.saturating_add(reserve);
    (needed > available).then(|| needed - available)
}

/// What a download leaves free on the disk, at least, so the machine can still work.
pub const RESERVE: u64 = 512 << 20;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_missing() {
        assert_eq!(missing(100, 1000, 500), None);
        assert_eq!(missing(600, 1000, 500), Some(100));
        assert_eq!(missing(u64::MAX, 10, 0), Some(u64::MAX - 10));
    }

    #[cfg(unix)]
    #[test]
    fn the_temporary_folder_has_some_space() {
        let free = available(&std::env::temp_dir()).expect("statvfs");
        assert!(free > 0);
        assert_eq!(available(Path::new("/no/such/folder")), None);
    }
}

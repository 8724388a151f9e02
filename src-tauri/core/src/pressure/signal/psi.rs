//! A Linux PSI trigger: the kernel wakes us when memory stalls pass a threshold within a window,
//! instead of us polling for it (`Documentation/accounting/psi.rst`).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// The windows to try, shortest first: the kernel accepts 500 ms from a process with
/// `CAP_SYS_RESOURCE`, and only multiples of 2 s from others.
pub const WINDOWS_US: [u64; 2] = [500_000, 2_000_000];

/// Which stall a trigger watches: `Some` task waiting for memory, or `Full` (every runnable
/// task waiting at once, the machine doing no work).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StallKind {
    Some,
    Full,
}

/// An armed trigger on a PSI file (`/proc/pressure/memory` or a cgroup's `memory.pressure`).
pub struct PsiTrigger {
    fd: AsyncFd<std::fs::File>,
}

impl PsiTrigger {
    /// Fires when `kind` stalls add up to `stall_us` within `window_us`.
    pub fn arm(
        path: &Path,
        kind: StallKind,
        stall_us: u64,
        window_us: u64,
    ) -> std::io::Result<Self> {
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)?;
        // The kernel reads the whole trigger from one write, NUL included.
        let kind = match kind {
            StallKind::Some => "some",
            StallKind::Full => "full",
        };
        file.write_all(format!("{kind} {stall_us} {window_us}\0").as_bytes())?;
        // SAFETY: the AsyncFd owns the File, whose descriptor stays open and the same until the
        // AsyncFd (and with it the File) is dropped.
        let fd = unsafe { AsyncFd::register_with_interest(file, Interest::PRIORITY) }
            .map_err(|e| e.into_parts().1)?;
        Ok(Self { fd })
    }

    /// Waits until the trigger fires.
    pub async fn fired(&self) -> std::io::Result<()> {
        let mut guard = self.fd.ready(Interest::PRIORITY).await?;
        guard.clear_ready();
        Ok(())
    }
}

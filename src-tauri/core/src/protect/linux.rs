//! Read leases: a writer waits for the model to unload.
//!
//! `fcntl(F_SETLEASE, F_RDLCK)` on a read-only descriptor of the model file. When another
//! process opens the file for writing or truncates it, the kernel holds that call for up to
//! `/proc/sys/fs/lease-break-time` seconds (45 by default) and sends this process SIGIO. The
//! task started here hears the signal, finds which leases are breaking (`F_GETLEASE` no longer
//! answers `F_RDLCK`) and tells each one's pool; the pool ends the model's requests and
//! unloads it, and the descriptor closes with the last handle of the model, after its worker
//! has stopped and its mapping is gone. Then the writer goes on.
//!
//! SIGIO's default action ends the process, so no lease is taken unless the handler is in
//! place. Leases need the file's owner (or `CAP_LEASE`) and a file system that has them; where
//! a lease cannot be had, the weights are read into memory instead.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};

use tokio::signal::unix::{signal, SignalKind};

use super::{Hold, OnChange, ProtectError, Protected, Protection};

/// One lease, held while its model is loaded.
pub(crate) struct Held {
    file: File,
    on_change: OnChange,
    /// Whether `on_change` was called: once is enough.
    told: AtomicBool,
}

impl Held {
    /// Whether the kernel is breaking the lease (a writer waits) or has already taken it.
    fn breaking(&self) -> bool {
        // SAFETY: F_GETLEASE only reads the state of a descriptor this value owns.
        let lease = unsafe { libc::fcntl(self.file.as_raw_fd(), libc::F_GETLEASE) };
        lease != libc::F_RDLCK
    }

    /// Tells the pool, the first time the lease is seen breaking.
    fn check(&self) {
        if self.breaking() && !self.told.swap(true, Ordering::AcqRel) {
            (self.on_change)();
        }
    }
}

/// The leases of one pool, and whether they may be taken at all.
#[derive(Clone)]
pub(super) struct Leases {
    held: Arc<Mutex<Vec<Weak<Held>>>>,
    /// False when the SIGIO handler could not be installed: a lease would then kill the process
    /// on its first break.
    enabled: bool,
}

impl Leases {
    /// Installs the SIGIO handler and starts the task that hears lease breaks.
    pub(super) fn start() -> Self {
        let held: Arc<Mutex<Vec<Weak<Held>>>> = Arc::default();
        let enabled = match signal(SignalKind::io()) {
            Ok(mut sigio) => {
                let held = Arc::clone(&held);
                tokio::spawn(async move {
                    // Signals coalesce: each wake looks at every lease.
                    while sigio.recv().await.is_some() {
                        check_all(&held);
                    }
                });
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot handle SIGIO: model files will be read into memory, not mapped");
                false
            }
        };
        Self { held, enabled }
    }

    pub(super) fn protect(
        &self,
        path: &Path,
        on_change: OnChange,
    ) -> Result<Protected, ProtectError> {
        if !self.enabled {
            return Ok(Protected::in_memory(path));
        }
        let file = File::open(path)?;
        // SAFETY: F_SETLEASE on a descriptor this function owns; it changes no memory.
        let taken = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETLEASE, libc::F_RDLCK) };
        if taken == -1 {
            let error = io::Error::last_os_error();
            if error.raw_os_error() == Some(libc::EAGAIN) {
                return Err(ProtectError::BeingWritten);
            }
            tracing::info!(
                path = %path.display(),
                error = %error,
                "no read lease on this file (not this user's, or its file system has none): its weights are read into memory instead of mapped"
            );
            return Ok(Protected::in_memory(path));
        }
        let held = Arc::new(Held {
            file,
            on_change,
            told: AtomicBool::new(false),
        });
        {
            let mut leases = self.held.lock().unwrap_or_else(PoisonError::into_inner);
            leases.retain(|lease| lease.strong_count() > 0);
            leases.push(Arc::downgrade(&held));
        }
        // A break that began before the lease was listed sent its signal too early to be seen.
        held.check();
        Ok(Protected {
            load_from: path.to_path_buf(),
            protection: Protection::Lease,
            _hold: Hold::Lease(held),
        })
    }
}

fn check_all(held: &Mutex<Vec<Weak<Held>>>) {
    let live: Vec<Arc<Held>> = held
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .filter_map(Weak::upgrade)
        .collect();
    for lease in live {
        lease.check();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    fn model_file(dir: &Path) -> std::path::PathBuf {
        let path = dir.join("model.gguf");
        std::fs::write(&path, vec![7u8; 4096]).expect("write");
        path
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_writer_waits_until_the_lease_is_let_go_and_the_holder_is_told_once() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = model_file(dir.path());
        let leases = Leases::start();
        let (told_tx, told) = mpsc::channel();
        let protected = leases
            .protect(
                &path,
                Box::new(move || {
                    let _ = told_tx.send(Instant::now());
                }),
            )
            .expect("protect");
        assert_eq!(protected.protection(), Protection::Lease);

        let writer_path = path.clone();
        let writer = std::thread::spawn(move || {
            // `: > model.gguf`: open for writing, truncating.
            let mut file = File::create(&writer_path).expect("open for writing");
            file.write_all(b"new").expect("write");
            Instant::now()
        });
        let told_at = told
            .recv_timeout(Duration::from_secs(10))
            .expect("the holder is told");
        // The writer is held while the lease is: the file is untouched.
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(std::fs::metadata(&path).expect("meta").len(), 4096);
        let released_at = Instant::now();
        drop(protected);
        let written_at = writer.join().expect("writer");
        assert!(
            written_at >= released_at,
            "the writer went on only after the lease was let go"
        );
        assert!(told_at < released_at);
        assert_eq!(std::fs::read(&path).expect("read"), b"new");
        assert!(told.try_recv().is_err(), "told once");
    }

    #[tokio::test]
    async fn a_file_open_for_writing_is_not_protected_but_refused() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = model_file(dir.path());
        let leases = Leases::start();
        let _writer = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .expect("open for writing");
        let refused = leases.protect(&path, Box::new(|| {}));
        assert!(matches!(refused, Err(ProtectError::BeingWritten)));
    }

    #[tokio::test]
    async fn renames_and_deletes_break_nothing() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = model_file(dir.path());
        let leases = Leases::start();
        let told = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&told);
        let protected = leases
            .protect(&path, Box::new(move || flag.store(true, Ordering::Release)))
            .expect("protect");
        std::fs::rename(&path, dir.path().join("moved.gguf")).expect("rename");
        std::fs::remove_file(dir.path().join("moved.gguf")).expect("delete");
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!told.load(Ordering::Acquire));
        drop(protected);
    }
}

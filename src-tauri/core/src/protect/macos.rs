//! APFS clones: the model maps a private copy-on-write twin of the user's file.
//!
//! `clonefile(2)` makes the twin in an instant and takes no space until one of the two changes;
//! a writer rewriting or truncating the user's file then gets new blocks, and the clone keeps
//! the old ones. So a loaded model never notices, and the next load reads the new file. The
//! clone is removed when the model unloads. A clone needs both files on one APFS volume: a
//! model on another volume (an external disk) is read into memory instead.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::{Hold, Protected, Protection};

#[derive(Clone)]
pub(super) struct Clones {
    dir: PathBuf,
    next: Arc<AtomicU64>,
}

impl Clones {
    /// Clones live in `dir`; what an earlier run left there (it crashed before unloading) goes.
    /// A clone another running Headroom maps stays mapped (its inode lives on).
    pub(super) fn new(dir: PathBuf) -> Self {
        let _ = std::fs::remove_dir_all(&dir);
        Self {
            dir,
            next: Arc::default(),
        }
    }

    pub(super) fn protect(&self, path: &Path) -> Protected {
        match self.clone_of(path) {
            Ok(clone) => Protected {
                load_from: clone.file.clone(),
                protection: Protection::Clone,
                _hold: Hold::Clone(clone),
            },
            Err(error) => {
                tracing::info!(
                    path = %path.display(),
                    error = %error,
                    "cannot clone this file (another volume, or not APFS): its weights are read into memory instead of mapped"
                );
                Protected::in_memory(path)
            }
        }
    }

    fn clone_of(&self, path: &Path) -> io::Result<ClonedFile> {
        let name = path
            .file_name()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
        // One folder per clone keeps the file's own name (llama.cpp finds split parts by name).
        let dir = self.dir.join(format!(
            "{}-{}",
            std::process::id(),
            self.next.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir)?;
        let file = dir.join(name);
        let source = CString::new(path.as_os_str().as_bytes())?;
        let target = CString::new(file.as_os_str().as_bytes())?;
        // SAFETY: both are NUL-terminated paths that outlive the call.
        let cloned = unsafe { libc::clonefile(source.as_ptr(), target.as_ptr(), 0) };
        if cloned != 0 {
            let error = io::Error::last_os_error();
            let _ = std::fs::remove_dir_all(&dir);
            return Err(error);
        }
        Ok(ClonedFile { dir, file })
    }
}

/// A clone, removed when dropped (after its model unloaded).
pub(crate) struct ClonedFile {
    dir: PathBuf,
    file: PathBuf,
}

impl Drop for ClonedFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

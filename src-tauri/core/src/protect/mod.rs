//! Keeping a loaded model's file from changing under it.
//!
//! Engines map model files into memory: the weights stay reclaimable file pages, and the memory
//! figures stay honest. But a mapped file that another program truncates or rewrites in place
//! (`cp new.gguf model.gguf`, `curl -o`, a download tool) takes its pages away, and the next
//! touch of them is a SIGBUS that ends the process: every model, every client, the menu-bar app.
//! A file watcher alone hears of it after the fact, too late for a generation in flight. So
//! before a load, the file is *protected*, in the first way the platform offers:
//!
//! - Linux: a read lease (`fcntl(F_SETLEASE, F_RDLCK)`). A writer's `open` (or `truncate`)
//!   blocks while the kernel signals the holder (SIGIO); Headroom ends the model's requests,
//!   unloads it, and lets go, and only then does the writer go on (see `linux.rs`).
//! - macOS: an APFS clone of the file (`clonefile`), instant and free of space, is what gets
//!   mapped; whatever happens to the user's file, the clone keeps its blocks. It is removed
//!   when the model unloads (see `macos.rs`).
//! - Otherwise (a file this user does not own, a file system without leases or clones): the
//!   weights are read into memory instead of mapped. Nothing can take them away then; they
//!   count as the process's own memory and are not reclaimable while loaded.
//!
//! Renames and deletes need none of this: the old inode stays mapped until the model unloads.

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "macos")]
mod macos;

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::engine::{
    ChatMessage, EngineError, Footprint, GenerateRequest, Generation, GenerationStats, LoadedModel,
};

/// Called at most once when the protected file is about to change; it must not block.
pub type OnChange = Box<dyn Fn() + Send + Sync>;

/// How a loaded model's file is kept from changing under it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Protection {
    /// A read lease on the user's file (Linux): writers wait until the model has unloaded.
    Lease,
    /// A private clone of the file is mapped (macOS).
    Clone,
    /// The weights are read into memory, not mapped.
    InMemory,
}

impl Protection {
    /// Whether the engine may map the file it is given.
    pub fn maps_weights(self) -> bool {
        !matches!(self, Self::InMemory)
    }
}

/// Why a file could not be protected (and so should not be loaded now).
#[derive(Debug, thiserror::Error)]
pub enum ProtectError {
    /// Another program has it open for writing: a download or a copy in progress.
    #[error("another program is writing the file (a download or a copy in progress?); retry when it has finished")]
    BeingWritten,
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// A protected model file, held as long as the model is loaded. Drop it only after the model
/// is gone: dropping it lets writers through (Linux) or removes the clone (macOS).
pub struct Protected {
    load_from: PathBuf,
    protection: Protection,
    _hold: Hold,
}

impl Protected {
    /// The file to give the engine (the clone, where there is one).
    pub fn load_from(&self) -> &Path {
        &self.load_from
    }

    pub fn protection(&self) -> Protection {
        self.protection
    }

    /// A file read into memory, with nothing to hold.
    fn in_memory(path: &Path) -> Self {
        Self {
            load_from: path.to_path_buf(),
            protection: Protection::InMemory,
            _hold: Hold::Nothing,
        }
    }
}

/// What keeps a protection in force, by platform.
enum Hold {
    Nothing,
    #[cfg(target_os = "linux")]
    Lease(#[allow(dead_code)] std::sync::Arc<linux::Held>),
    #[cfg(target_os = "macos")]
    Clone(#[allow(dead_code)] macos::ClonedFile),
}

/// Protects the files of a pool's models. One per pool.
#[derive(Clone)]
pub struct Protector {
    #[cfg(target_os = "linux")]
    leases: linux::Leases,
    #[cfg(target_os = "macos")]
    clones: macos::Clones,
}

impl std::fmt::Debug for Protector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Protector").finish_non_exhaustive()
    }
}

impl Protector {
    /// Starts what protection needs: on Linux the task that hears of lease breaks (on the
    /// current Tokio runtime), on macOS an empty folder for clones under `data`.
    pub fn start(data: &Path) -> Self {
        #[cfg(not(target_os = "macos"))]
        let _ = data;
        Self {
            #[cfg(target_os = "linux")]
            leases: linux::Leases::start(),
            #[cfg(target_os = "macos")]
            clones: macos::Clones::new(data.join("clones")),
        }
    }

    /// Protects `path` for a load; `on_change` is called (once, from another thread) when the
    /// file is about to change, which must end in the model's unload and the `Protected`
    /// dropped. Blocking (a clone may take a moment): call it where the load runs.
    pub fn protect(&self, path: &Path, on_change: OnChange) -> Result<Protected, ProtectError> {
        #[cfg(target_os = "linux")]
        let protected = self.leases.protect(path, on_change)?;
        #[cfg(target_os = "macos")]
        let protected = {
            drop(on_change);
            self.clones.protect(path)
        };
        #[cfg(not(any(target_os = "linux", target_os = "macos")))]
        let protected = {
            drop(on_change);
            Protected::in_memory(path)
        };
        Ok(protected)
    }
}

/// A loaded model and its protected file, dropped in that order: the model's worker stops and
/// its mapping goes before the file is let go.
pub struct ProtectedModel {
    model: Box<dyn LoadedModel>,
    file: Protected,
}

impl ProtectedModel {
    pub fn new(model: Box<dyn LoadedModel>, file: Protected) -> Self {
        Self { model, file }
    }

    pub fn protection(&self) -> Protection {
        self.file.protection()
    }
}

impl LoadedModel for ProtectedModel {
    fn engine(&self) -> &'static str {
        self.model.engine()
    }

    fn footprint(&self) -> Footprint {
        self.model.footprint()
    }

    fn context_per_request(&self) -> u32 {
        self.model.context_per_request()
    }

    fn sampling_defaults(&self) -> crate::engine::SamplingDefaults {
        self.model.sampling_defaults()
    }

    fn render_chat(
        &self,
        messages: &[ChatMessage],
        tools: Option<&[serde_json::Value]>,
    ) -> Result<String, EngineError> {
        self.model.render_chat(messages, tools)
    }

    fn tool_format(&self) -> crate::engine::ToolFormat {
        self.model.tool_format()
    }

    fn count_tokens(&self, prompt: &str) -> Result<u32, EngineError> {
        self.model.count_tokens(prompt)
    }

    fn is_embedding_model(&self) -> bool {
        self.model.is_embedding_model()
    }

    fn embed(
        &self,
        inputs: Vec<crate::engine::EmbedInput>,
    ) -> Result<crate::engine::PendingEmbeddings, EngineError> {
        self.model.embed(inputs)
    }

    fn generate(&self, request: GenerateRequest) -> Result<Generation, EngineError> {
        self.model.generate(request)
    }

    fn stats(&self) -> GenerationStats {
        self.model.stats()
    }

    fn stop(&self, reason: &str) {
        self.model.stop(reason);
    }
}

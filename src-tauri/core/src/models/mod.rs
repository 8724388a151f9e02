//! The model files on disk, and which names may reach them.

pub mod catalog;
pub mod gguf;
pub mod sources;
pub mod watch;

pub use catalog::{is_valid_id, Catalog, CatalogError, FileVersion, ModelFile};
pub use sources::{Source, SourceKind};

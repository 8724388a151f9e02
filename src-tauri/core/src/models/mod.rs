//! The model files on disk, and which names may reach them.

pub mod catalog;
pub mod gguf;

pub use catalog::{is_valid_id, Catalog, CatalogError, FileVersion, ModelFile};

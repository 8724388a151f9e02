//! Headroom's core: everything but the desktop shell.
//!
//! - [`engine`]: model formats behind one trait (llama.cpp today).
//! - [`models`]: finding model files and guarding which ids reach them.
//! - [`pool`]: the one task that owns which models are in memory, admission and eviction.
//! - [`memory`]: measuring this process and the machine.
//! - [`pressure`]: the pressure monitor (tiers from the probe and the kernel's signal).
//! - [`notify`]: desktop notifications when memory runs low.
//! - [`metrics`]: Prometheus counters and the record of recent generations.
//! - [`api`]: the OpenAI-compatible HTTP API and Headroom's own.
//! - [`config`]: settings and where files live.
//! - [`server`]: all of the above wired together; the binary's entry point.
//!
//! Nothing here depends on Tauri: it builds, runs headless and is tested without a display.

pub mod api;
pub mod config;
pub mod engine;
pub mod history;
pub mod memory;
pub mod metrics;
pub mod models;
pub mod notify;
pub mod pool;
pub mod pressure;
pub mod server;

//! Headroom's core: everything but the desktop shell.
//!
//! - [`engine`]: the one trait every engine crate implements, and what engines share
//!   (chat templates, stop strings, UTF-8 assembly, sampling parameters).
//! - [`models`]: finding model files and guarding which ids reach them.
//! - [`pool`]: the one task that owns which models are in memory, admission and eviction.
//! - [`memory`]: measuring this process and the machine.
//! - [`pressure`]: the pressure monitor (tiers from the probe and the kernel's signal).
//! - [`protect`]: keeping a loaded model's file from changing under it.
//! - [`notify`]: desktop notifications when memory runs low.
//! - [`metrics`]: Prometheus counters and the record of recent generations.
//! - [`events`]: the one app-wide event stream (pool, pressure, settings changes).
//! - [`listen`]: the listeners: loopback (or one chosen address), bounded connections.
//! - [`live`]: settings applied to the running server, at start and on every change.
//! - [`api`]: the OpenAI-compatible HTTP API and Headroom's own.
//! - [`config`]: settings and where files live.
//! - [`vocab`]: the shared words (sizes, idle timeouts, pressure tiers, margins, thresholds);
//!   the leaf every other module may use.
//! - [`server`]: all of the above wired together; the binary's entry point.
//!
//! Nothing here depends on Tauri: it builds, runs headless and is tested without a display.

pub mod api;
pub mod config;
pub mod engine;
pub mod events;
pub mod history;
pub mod listen;
pub mod live;
pub mod memory;
pub mod metrics;
pub mod models;
pub mod notify;
pub mod pool;
pub mod pressure;
pub mod protect;
pub mod pull;
pub mod server;
pub mod vocab;

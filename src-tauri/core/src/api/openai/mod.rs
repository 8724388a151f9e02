//! The OpenAI-compatible endpoints: `/v1/models`, `/v1/chat/completions`, `/v1/completions`,
//! `/v1/responses`, `/v1/embeddings`.

pub mod chat;
pub mod completions;
pub mod embeddings;
pub mod models;
pub mod options;
pub mod responses;
mod run;
mod shape;
pub mod tools;

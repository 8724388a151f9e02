//! A loaded model's file truncated, overwritten in place (with another model, with garbage) or
//! deleted while the model streams, with a second model streaming beside it. Mapped weights
//! whose file shrinks are a SIGBUS waiting to happen; the server must stay up, the second
//! stream must complete, the first must end with an error event that says why, and the next
//! request must get what the file now is.
//!
//! Each change runs [`ROUNDS`] times on one server: one crash in twenty writes is a failure.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::{model_path, sse_data, Options, Server, GEMMA, SMOLLM2};

const VICTIM: &str = "victim";
const ROUNDS: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Change {
    /// `: > model.gguf`, what `cp`, `curl -o` and download tools do first.
    Truncate,
    /// `cp other.gguf model.gguf`: another valid model, written in place.
    OverwriteWithModel,
    /// Not a model any more.
    OverwriteWithGarbage,
    /// `rm model.gguf`: the loaded inode lives on; nothing breaks.
    Delete,
    /// Another model written beside it and renamed over it, as careful downloaders finish: the
    /// loaded inode lives on, and the next request gets the new file.
    ReplaceByRename,
}

impl Change {
    fn shell(self, file: &Path) -> String {
        let file = file.display();
        match self {
            Self::Truncate => format!(": > '{file}'"),
            Self::OverwriteWithModel => {
                format!("cp '{}' '{file}'", model_path(GEMMA).display())
            }
            Self::OverwriteWithGarbage => {
                format!("head -c 8000000 /dev/urandom > '{file}'")
            }
            Self::Delete => format!("rm '{file}'"),
            Self::ReplaceByRename => format!(
                "cp '{}' '{file}.part' && mv '{file}.part' '{file}'",
                model_path(GEMMA).display()
            ),
        }
    }
}

#[tokio::test]
async fn a_model_file_truncated_during_a_stream_ends_that_stream_and_nothing_else() {
    changes_during_streams(Change::Truncate).await;
}

#[tokio::test]
async fn a_model_file_overwritten_with_another_model_is_served_from_the_new_file() {
    changes_during_streams(Change::OverwriteWithModel).await;
}

#[tokio::test]
async fn a_model_file_overwritten_with_garbage_gets_a_clear_error_afterwards() {
    changes_during_streams(Change::OverwriteWithGarbage).await;
}

#[tokio::test]
async fn a_model_file_deleted_during_a_stream_lets_the_stream_finish() {
    changes_during_streams(Change::Delete).await;
}

#[tokio::test]
async fn a_model_file_replaced_by_a_rename_finishes_the_stream_then_serves_the_new_file() {
    changes_during_streams(Change::ReplaceByRename).await;
}

async fn changes_during_streams(change: Change) {
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join(format!("{VICTIM}.gguf"));
    let server = Server::start_with(Options {
        extra_models_dir: Some(dir.path().to_path_buf()),
        ..Options::default()
    });
    let mut writes = Vec::new();
    for round in 0..ROUNDS {
        // A fresh copy while the model is not loaded (nothing holds the file).
        std::fs::copy(model_path(SMOLLM2), &file).expect("copy the model");

        let beside = open_stream(&server, GEMMA, 100).await;
        // Long enough to be running when the file changes; a delete lets it run to the end.
        let runs_on = matches!(change, Change::Delete | Change::ReplaceByRename);
        let tokens = if runs_on { 80 } else { 1500 };
        let mut doomed = open_stream(&server, VICTIM, tokens).await;
        let mut text = String::new();
        while sse_data(&text).len() < 3 {
            let chunk = doomed.chunk().await.expect("read").expect("stream open");
            text.push_str(&String::from_utf8_lossy(&chunk));
        }

        // The writer runs as its own process, as another program would.
        let started = Instant::now();
        let writer = tokio::task::spawn_blocking({
            let script = change.shell(&file);
            move || Command::new("sh").arg("-c").arg(script).status()
        });
        let status = tokio::time::timeout(Duration::from_secs(60), writer)
            .await
            .expect("the writer finished within a minute")
            .expect("join")
            .expect("sh ran");
        assert!(status.success(), "{change:?}: the writer failed");
        let write_took = started.elapsed();
        writes.push(write_took);

        while let Some(chunk) = doomed.chunk().await.expect("read the rest") {
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
        let events = sse_data(&text);
        assert_eq!(events.last().map(String::as_str), Some("[DONE]"), "{text}");
        let last: Value = serde_json::from_str(&events[events.len() - 2]).expect("json");
        if runs_on {
            assert!(last["choices"][0]["finish_reason"].is_string(), "{text}");
        } else {
            let message = last["error"]["message"].as_str().unwrap_or_default();
            assert!(
                message.contains("changed on disk"),
                "round {round}: an error event that says why: {last}"
            );
        }

        let beside = beside.text().await.expect("the other stream");
        let beside = sse_data(&beside);
        assert_eq!(beside.last().map(String::as_str), Some("[DONE]"));
        let beside_last: Value = serde_json::from_str(&beside[beside.len() - 2]).expect("json");
        assert!(
            beside_last["choices"][0]["finish_reason"].is_string(),
            "the model beside it carried on to its end: {beside_last}"
        );

        let (code, answer) = server.complete(VICTIM, 4).await;
        match change {
            Change::Truncate | Change::OverwriteWithGarbage => {
                assert_eq!(code, 500, "{answer}");
                assert_eq!(answer["error"]["code"], "model_load_failed", "{answer}");
            }
            Change::OverwriteWithModel | Change::ReplaceByRename => {
                assert_eq!(code, 200, "{answer}");
                // Served from the new file: it is the other model now, byte for byte.
                let victim = server.memory_status(VICTIM).await.expect("loaded");
                let gemma = server.memory_status(GEMMA).await.expect("loaded");
                assert_eq!(victim["estimate"], gemma["estimate"], "{victim}");
            }
            Change::Delete => {
                assert_eq!(code, 404, "{answer}");
                assert_eq!(answer["error"]["code"], "model_not_found", "{answer}");
            }
        }
        // Let the next round start from nothing loaded on that file.
        let (code, _) = server
            .call(
                reqwest::Method::DELETE,
                &format!("/api/memory/models/{VICTIM}"),
            )
            .await;
        assert!(code == 200 || code == 404, "unload: {code}");
    }
    assert!(
        server.memory_status(GEMMA).await.is_some(),
        "the server is still up, the other model still loaded"
    );
    let stderr = server.stderr();
    assert!(!stderr.contains("panicked"), "{stderr}");
    println!("{change:?}: {ROUNDS} rounds, each write waited for {writes:?}");
}

fn rss_file(server: &Server) -> u64 {
    crate::support::proc_status_bytes(server.pid(), "RssFile:")
}

async fn open_stream(server: &Server, model: &str, max_tokens: u32) -> reqwest::Response {
    let response = server
        .client
        .post(server.url("/v1/completions"))
        .json(&json!({
            "model": model, "prompt": "1, 2, 3, 4, 5,", "temperature": 0,
            "max_tokens": max_tokens, "stream": true,
        }))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200, "{model}");
    response
}

#[tokio::test]
async fn weights_read_into_memory_never_see_their_file_change() {
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join(format!("{VICTIM}.gguf"));
    std::fs::copy(model_path(SMOLLM2), &file).expect("copy the model");
    let server = Server::start_with(Options {
        extra_models_dir: Some(dir.path().to_path_buf()),
        ..Options::with_env("HEADROOM_MAP_WEIGHTS", "false")
    });
    let (anon_before, file_before) = (server.rss_anon(), rss_file(&server));
    let mut stream = open_stream(&server, VICTIM, 60).await;
    let mut text = String::new();
    while sse_data(&text).len() < 3 {
        let chunk = stream.chunk().await.expect("read").expect("stream open");
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    let held = server.memory_status(VICTIM).await.expect("loaded");
    assert_eq!(held["protection"], "in_memory", "{held}");
    // The weights are the process's own memory now, not pages of the file: anonymous memory
    // grew by the weights and the KV cache, file pages by next to nothing.
    let anon = server.rss_anon().saturating_sub(anon_before);
    let mapped = rss_file(&server).saturating_sub(file_before);
    let size = crate::support::file_size(&model_path(SMOLLM2));
    assert!(
        anon > size && mapped < size / 10,
        "anonymous memory grew by {anon} bytes and file pages by {mapped} for a {size}-byte model"
    );

    // Nothing waits for the writer, and nothing is unloaded.
    Command::new("sh")
        .arg("-c")
        .arg(Change::Truncate.shell(&file))
        .status()
        .expect("truncate");
    while let Some(chunk) = stream.chunk().await.expect("read the rest") {
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    let events = sse_data(&text);
    let last: Value = serde_json::from_str(&events[events.len() - 2]).expect("json");
    assert!(last["choices"][0]["finish_reason"].is_string(), "{text}");
    assert!(server.memory_status(VICTIM).await.is_some(), "still loaded");
    println!(
        "in memory: {} MB anonymous for a {} MB file; the stream ran on through the truncation",
        anon / 1_000_000,
        size / 1_000_000
    );
}

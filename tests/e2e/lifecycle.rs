//! Starting, refusing to start, and stopping cleanly.

use std::time::{Duration, Instant};

use crate::support::Server;

#[tokio::test]
async fn sigterm_ends_streams_unloads_models_and_exits_zero() {
    let mut server = Server::start();
    let mut response = server.start_counting_stream(100_000).await;
    let first = response.chunk().await.expect("read").expect("first chunk");
    assert!(String::from_utf8_lossy(&first).contains("data: "));

    let stopped_at = Instant::now();
    let reader = tokio::spawn(async move {
        let mut tail = String::new();
        while let Ok(Some(chunk)) = response.chunk().await {
            tail.push_str(&String::from_utf8_lossy(&chunk));
        }
        tail
    });
    let code = tokio::task::spawn_blocking(move || {
        let code = server.terminate(Duration::from_secs(30));
        (code, server.stderr())
    });
    let (code, stderr) = code.await.expect("terminate");
    let tail = tokio::time::timeout(Duration::from_secs(5), reader)
        .await
        .expect("stream ended")
        .expect("reader");
    println!("exited {:?} after {:?}", code, stopped_at.elapsed());
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("model unloaded"), "{stderr}");
    // The stream was ended by the server, with an error event, not cut without a word.
    assert!(
        tail.contains("generation_failed") || tail.contains("[DONE]"),
        "{tail}"
    );
}

#[tokio::test]
async fn a_port_in_use_is_a_clear_error() {
    let first = Server::start();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_headroom"))
        .args(["--headless", "--port", &first.port.to_string()])
        .env(
            "HEADROOM_DATA_DIR",
            tempfile::tempdir().expect("tmp").path(),
        )
        .output()
        .expect("ran");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cannot listen on 127.0.0.1:") && stderr.contains("--port"),
        "{stderr}"
    );
}

#[tokio::test]
async fn bad_settings_are_named_and_refused() {
    let dir = tempfile::tempdir().expect("tmp");
    let config = dir.path().join("config.toml");
    std::fs::write(&config, "parallel = 0\n").expect("write");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_headroom"))
        .args(["--headless", "--port", "0", "--config"])
        .arg(&config)
        .output()
        .expect("ran");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("parallel") && stderr.contains("from 1 to 64"),
        "{stderr}"
    );
}

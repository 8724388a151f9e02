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
async fn bad_settings_in_the_environment_are_named_and_refused() {
    // A bad config file is moved aside (see settings.rs); a variable the user just set is an
    // error to fix.
    let dir = tempfile::tempdir().expect("tmp");
    let config = dir.path().join("config.toml");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_headroom"))
        .args(["--headless", "--port", "0", "--config"])
        .arg(&config)
        .env("HEADROOM_PARALLEL", "0")
        .output()
        .expect("ran");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("parallel") && stderr.contains("from 1 to 64"),
        "{stderr}"
    );
}

#[tokio::test]
async fn the_event_stream_reports_loads_and_does_not_hold_up_shutdown() {
    let mut server = Server::start();
    let mut events = server
        .client
        .get(server.url("/api/events"))
        .send()
        .await
        .expect("subscribed");
    assert_eq!(events.status(), 200);
    server.complete_ok(crate::support::SMOLLM2, 2).await;
    let mut seen = String::new();
    while !seen.contains(r#""type":"loaded""#) {
        let chunk = tokio::time::timeout(Duration::from_secs(10), events.chunk())
            .await
            .expect("an event within 10 s")
            .expect("read")
            .expect("stream open");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    let loading = seen.find(r#""type":"loading""#).expect("loading event");
    assert!(
        loading < seen.find(r#""type":"loaded""#).expect("loaded event"),
        "{seen}"
    );

    // An open event stream (the UI keeps one) is not an in-flight request to wait for.
    let started = Instant::now();
    let code = tokio::task::spawn_blocking(move || server.terminate(Duration::from_secs(30)))
        .await
        .expect("terminate");
    assert_eq!(code, Some(0));
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "shutdown waited {:?} for the event stream",
        started.elapsed()
    );
}

#[tokio::test]
async fn headless_runs_the_backend_without_webkit_in_the_same_process() {
    let server = Server::start();
    let (status, _) = server.get("/health").await;
    assert_eq!(status, 200);
    // The app binary handed over to the backend binary: same process, other executable.
    let pid = server.pid();
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).expect("exe");
    assert_eq!(
        exe.file_name().and_then(|n| n.to_str()),
        Some("headroom-server"),
        "{}",
        exe.display()
    );
    // No WebKit, GTK or Tauri pages sit in the idle server's memory.
    let (gui, mappings) = crate::support::gui_mappings(pid);
    assert!(gui.is_empty(), "{gui:#?}");
    println!(
        "idle headless server: {:.1} MB resident, {} mappings",
        server.rss() as f64 / 1e6,
        mappings
    );
}

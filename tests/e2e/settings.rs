//! Preferences: read and changed live through `/api/settings`, saved atomically, and a config
//! file that cannot be used moved aside instead of stopping the app.

use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use crate::support::{Options, Server, SMOLLM2};

async fn put(server: &Server, patch: Value) -> (u16, Value) {
    server.send_json(Method::PUT, "/api/settings", &patch).await
}

async fn config_path(server: &Server) -> PathBuf {
    let (_, settings) = server.get("/api/settings").await;
    PathBuf::from(settings["path"].as_str().expect("path"))
}

#[tokio::test]
async fn a_new_idle_timeout_applies_to_loaded_models_and_is_saved() {
    let server = Server::start();
    let events = server.events().await;
    server.complete_ok(SMOLLM2, 2).await;
    let before = server.expires_in(SMOLLM2).await.expect("a deadline");
    assert!((590.0..=600.0).contains(&before), "{before}");

    let (status, answer) = put(&server, json!({"idle_timeout": "30m"})).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["settings"]["idle_timeout"], "30m");
    assert_eq!(answer["changed"], json!(["idle_timeout"]));
    assert_eq!(answer["restart_required"], json!([]));
    let after = server.expires_in(SMOLLM2).await.expect("a deadline");
    assert!((1790.0..=1800.0).contains(&after), "{after}");
    events
        .wait_for("settings_changed", |e| e["type"] == "settings_changed")
        .await;

    let saved = std::fs::read_to_string(config_path(&server).await).expect("saved");
    assert!(saved.contains("idle_timeout = \"30m\""), "{saved}");
    // The harness sets these through the environment: they are in force but not written.
    assert!(!saved.contains("parallel = 4"), "{saved}");

    // A setting that shapes the running server waits for a restart, and says so.
    let (status, answer) = put(&server, json!({"context_size": 2048})).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["restart_required"], json!(["context_size"]));
}

#[tokio::test]
async fn invalid_settings_are_422_naming_the_field_and_change_nothing() {
    let server = Server::start();
    let path = config_path(&server).await;
    put(&server, json!({"idle_timeout": "20m"})).await;
    let saved = std::fs::read_to_string(&path).expect("saved");

    for (patch, field) in [
        (json!({"idle_timeout": "-5m"}), "idle_timeout"),
        (json!({"idle_timeout": "soon"}), "idle_timeout"),
        (json!({"parallel": 0}), "parallel"),
        (json!({"port": "high"}), "port"),
        (json!({"memory_limit": "1PB"}), "memory_limit"),
        (json!({"memory_limit": 1u64 << 50}), "memory_limit"),
        (json!({"pressure": {"critical": 50}}), "pressure"),
        (json!({"pinned": ["../etc/passwd"]}), "pinned"),
        (json!({"pinned": ["no-such-model"]}), "pinned"),
        // The old name means the same, and is answered under the new one.
        (json!({"preload": ["no-such-model"]}), "pinned"),
        (json!({"nonsense": true}), "nonsense"),
        (json!({"kv_cache_type": "q3_k"}), "kv_cache_type"),
    ] {
        let (status, body) = put(&server, patch.clone()).await;
        assert_eq!(status, 422, "{patch}: {body}");
        assert_eq!(body["error"]["code"], "invalid_setting", "{body}");
        let param = body["error"]["param"].as_str().unwrap_or_default();
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(
            param.contains(field) || message.contains(field),
            "{patch}: {body}"
        );
    }
    let (status, body) = server
        .send_json(Method::PUT, "/api/settings", &json!([1, 2]))
        .await;
    assert_eq!(status, 422, "{body}");

    assert_eq!(std::fs::read_to_string(&path).expect("file"), saved);
    let (_, now) = server.get("/api/settings").await;
    assert_eq!(now["settings"]["idle_timeout"], "20m");
}

#[tokio::test]
async fn a_lower_pool_limit_evicts_idle_models_now() {
    let server = Server::start();
    let events = server.events().await;
    let (status, _) = server
        .call(Method::POST, &format!("/api/memory/models/{SMOLLM2}/load"))
        .await;
    assert_eq!(status, 200);
    let (status, answer) = put(&server, json!({"memory_limit": "50MB"})).await;
    assert_eq!(status, 200, "{answer}");
    let evicted = events
        .wait_for("evicted", |e| {
            e["type"] == "evicted" && e["model"] == SMOLLM2
        })
        .await;
    assert_eq!(evicted["for_model"], Value::Null);
    events
        .wait_for("unloaded", |e| {
            e["type"] == "unloaded" && e["model"] == SMOLLM2
        })
        .await;
    let (_, status) = server.get("/api/memory/status").await;
    assert_eq!(status["pool"]["limit"], 50_000_000);
    assert_eq!(status["models"], json!([]));
}

#[tokio::test]
async fn a_config_file_that_cannot_be_used_is_moved_aside() {
    let server = Server::start_with(Options {
        config: Some("parallel = 0\nidle_timeout = \"5m\"\n".into()),
        ..Options::default()
    });
    let (_, settings) = server.get("/api/settings").await;
    let notice = settings["notices"][0].as_str().expect("a notice");
    assert!(
        notice.contains("parallel") && notice.contains("from 1 to 64"),
        "{notice}"
    );
    assert!(notice.contains("moved to"), "{notice}");
    assert_eq!(
        settings["settings"]["idle_timeout"], "10m",
        "defaults in force"
    );
    let path = PathBuf::from(settings["path"].as_str().expect("path"));
    let aside = set_aside_files(&path);
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert_eq!(
        std::fs::read_to_string(&aside[0]).expect("kept"),
        "parallel = 0\nidle_timeout = \"5m\"\n"
    );
    assert!(server.stderr().contains("could not be used"));
    // It still serves.
    server.complete_ok(SMOLLM2, 2).await;
}

#[tokio::test]
async fn a_server_killed_while_saving_leaves_the_config_file_whole() {
    let dir = tempfile::tempdir().expect("tmp");
    let config = dir.path().join("config.toml");
    // A big file (30 000 per-model timeouts, ~1 MB) makes each save long enough to be killed
    // in the middle of some.
    let mut text = String::from("idle_timeout = \"7m\"\n[idle_timeouts]\n");
    for i in 0..30_000 {
        text.push_str(&format!("\"model-{i}\" = \"{}m\"\n", i % 50 + 1));
    }
    std::fs::write(&config, &text).expect("write");
    let start = || {
        Server::start_with(Options {
            config_path: Some(config.clone()),
            ..Options::default()
        })
    };
    let temp_files = || {
        std::fs::read_dir(dir.path())
            .expect("dir")
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .count()
    };
    let mut saves = 0;
    let mut cut_short = 0;
    let rounds = 5;
    for round in 0..rounds {
        let server = start();
        let (_, settings) = server.get("/api/settings").await;
        assert_eq!(settings["notices"], json!([]), "round {round}: {settings}");
        assert_eq!(
            settings["settings"]["idle_timeouts"]
                .as_object()
                .map(|m| m.len()),
            Some(30_000),
            "round {round}: the whole file was read"
        );
        assert_eq!(temp_files(), 0, "the last round's remains were removed");
        // Saves back to back, and a SIGKILL as soon as one is under way: its temporary file
        // is there, being written and synced, and has not yet replaced the config file.
        let client = server.client.clone();
        let url = server.url("/api/settings");
        let saving = tokio::spawn(async move {
            let mut done = 0;
            for i in 0.. {
                let patch = json!({"idle_timeout": format!("{}m", i % 9 + 1)});
                match client.put(&url).json(&patch).send().await {
                    Ok(r) if r.status() == 200 => done += 1,
                    _ => break,
                }
            }
            done
        });
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while temp_files() == 0 && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        drop(server); // SIGKILL
        saves += saving.await.expect("saver");
        cut_short += temp_files();
    }
    let server = start();
    let (_, settings) = server.get("/api/settings").await;
    assert_eq!(settings["notices"], json!([]), "{settings}");
    println!(
        "{saves} saves over {rounds} kills; {cut_short} kills landed inside a save (its \
         temporary file left behind), and the config file was whole each time; idle_timeout \
         now {}",
        settings["settings"]["idle_timeout"]
    );
    // A kill can land just after the rename; most land inside the save.
    assert!(
        cut_short * 2 >= rounds,
        "only {cut_short} of {rounds} kills inside a save"
    );
}

fn set_aside_files(config: &Path) -> Vec<PathBuf> {
    let dir = config.parent().expect("folder");
    let name = config
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    std::fs::read_dir(dir)
        .expect("folder")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(&format!("{name}.bak-")))
        })
        .collect()
}

/// A tiny tmpfs, unmounted on drop.
struct TinyFs {
    dir: tempfile::TempDir,
}

impl TinyFs {
    fn mount() -> Self {
        let dir = tempfile::tempdir().expect("tmp");
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("mount runs");
        assert!(
            status.success(),
            "cannot mount a tmpfs (the suite runs as root)"
        );
        Self { dir }
    }

    /// Remounts it read-only: every write fails, as on a locked-down or failing volume.
    fn make_read_only(&self) {
        let status = std::process::Command::new("mount")
            .args(["-o", "remount,ro"])
            .arg(self.dir.path())
            .status()
            .expect("mount runs");
        assert!(status.success(), "cannot remount read-only");
    }

    fn fill(&self) {
        // Fill it to the last byte.
        let _ = std::process::Command::new("dd")
            .args(["if=/dev/zero", "bs=4096"])
            .arg(format!("of={}", self.dir.path().join("filler").display()))
            .stderr(std::process::Stdio::null())
            .status();
    }
}

impl Drop for TinyFs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.dir.path())
            .status();
    }
}

/// A save onto a config folder that `break_it` made unwritable: 500 `settings_not_saved`, the
/// old file and the settings in force unchanged, no temporary file left behind.
async fn a_failed_save_changes_nothing(break_it: impl FnOnce(&TinyFs)) {
    let fs = TinyFs::mount();
    let config = fs.dir.path().join("config.toml");
    let server = Server::start_with(Options {
        config: Some("idle_timeout = \"20m\"\n".into()),
        config_path: Some(config.clone()),
        ..Options::default()
    });
    break_it(&fs);
    let (status, body) = put(&server, json!({"idle_timeout": "30m"})).await;
    assert_eq!(status, 500, "{body}");
    assert_eq!(body["error"]["code"], "settings_not_saved");
    let message = body["error"]["message"].as_str().expect("message");
    println!("{message}");
    assert!(message.contains("the file is unchanged"), "{message}");
    assert_eq!(
        std::fs::read_to_string(&config).expect("old file"),
        "idle_timeout = \"20m\"\n"
    );
    let (_, now) = server.get("/api/settings").await;
    assert_eq!(now["settings"]["idle_timeout"], "20m");
    let left: Vec<_> = std::fs::read_dir(fs.dir.path())
        .expect("dir")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    drop(server);
    tokio::time::sleep(Duration::from_millis(100)).await;
}

#[tokio::test]
async fn a_full_disk_fails_the_save_cleanly_and_keeps_the_old_file() {
    a_failed_save_changes_nothing(TinyFs::fill).await;
}

#[tokio::test]
async fn a_read_only_config_folder_fails_the_save_cleanly() {
    a_failed_save_changes_nothing(TinyFs::make_read_only).await;
}

//! Pulling a model from the Hub (a local stand-in with the Hub's layout, `hub.rs`): the real
//! test model arrives through a dropped connection, resumed with `Range`, checked against its
//! sha256, and answers a chat; a wrong sha256, a file too big for the disk and Cancel leave
//! nothing behind; `headroom pull` does the same from the command line; Delete removes only
//! Headroom's own models.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use crate::hub::{HubServer, Served};
use crate::support::{models_dir, Options, Server, SMOLLM2};

const REPO: &str = "bartowski/SmolLM2-135M-Instruct-GGUF";
const FILE: &str = "SmolLM2-135M-Instruct-Q4_1.gguf";
const PULLED: &str = "SmolLM2-135M-Instruct-Q4_1";

/// The test model's bytes and the sha256 its package ships beside it.
fn smollm2() -> Served {
    let path = models_dir().join(format!("{SMOLLM2}.gguf"));
    let bytes = std::fs::read(&path).expect("the test model");
    let sha256 = std::fs::read_to_string(models_dir().join(format!("{SMOLLM2}.gguf.sha256")))
        .expect("its sha256")
        .split_whitespace()
        .next()
        .expect("a sha256")
        .to_string();
    Served {
        bytes: Arc::new(bytes),
        sha256,
        ..Served::default()
    }
}

fn server_for(hub: &HubServer) -> Server {
    Server::start_with(Options {
        env: vec![("HF_ENDPOINT", hub.url.clone())],
        ..Options::default()
    })
}

/// Everything in the server's own model folder, hidden files included.
fn own_files(server: &Server) -> Vec<String> {
    let mut found = Vec::new();
    let mut folders = vec![server.data_dir().join("models")];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).into_iter().flatten().flatten() {
            if entry.path().is_dir() {
                folders.push(entry.path());
            } else {
                found.push(entry.path().display().to_string());
            }
        }
    }
    found
}

async fn pull(server: &Server, repo: &str, file: &str) -> (u16, Value) {
    server
        .post("/api/models/pull", &json!({"repo": repo, "file": file}))
        .await
}

#[tokio::test]
async fn a_pull_resumes_a_dropped_connection_checks_the_file_and_serves_it() {
    let hub = HubServer::start().await;
    let served = Served {
        drop_once_at: Some(30 << 20),
        ..smollm2()
    };
    let size = served.bytes.len() as u64;
    hub.add(REPO, FILE, served);
    let server = server_for(&hub);
    let events = server.events().await;

    let (status, body) = pull(&server, REPO, FILE).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["model"], PULLED, "{body}");
    // The same pull again while it runs is a conflict.
    let (status, body) = pull(&server, REPO, FILE).await;
    assert_eq!(status, 409, "{body}");

    let done = tokio::time::timeout(
        Duration::from_secs(120),
        events.wait_for("the pull's end", |e| {
            e["type"] == "pull" && e["model"] == PULLED && e["state"] != "downloading"
        }),
    )
    .await
    .expect("the pull ended");
    assert_eq!(done["state"], "done", "{done}");
    assert_eq!(done["received"], size, "{done}");
    let progress: Vec<u64> = events
        .all()
        .iter()
        .filter(|e| e["type"] == "pull" && e["state"] == "downloading")
        .filter_map(|e| e["received"].as_u64())
        .collect();
    assert!(progress.windows(2).all(|w| w[0] <= w[1]), "{progress:?}");
    assert!(progress.len() >= 2, "progress events: {progress:?}");
    let ranges = hub.ranges();
    println!(
        "storage requests: {ranges:?}; {} progress events",
        progress.len()
    );
    assert_eq!(ranges.first().map(String::as_str), Some(""), "{ranges:?}");
    let resumed: u64 = ranges
        .get(1)
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no resumed request: {ranges:?}"));
    assert!(resumed > 0 && resumed <= 30 << 20, "{ranges:?}");

    // In the model folder under its name, nothing partial left, byte for byte the model.
    let target = server.data_dir().join("models").join(FILE);
    assert_eq!(own_files(&server), [target.display().to_string()]);
    let original = std::fs::read(models_dir().join(format!("{SMOLLM2}.gguf"))).expect("model");
    assert!(
        std::fs::read(&target).expect("pulled") == original,
        "the pulled file differs"
    );

    // Listed and served.
    let (_, models) = server.get("/api/models").await;
    assert!(
        models["models"]
            .as_array()
            .is_some_and(|m| m.iter().any(|m| m["id"] == PULLED)),
        "{models}"
    );
    let (status, answer) = server
        .post(
            "/v1/chat/completions",
            &json!({"model": PULLED, "max_tokens": 4, "messages": [{"role": "user", "content": "Hi"}]}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    // Pulling what is already there is a conflict.
    let (status, body) = pull(&server, REPO, FILE).await;
    assert_eq!(status, 409, "{body}");

    // Delete: not while loaded; then gone. Never a model outside Headroom's own folder.
    let (status, body) = server
        .call(Method::DELETE, &format!("/api/models/{PULLED}"))
        .await;
    assert_eq!(status, 409, "{body}");
    let (status, body) = server
        .call(Method::DELETE, &format!("/api/memory/models/{PULLED}"))
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = server
        .call(Method::DELETE, &format!("/api/models/{PULLED}"))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["bytes"], size, "{body}");
    assert!(!target.exists());
    let (status, body) = server
        .call(Method::DELETE, &format!("/api/models/{SMOLLM2}"))
        .await;
    assert_eq!(status, 403, "{body}");
    assert!(models_dir().join(format!("{SMOLLM2}.gguf")).exists());
    let (status, body) = server
        .call(Method::DELETE, "/api/models/no-such-model")
        .await;
    assert_eq!(status, 404, "{body}");
}

#[tokio::test]
async fn a_bad_pull_leaves_nothing_behind_and_says_why() {
    let hub = HubServer::start().await;
    let model = smollm2();
    hub.add(
        "org/wrong-sum",
        "model.gguf",
        Served {
            sha256: "0".repeat(64),
            ..model.clone()
        },
    );
    hub.add(
        "org/huge",
        "model.gguf",
        Served {
            claimed_size: Some(1 << 50),
            ..model.clone()
        },
    );
    hub.add(
        "org/slow",
        "model.gguf",
        Served {
            pace: Some(Duration::from_millis(50)),
            ..model.clone()
        },
    );
    hub.add(
        "org/gated",
        "model.gguf",
        Served {
            gated: true,
            ..model
        },
    );
    let server = server_for(&hub);
    let events = server.events().await;
    let ended = |repo: &'static str| {
        let events = &events;
        async move {
            let _ = repo;
            tokio::time::timeout(
                Duration::from_secs(120),
                events.wait_for("the pull's end", |e| {
                    e["type"] == "pull" && e["repo"] == repo && e["state"] != "downloading"
                }),
            )
            .await
            .expect("the pull ended")
        }
    };

    // A wrong sha256: the whole file arrives, is checked, and is not kept.
    let (status, body) = pull(&server, "org/wrong-sum", "model.gguf").await;
    assert_eq!(status, 202, "{body}");
    let failed = ended("org/wrong-sum").await;
    assert_eq!(failed["state"], "failed", "{failed}");
    let error = failed["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("sha256") && error.contains("not kept"),
        "{error}"
    );
    println!("wrong sha256: {error}");

    // Bigger than the disk: refused before a byte is written, naming the bytes missing.
    let (status, body) = pull(&server, "org/huge", "model.gguf").await;
    assert_eq!(status, 202, "{body}");
    let failed = ended("org/huge").await;
    let error = failed["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("not enough disk space") && error.contains("more bytes"),
        "{error}"
    );
    println!("too big: {error}");

    // A gated repo without a token.
    let (_, _) = pull(&server, "org/gated", "model.gguf").await;
    let failed = ended("org/gated").await;
    let error = failed["error"].as_str().unwrap_or_default();
    assert!(error.contains("HF_TOKEN"), "{error}");

    // Cancel, partway: the partial file goes.
    let (status, body) = pull(&server, "org/slow", "model.gguf").await;
    assert_eq!(status, 202, "{body}");
    events
        .wait_for("some progress", |e| {
            e["type"] == "pull" && e["repo"] == "org/slow" && e["received"].as_u64() > Some(1 << 20)
        })
        .await;
    let (status, body) = server.call(Method::DELETE, "/api/models/pulls/model").await;
    assert_eq!(status, 200, "{body}");
    let cancelled = ended("org/slow").await;
    assert_eq!(cancelled["state"], "cancelled", "{cancelled}");
    let (status, body) = server.call(Method::DELETE, "/api/models/pulls/model").await;
    assert_eq!(status, 404, "{body}");

    assert_eq!(
        own_files(&server),
        Vec::<String>::new(),
        "something was left behind"
    );

    // Bad requests, in the API's shape.
    for (body, code) in [
        (
            json!({"repo": "not-a-repo", "file": "m.gguf"}),
            "invalid_pull",
        ),
        (
            json!({"repo": "org/repo", "file": "../m.gguf"}),
            "invalid_pull",
        ),
        (json!({"repo": "org/repo"}), "invalid_request"),
    ] {
        let (status, answer) = server.post("/api/models/pull", &body).await;
        assert_eq!(status, 400, "{body}: {answer}");
        let said = answer["error"]["code"].as_str().unwrap_or_default();
        assert!(
            said == code || code == "invalid_request",
            "{body}: {answer}"
        );
    }
    let (status, answer) = server
        .post_bytes("/api/models/pull", b"{not json".to_vec())
        .await;
    assert_eq!(status, 400, "{answer}");
}

// Two threads: the command blocks one while the stand-in Hub serves it on the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headroom_pull_on_the_command_line() {
    let hub = HubServer::start().await;
    hub.add(REPO, FILE, smollm2());
    let home = tempfile::tempdir().expect("tmp");
    let data = home.path().join("data");
    let run = |repo: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_headroom-server"))
            .args(["pull", repo, FILE, "--data-dir"])
            .arg(&data)
            .arg("--config")
            .arg(home.path().join("config.toml"))
            .env("HF_ENDPOINT", &hub.url)
            .output()
            .expect("headroom pull")
    };
    let out = run(REPO);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(&format!("as model '{PULLED}'")), "{stdout}");
    assert!(Path::new(&data.join("models").join(FILE)).is_file());
    println!("{}", stdout.trim());
    let out = run("not-a-repo");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("is not a Hugging Face repo"), "{stderr}");
}

//! Pulling a model from the Hub (a local stand-in with the Hub's layout, `hub.rs`): the real
//! test model arrives through a dropped connection, resumed with `Range`, checked against its
//! sha256, and answers a chat; the MLX test model arrives as a repo, whole, and answers on the
//! MLX engine; a wrong sha256, a file too big for the disk, a disk that fills up during the
//! download, and Cancel leave nothing behind; a gated repo opens with the token set in
//! Preferences, which never reaches the storage; `headroom pull` does the same from the
//! command line; Delete removes only Headroom's own models.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use crate::hub::{HubServer, Served};
use crate::support::{file_size, models_dir, python_check, EventLog, Options, Server, SMOLLM2};

const REPO: &str = "bartowski/SmolLM2-135M-Instruct-GGUF";
const FILE: &str = "SmolLM2-135M-Instruct-Q4_1.gguf";
const PULLED: &str = "SmolLM2-135M-Instruct-Q4_1";
const MLX_FOLDER: &str = "SmolLM2-135M-Instruct-mlx";

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

/// Everything in the server's own model folder, hidden files included, but the record of
/// where pulled models came from.
fn own_files(server: &Server) -> Vec<String> {
    let mut found = Vec::new();
    let mut folders = vec![server.data_dir().join("models")];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).into_iter().flatten().flatten() {
            if entry.path().is_dir() {
                folders.push(entry.path());
            } else if entry.file_name() != ".pulled.json" {
                found.push(entry.path().display().to_string());
            }
        }
    }
    found
}

/// The first `pull` event of `repo` in a state `state` accepts, within two minutes.
async fn pull_event(events: &EventLog, repo: &str, state: impl Fn(&str) -> bool) -> Value {
    tokio::time::timeout(
        Duration::from_secs(120),
        events.wait_for("a pull's event", |e| {
            e["type"] == "pull" && e["repo"] == repo && e["state"].as_str().is_some_and(&state)
        }),
    )
    .await
    .expect("the pull ended")
}

/// The first end of a pull of `repo`: done, failed or cancelled.
async fn pull_end(events: &EventLog, repo: &str) -> Value {
    pull_event(events, repo, |state| state != "downloading").await
}

/// Stops model `id` and deletes it from the model folder; the delete's answer.
async fn stop_and_delete(server: &Server, id: &str) -> Value {
    let (status, body) = server
        .call(Method::DELETE, &format!("/api/memory/models/{id}"))
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = server
        .call(Method::DELETE, &format!("/api/models/{id}"))
        .await;
    assert_eq!(status, 200, "{body}");
    body
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

    let done = pull_end(&events, REPO).await;
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
    let body = stop_and_delete(&server, PULLED).await;
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
        "org/slow-2",
        "model-2.gguf",
        Served {
            pace: Some(Duration::from_millis(50)),
            ..model.clone()
        },
    );
    hub.add(
        "org/slow-3",
        "model-3.gguf",
        Served {
            pace: Some(Duration::from_millis(50)),
            ..model.clone()
        },
    );
    hub.add(
        "org/slow-4",
        "model-4.gguf",
        Served {
            pace: Some(Duration::from_millis(50)),
            ..model.clone()
        },
    );
    hub.add("org/two-ggufs", "m-Q4_1.gguf", model.clone());
    hub.add("org/two-ggufs", "m-Q8_0.gguf", model);
    let server = server_for(&hub);
    let events = server.events().await;

    // A wrong sha256: the whole file arrives, is checked, and is not kept.
    let (status, body) = pull(&server, "org/wrong-sum", "model.gguf").await;
    assert_eq!(status, 202, "{body}");
    let failed = pull_end(&events, "org/wrong-sum").await;
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
    let failed = pull_end(&events, "org/huge").await;
    let error = failed["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("not enough disk space") && error.contains("more bytes"),
        "{error}"
    );
    println!("too big: {error}");

    // Cancel, partway: the partial file goes. Three pulls run at most: a fourth is refused.
    let (status, body) = pull(&server, "org/slow", "model.gguf").await;
    assert_eq!(status, 202, "{body}");
    for (repo, file) in [
        ("org/slow-2", "model-2.gguf"),
        ("org/slow-3", "model-3.gguf"),
    ] {
        let (status, body) = pull(&server, repo, file).await;
        assert_eq!(status, 202, "{body}");
    }
    let (status, body) = pull(&server, "org/slow-4", "model-4.gguf").await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["code"], "too_many_pulls", "{body}");
    for (repo, model) in [("org/slow-2", "model-2"), ("org/slow-3", "model-3")] {
        let (status, body) = server
            .call(Method::DELETE, &format!("/api/models/pulls/{model}"))
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(pull_end(&events, repo).await["state"], "cancelled");
    }
    events
        .wait_for("some progress", |e| {
            e["type"] == "pull" && e["repo"] == "org/slow" && e["received"].as_u64() > Some(1 << 20)
        })
        .await;
    let (status, body) = server.call(Method::DELETE, "/api/models/pulls/model").await;
    assert_eq!(status, 200, "{body}");
    let cancelled = pull_end(&events, "org/slow").await;
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
        (json!({"repo": "org/repo", "file": 7}), "invalid_request"),
        // A repo of GGUF files named without the file.
        (json!({"repo": "org/two-ggufs"}), "invalid_pull"),
    ] {
        let (status, answer) = server.post("/api/models/pull", &body).await;
        assert_eq!(status, 400, "{body}: {answer}");
        let said = answer["error"]["code"].as_str().unwrap_or_default();
        assert!(
            said == code || code == "invalid_request",
            "{body}: {answer}"
        );
    }
    let (status, held) = server.get("/api/hub/org/two-ggufs").await;
    assert_eq!(status, 200, "{held}");
    assert_eq!(held["kind"], "gguf", "{held}");
    assert_eq!(held["files"][0]["file"], "m-Q4_1.gguf", "{held}");
    assert!(
        held["files"][0]["size"].as_u64() > Some(90_000_000),
        "{held}"
    );
    // A repo the Hub does not have is 404, as the Hub says, on both routes.
    let (status, held) = server.get("/api/hub/org/no-such-repo").await;
    assert_eq!(status, 404, "{held}");
    assert_eq!(held["error"]["code"], "repo_not_available", "{held}");
    let (status, answer) = server
        .post("/api/models/pull", &json!({"repo": "org/no-such-repo"}))
        .await;
    assert_eq!(status, 404, "{answer}");
    let (_, answer) = server
        .post("/api/models/pull", &json!({"repo": "org/two-ggufs"}))
        .await;
    let message = answer["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("m-Q4_1.gguf, m-Q8_0.gguf"),
        "the choices are named: {answer}"
    );
    println!("a GGUF repo without a file: {message}");
    let (status, answer) = server
        .post_bytes("/api/models/pull", b"{not json".to_vec())
        .await;
    assert_eq!(status, 400, "{answer}");
}

/// The MLX test model's folder, served as an mlx-community repo with two files a model does
/// not need (its README and a hidden note).
fn mlx_repo(hub: &HubServer, repo: &str, token: Option<&str>) -> Vec<(String, Vec<u8>)> {
    let folder = models_dir().join(MLX_FOLDER);
    let mut model_files = Vec::new();
    for entry in std::fs::read_dir(&folder).expect("the MLX test model") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .expect("name")
            .to_string();
        let bytes = std::fs::read(&path).expect("read");
        let small = bytes.len() < 100_000;
        if !name.starts_with('.') {
            model_files.push((name.clone(), bytes.clone()));
        }
        hub.add(
            repo,
            &name,
            Served {
                small,
                token: token.map(str::to_string),
                ..Served::of(bytes)
            },
        );
    }
    hub.add(
        repo,
        "README.md",
        Served {
            small: true,
            token: token.map(str::to_string),
            ..Served::of(b"# SmolLM2 in MLX".to_vec())
        },
    );
    model_files.sort();
    model_files
}

#[tokio::test]
async fn an_mlx_repo_is_pulled_whole_and_answers_on_the_mlx_engine() {
    const MLX_REPO: &str = "mlx-community/SmolLM2-135M-Instruct";
    const MLX_MODEL: &str = "SmolLM2-135M-Instruct";
    let hub = HubServer::start().await;
    let wanted = mlx_repo(&hub, MLX_REPO, None);
    let server = server_for(&hub);
    let events = server.events().await;

    // What the repo holds, as the window's form asks before a pull.
    let (status, held) = server.get(&format!("/api/hub/{MLX_REPO}")).await;
    assert_eq!(status, 200, "{held}");
    assert_eq!(held["kind"], "mlx", "{held}");
    assert_eq!(
        held["files"].as_array().map(Vec::len),
        Some(wanted.len()),
        "{held}"
    );
    let (status, body) = server
        .post("/api/models/pull", &json!({"repo": MLX_REPO}))
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["model"], MLX_MODEL, "{body}");
    assert!(body["file"].is_null(), "{body}");
    assert_eq!(body["files"], wanted.len(), "{body}");
    let done = pull_end(&events, MLX_REPO).await;
    assert_eq!(done["state"], "done", "{done}");
    let total: usize = wanted.iter().map(|(_, b)| b.len()).sum();
    assert_eq!(done["received"], total, "{done}");
    assert_eq!(done["total"], total, "{done}");

    // The model's files, byte for byte, and nothing else: no README, no partial folder.
    let folder = server.data_dir().join("models").join(MLX_MODEL);
    let mut pulled: Vec<String> = own_files(&server);
    pulled.sort();
    let expected: Vec<String> = wanted
        .iter()
        .map(|(name, _)| folder.join(name).display().to_string())
        .collect();
    assert_eq!(pulled, expected);
    for (name, bytes) in &wanted {
        assert!(
            std::fs::read(folder.join(name)).expect("pulled") == *bytes,
            "{name} differs"
        );
    }
    println!("pulled {MLX_REPO}: {} files, {total} bytes", wanted.len());

    let (_, models) = server.get("/api/models").await;
    let entry = models["models"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["id"] == MLX_MODEL).cloned())
        .unwrap_or_else(|| panic!("not listed: {models}"));
    assert_eq!(entry["engine"], "MLX", "{entry}");
    assert_eq!(entry["deletable"], true, "{entry}");
    let (status, answer) = server
        .post(
            "/v1/chat/completions",
            &json!({"model": MLX_MODEL, "max_tokens": 4, "messages": [{"role": "user", "content": "Hi"}]}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    println!("answer: {}", answer["choices"][0]["message"]["content"]);
    let (status, body) = server
        .post("/api/models/pull", &json!({"repo": MLX_REPO}))
        .await;
    assert_eq!(status, 409, "{body}");

    // Deleted as a folder, once stopped.
    stop_and_delete(&server, MLX_MODEL).await;
    assert!(!folder.exists());
}

#[tokio::test]
async fn a_gated_repo_opens_with_the_token_set_in_preferences() {
    const TOKEN: &str = "hf_testTokenForAGatedRepo0123";
    let hub = HubServer::start().await;
    hub.add(
        "org/gated",
        "model.gguf",
        Served {
            token: Some(TOKEN.into()),
            ..smollm2()
        },
    );
    let server = server_for(&hub);
    let events = server.events().await;

    let (status, body) = pull(&server, "org/gated", "model.gguf").await;
    assert_eq!(status, 202, "{body}");
    let failed = pull_end(&events, "org/gated").await;
    let error = failed["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("Preferences") && error.contains("HF_TOKEN"),
        "{error}"
    );

    let (status, body) = server
        .send_json(Method::PUT, "/api/settings", &json!({"hub_token": TOKEN}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["settings"]["hub_token"], "(hidden)", "{body}");
    let (_, body) = server.get("/api/settings").await;
    assert_eq!(body["settings"]["hub_token"], "(hidden)", "{body}");
    assert!(!body.to_string().contains(TOKEN));
    let config = body["path"].as_str().expect("the config file").to_string();
    let saved = std::fs::read_to_string(&config).expect("config");
    assert!(saved.contains(TOKEN), "kept in the config file: {saved}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&config)
        .expect("meta")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "readable by its owner only");
    // Sending the settings back as shown keeps the token.
    let (status, body) = server
        .send_json(
            Method::PUT,
            "/api/settings",
            &json!({"hub_token": "(hidden)"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = server
        .send_json(
            Method::PUT,
            "/api/settings",
            &json!({"hub_token": "has spaces in it"}),
        )
        .await;
    assert_eq!(status, 422, "{body}");

    let started = std::time::Instant::now();
    let (status, body) = pull(&server, "org/gated", "model.gguf").await;
    assert_eq!(status, 202, "{body}");
    // This pull's end: the second event that ends a pull of this repo.
    let done = pull_event(&events, "org/gated", |state| state == "done").await;
    assert_eq!(done["state"], "done", "{done}");
    // A gated MLX repo: its listing and its small files come from the Hub itself, with the
    // token; its weights from the storage, without.
    mlx_repo(&hub, "org/gated-mlx", Some(TOKEN));
    let (status, body) = server
        .post("/api/models/pull", &json!({"repo": "org/gated-mlx"}))
        .await;
    assert_eq!(status, 202, "{body}");
    let done = pull_end(&events, "org/gated-mlx").await;
    assert_eq!(done["state"], "done", "{done}");
    assert_eq!(hub.storage_tokens(), 0, "the token went to the storage");
    println!(
        "gated repo pulled with the Preferences token in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

#[tokio::test]
async fn a_disk_that_fills_up_during_a_pull_ends_it_and_keeps_nothing() {
    let hub = HubServer::start().await;
    hub.add(
        REPO,
        FILE,
        Served {
            // 256 KiB every 10 ms: about 10 s for the model.
            pace: Some(Duration::from_millis(10)),
            ..smollm2()
        },
    );
    // Room for the model and the 512 MiB a pull leaves free, and little more.
    let server = Server::start_with(Options {
        env: vec![("HF_ENDPOINT", hub.url.clone())],
        tmpfs: Some(640 << 20),
        ..Options::default()
    });
    let events = server.events().await;
    let data = server.as_seen(&server.data_dir());

    let (status, body) = pull(&server, REPO, FILE).await;
    assert_eq!(status, 202, "{body}");
    events
        .wait_for("20 MB", |e| {
            e["type"] == "pull" && e["received"].as_u64() > Some(20 << 20)
        })
        .await;
    // Another program fills the disk.
    let filler = data.join("filler");
    let mut written = 0u64;
    {
        use std::io::Write;
        let mut file = std::fs::File::create(&filler).expect("filler");
        let block = vec![7u8; 1 << 20];
        while file.write_all(&block).is_ok() {
            written += block.len() as u64;
        }
    }
    println!("filled the disk with {} MB", written >> 20);
    let failed = pull_end(&events, REPO).await;
    assert_eq!(failed["state"], "failed", "{failed}");
    let error = failed["error"].as_str().unwrap_or_default();
    assert!(error.contains("disk filled up"), "{error}");
    println!("full disk: {error}");
    // Nothing staged is kept, nothing half is among the models, and the server still serves.
    let models = data.join("models");
    let mut left = Vec::new();
    let mut folders = vec![models.clone()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).expect("a folder").flatten() {
            if entry.path().is_dir() {
                folders.push(entry.path());
            } else {
                left.push(entry.path());
            }
        }
    }
    assert!(left.is_empty(), "left behind: {left:?}");
    let (status, _) = server.get("/api/status").await;
    assert_eq!(status, 200);

    // With the space back, the same pull succeeds.
    std::fs::remove_file(&filler).expect("remove the filler");
    let (status, body) = pull(&server, REPO, FILE).await;
    assert_eq!(status, 202, "{body}");
    let done = pull_event(&events, REPO, |state| state == "done").await;
    assert_eq!(
        done["received"],
        file_size(&models_dir().join(format!("{SMOLLM2}.gguf"))),
        "{done}"
    );
    assert!(models.join(FILE).is_file());
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

// Two threads: the Python client blocks one while the stand-in Hub serves on the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ollama_client_pulls_an_hf_co_name_and_chats_with_it() {
    const NAME: &str = "hf.co/bartowski/SmolLM2-135M-Instruct-GGUF:Q4_1";
    let hub = HubServer::start().await;
    let model = smollm2();
    hub.add(
        REPO,
        FILE,
        Served {
            pace: Some(Duration::from_millis(10)),
            ..model.clone()
        },
    );
    hub.add(REPO, "SmolLM2-135M-Instruct-Q8_0.gguf", model);
    let server = server_for(&hub);
    let measured = tokio::task::block_in_place(|| {
        python_check(
            &server,
            "ollama_client.py",
            &server.url(""),
            NAME,
            "pull",
            &[],
        )
    });
    assert!(measured["progress_lines"].as_u64() > Some(2), "{measured}");
    assert_eq!(measured["refused"]["llama3.2:3b"][0], 400, "{measured}");
    assert_eq!(
        measured["refused"]["hf.co/bartowski/SmolLM2-135M-Instruct-GGUF:Q9_9"][0], 404,
        "{measured}"
    );
    // The tag chose the Q4_1 file, and the record keeps the name it was pulled by.
    let folder = server.data_dir().join("models");
    assert!(folder.join(FILE).is_file());
    assert!(!folder.join("SmolLM2-135M-Instruct-Q8_0.gguf").exists());
    let record: Value =
        serde_json::from_slice(&std::fs::read(folder.join(".pulled.json")).expect("the record"))
            .expect("JSON");
    assert_eq!(record[PULLED]["ollama_name"], NAME, "{record}");
    assert_eq!(record[PULLED]["repo"], REPO, "{record}");
    // Deleting the model forgets its name.
    stop_and_delete(&server, PULLED).await;
    let record: Value =
        serde_json::from_slice(&std::fs::read(folder.join(".pulled.json")).expect("the record"))
            .expect("JSON");
    assert!(record.get(PULLED).is_none(), "{record}");
}

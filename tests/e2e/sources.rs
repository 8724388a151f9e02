//! The models other apps keep, served where they lie: a home folder with the Hugging Face
//! cache, LM Studio's folder, Ollama's store and llama.cpp's cache in each app's own layout,
//! the real test models as their files. Every model is listed under its source's id, answers a
//! chat, and loads by its id in a URL; the Ollama dialect knows Ollama's models by their Ollama
//! names; nothing is written into the stores; an id that would leave a store finds nothing.

use std::path::{Path, PathBuf};

use reqwest::Method;
use serde_json::{json, Value};

use crate::support::{models_dir, Options, Server, SMOLLM2};

const MLX_FOLDER: &str = "SmolLM2-135M-Instruct-mlx";

/// The test model placed at `at`: a hard link where the filesystem allows, else a copy (each
/// store must hold its own file: a link out of it is not followed).
fn place(model: &Path, at: &Path) {
    std::fs::create_dir_all(at.parent().expect("parent")).expect("mkdir");
    if std::fs::hard_link(model, at).is_err() {
        std::fs::copy(model, at).expect("copy the model");
    }
}

#[cfg(unix)]
fn link(target: &str, at: &Path) {
    std::fs::create_dir_all(at.parent().expect("parent")).expect("mkdir");
    std::os::unix::fs::symlink(target, at).expect("symlink");
}

/// The four stores under `home`, as each app leaves them.
#[cfg(unix)]
fn stores(home: &Path) {
    let gguf = models_dir().join(format!("{SMOLLM2}.gguf"));
    // Hugging Face: a GGUF repo and an MLX repo, files linked from snapshots into blobs.
    let hub = home.join(".cache/huggingface/hub");
    let repo = hub.join("models--bartowski--SmolLM2-135M-Instruct-GGUF");
    std::fs::create_dir_all(repo.join("refs")).expect("mkdir");
    std::fs::write(repo.join("refs/main"), "1a2b3c\n").expect("write");
    place(&gguf, &repo.join("blobs/9f1e"));
    link(
        "../../blobs/9f1e",
        &repo.join("snapshots/1a2b3c/SmolLM2-135M-Instruct-Q4_1.gguf"),
    );
    let mlx = hub.join("models--mlx-community--SmolLM2-135M-Instruct-4bit");
    std::fs::create_dir_all(mlx.join("refs")).expect("mkdir");
    std::fs::write(mlx.join("refs/main"), "4d5e6f").expect("write");
    for entry in std::fs::read_dir(models_dir().join(MLX_FOLDER)).expect("the MLX test folder") {
        let file = entry.expect("entry").path();
        let name = file
            .file_name()
            .and_then(|n| n.to_str())
            .expect("name")
            .to_string();
        place(&file, &mlx.join(format!("blobs/{name}.blob")));
        link(
            &format!("../../blobs/{name}.blob"),
            &mlx.join(format!("snapshots/4d5e6f/{name}")),
        );
    }
    // LM Studio.
    place(
        &gguf,
        &home.join(".lmstudio/models/lmstudio-community/SmolLM2-135M-Instruct-GGUF/SmolLM2-135M-Instruct-Q4_1.gguf"),
    );
    // Ollama: a manifest naming the model layer's blob by its digest.
    let ollama = home.join(".ollama/models");
    let digest = "5f".repeat(32);
    place(&gguf, &ollama.join(format!("blobs/sha256-{digest}")));
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                   "digest": format!("sha256:{}", "0c".repeat(32)), "size": 485},
        "layers": [{"mediaType": "application/vnd.ollama.image.model",
                    "digest": format!("sha256:{digest}"), "size": 1}],
    });
    let tag = ollama.join("manifests/registry.ollama.ai/library/smollm2/135m");
    std::fs::create_dir_all(tag.parent().expect("parent")).expect("mkdir");
    std::fs::write(&tag, manifest.to_string()).expect("manifest");
    // llama.cpp's cache, with an ETag sidecar and a download in progress.
    let llama = home.join(".cache/llama.cpp");
    place(
        &gguf,
        &llama.join("bartowski_SmolLM2-135M-Instruct-GGUF_SmolLM2-135M-Instruct-Q4_1.gguf"),
    );
    std::fs::write(
        llama.join("bartowski_SmolLM2-135M-Instruct-GGUF_SmolLM2-135M-Instruct-Q4_1.gguf.json"),
        "{}",
    )
    .expect("write");
    std::fs::write(llama.join("next.gguf.downloadInProgress"), "partial").expect("write");
}

/// Every file under `dir` with its size and modification time, to show nothing changed.
fn snapshot(dir: &Path) -> Vec<(PathBuf, u64, std::time::SystemTime)> {
    let mut found = Vec::new();
    let mut folders = vec![dir.to_path_buf()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).expect("read_dir").flatten() {
            let meta = std::fs::symlink_metadata(entry.path()).expect("meta");
            if meta.is_dir() {
                folders.push(entry.path());
            } else {
                found.push((entry.path(), meta.len(), meta.modified().expect("mtime")));
            }
        }
    }
    found.sort();
    found
}

fn chat(model: &str) -> Value {
    json!({
        "model": model,
        "messages": [{"role": "user", "content": "Say hello."}],
        "max_tokens": 4,
        "temperature": 0,
    })
}

#[cfg(unix)]
#[tokio::test]
async fn models_of_other_apps_are_listed_and_served_where_they_lie() {
    let home = tempfile::tempdir().expect("tmp");
    stores(home.path());
    let before = snapshot(home.path());
    let server = Server::start_with(Options {
        env: vec![
            ("HOME", home.path().display().to_string()),
            (
                "HEADROOM_SOURCES",
                "huggingface,lm_studio,ollama,llama_cpp".into(),
            ),
            (
                "XDG_CACHE_HOME",
                home.path().join(".cache").display().to_string(),
            ),
        ],
        ..Options::default()
    });

    let expected = [
        ("hf:bartowski/SmolLM2-135M-Instruct-GGUF/SmolLM2-135M-Instruct-Q4_1.gguf", "huggingface", "llama.cpp"),
        ("hf:mlx-community/SmolLM2-135M-Instruct-4bit", "huggingface", "MLX"),
        ("lmstudio:lmstudio-community/SmolLM2-135M-Instruct-GGUF/SmolLM2-135M-Instruct-Q4_1.gguf", "lm_studio", "llama.cpp"),
        ("ollama:smollm2:135m", "ollama", "llama.cpp"),
        ("llamacpp:bartowski_SmolLM2-135M-Instruct-GGUF_SmolLM2-135M-Instruct-Q4_1", "llama_cpp", "llama.cpp"),
    ];
    let (status, listed) = server.get("/api/models").await;
    assert_eq!(status, 200, "{listed}");
    let models = listed["models"].as_array().expect("models");
    for (id, source, engine) in expected {
        let entry = models
            .iter()
            .find(|m| m["id"] == id)
            .unwrap_or_else(|| panic!("{id} is not listed: {listed}"));
        assert_eq!(entry["source"], source, "{entry}");
        assert_eq!(entry["engine"], engine, "{entry}");
        assert!(entry["estimate"].is_object(), "{entry}");
    }
    // The test folder's own models are still there, without a source; the partial download
    // is not a model.
    assert!(models
        .iter()
        .any(|m| m["id"] == SMOLLM2 && m["source"].is_null()));
    assert!(!models
        .iter()
        .any(|m| m["id"].as_str().is_some_and(|i| i.contains("next"))));
    let (_, openai) = server.get("/v1/models").await;
    let owner = |id: &str| {
        openai["data"]
            .as_array()
            .and_then(|d| d.iter().find(|m| m["id"] == id))
            .map(|m| m["owned_by"].clone())
    };
    assert_eq!(owner("ollama:smollm2:135m"), Some(json!("ollama")));
    assert_eq!(owner(SMOLLM2), Some(json!("headroom")));

    // Each answers a chat from where it lies.
    for (id, _, _) in expected {
        let (status, body) = server.post("/v1/chat/completions", &chat(id)).await;
        assert_eq!(status, 200, "{id}: {body}");
        let text = body["choices"][0]["message"]["content"]
            .as_str()
            .unwrap_or_default();
        assert!(!text.is_empty(), "{id}: {body}");
        println!("{id}: {text:?}");
    }
    let (_, status) = server.get("/api/memory/status").await;
    let paths: Vec<String> = status["models"]
        .as_array()
        .map(|m| {
            m.iter()
                .filter_map(|m| m["id"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    println!("loaded: {paths:?}");

    // By id in a URL (its slashes encoded, as the UI sends them).
    let id = "hf:bartowski/SmolLM2-135M-Instruct-GGUF/SmolLM2-135M-Instruct-Q4_1.gguf";
    let encoded = id.replace('/', "%2F").replace(':', "%3A");
    let (status, body) = server
        .call(Method::DELETE, &format!("/api/memory/models/{encoded}"))
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = server
        .call(Method::POST, &format!("/api/memory/models/{encoded}/load"))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["id"], id, "{body}");

    // The Ollama dialect knows Ollama's models by their Ollama names.
    let (status, tags) = server.get("/api/tags").await;
    assert_eq!(status, 200, "{tags}");
    assert!(
        tags["models"]
            .as_array()
            .is_some_and(|m| m.iter().any(|m| m["name"] == "smollm2:135m")),
        "{tags}"
    );
    let (status, body) = server
        .post(
            "/api/chat",
            &json!({"model": "smollm2:135m", "stream": false, "options": {"num_predict": 4},
                    "messages": [{"role": "user", "content": "Say hello."}]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["message"]["content"]
            .as_str()
            .is_some_and(|t| !t.is_empty()),
        "{body}"
    );

    // Ids that would leave a store, or name nothing, find nothing.
    for id in [
        "hf:../../etc/passwd",
        "hf:bartowski/../../x.gguf",
        "ollama:nothing:here",
    ] {
        let (status, body) = server.post("/v1/chat/completions", &chat(id)).await;
        assert!(status == 404 || status == 400, "{id}: {status} {body}");
    }

    drop(server);
    assert_eq!(snapshot(home.path()), before, "a store was written to");
}

/// A model another app adds to its store is heard at once: the stores' scan is dropped, a
/// `models_changed` event goes out, and the lists show it; removed, it goes the same way.
#[cfg(unix)]
#[tokio::test]
async fn a_model_added_to_a_store_is_announced_and_listed_at_once() {
    let home = tempfile::tempdir().expect("home");
    let cache = home.path().join(".cache/llama.cpp");
    std::fs::create_dir_all(&cache).expect("mkdir");
    let server = Server::start_with(Options {
        env: vec![
            ("HOME", home.path().display().to_string()),
            (
                "XDG_CACHE_HOME",
                home.path().join(".cache").display().to_string(),
            ),
            ("HEADROOM_SOURCES", "llama_cpp".into()),
        ],
        ..Options::default()
    });
    let events = server.events().await;
    let id = format!("llamacpp:org_repo_{SMOLLM2}");
    let listed = |models: &Value| {
        models["models"]
            .as_array()
            .is_some_and(|m| m.iter().any(|m| m["id"] == id.as_str()))
    };
    // A scan now, so the next list would be served from it for 2 s without the watch.
    let (_, models) = server.get("/api/models").await;
    assert!(!listed(&models), "{models}");

    // As llama.cpp downloads: a temporary name, renamed when whole.
    let started = std::time::Instant::now();
    let partial = cache.join(format!("org_repo_{SMOLLM2}.gguf.downloadInProgress"));
    place(&models_dir().join(format!("{SMOLLM2}.gguf")), &partial);
    std::fs::rename(&partial, cache.join(format!("org_repo_{SMOLLM2}.gguf"))).expect("rename");
    let changed = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        events.wait_for("models_changed", |e| e["type"] == "models_changed"),
    )
    .await
    .expect("the change was announced");
    let heard = started.elapsed();
    let (_, models) = server.get("/api/models").await;
    assert!(listed(&models), "not listed after {changed}: {models}");
    let folder = cache.canonicalize().expect("real");
    assert_eq!(changed["folders"], json!([folder]), "{changed}");
    println!(
        "a model added to llama.cpp's cache: announced and listed {} ms later",
        heard.as_millis()
    );

    let announced = || {
        events
            .all()
            .iter()
            .filter(|e| e["type"] == "models_changed")
            .count()
    };
    let before = announced();
    let started = std::time::Instant::now();
    std::fs::remove_file(cache.join(format!("org_repo_{SMOLLM2}.gguf"))).expect("remove");
    while announced() == before {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "the removal was not announced"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let (_, models) = server.get("/api/models").await;
    assert!(!listed(&models), "still listed: {models}");
    println!(
        "removed: announced and gone from the list {} ms later",
        started.elapsed().as_millis()
    );
}

//! Fixture trees in each app's layout, built here: what is listed, under which id, and what is
//! not (partial downloads, links out of a store, other files).

use std::path::{Path, PathBuf};

use super::*;

fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, bytes).expect("write");
}

#[cfg(unix)]
fn link(target: &str, at: &Path) {
    std::fs::create_dir_all(at.parent().expect("parent")).expect("mkdir");
    std::os::unix::fs::symlink(target, at).expect("symlink");
}

fn ids(found: &[Found]) -> Vec<(&str, u64)> {
    found.iter().map(|f| (f.id.as_str(), f.size)).collect()
}

/// An MLX folder's files: its config and weights.
fn mlx_files(folder: &Path) {
    write(&folder.join("config.json"), b"{}");
    write(&folder.join("model.safetensors"), &[0; 40]);
    write(&folder.join("tokenizer.json"), b"{}");
}

#[cfg(unix)]
#[test]
fn hugging_face_cache() {
    let dir = tempfile::tempdir().expect("tmp");
    let hub = dir.path();
    // A GGUF repo: two quantizations, one in a folder and split, and a download in progress.
    let repo = hub.join("models--bartowski--SmolLM2-GGUF");
    write(&repo.join("refs/main"), b"abc123\n");
    write(&repo.join("blobs/e1"), &[0; 10]);
    write(&repo.join("blobs/e2"), &[0; 20]);
    write(&repo.join("blobs/e3"), &[0; 30]);
    write(&repo.join("blobs/e4.incomplete"), &[0; 5]);
    link(
        "../../blobs/e1",
        &repo.join("snapshots/abc123/SmolLM2-Q4_1.gguf"),
    );
    link(
        "../../../blobs/e2",
        &repo.join("snapshots/abc123/Q8_0/SmolLM2-Q8_0-00001-of-00002.gguf"),
    );
    link(
        "../../../blobs/e3",
        &repo.join("snapshots/abc123/Q8_0/SmolLM2-Q8_0-00002-of-00002.gguf"),
    );
    link("../../blobs/e1", &repo.join("snapshots/old999/Stale.gguf"));
    // An MLX repo, without refs/main: its newest snapshot.
    let mlx = hub.join("models--mlx-community--SmolLM2-4bit");
    for (name, blob) in [
        ("config.json", "c"),
        ("model.safetensors", "w"),
        ("tokenizer.json", "t"),
    ] {
        write(&mlx.join(format!("blobs/{blob}")), &[0; 8]);
        link(
            &format!("../../blobs/{blob}"),
            &mlx.join(format!("snapshots/r1/{name}")),
        );
    }
    // Not models: a dataset, the lock folder, a link out of the cache.
    write(&hub.join("datasets--squad/snapshots/r/data.gguf"), &[0; 4]);
    write(&hub.join(".locks/x"), b"");
    let outside = tempfile::tempdir().expect("tmp");
    write(&outside.path().join("secret.gguf"), &[0; 4]);
    let escape = hub.join("models--evil--repo/snapshots/r/secret.gguf");
    std::fs::create_dir_all(escape.parent().expect("parent")).expect("mkdir");
    std::os::unix::fs::symlink(outside.path().join("secret.gguf"), &escape).expect("symlink");

    let found = hf_cache::scan(hub);
    assert_eq!(
        ids(&found),
        [
            ("hf:bartowski/SmolLM2-GGUF/SmolLM2-Q4_1.gguf", 10),
            ("hf:bartowski/SmolLM2-GGUF/Q8_0/SmolLM2-Q8_0.gguf", 50),
            ("hf:mlx-community/SmolLM2-4bit", 8),
        ]
    );
    // Resolved to the blob, inside the cache.
    assert_eq!(
        found[0].path,
        repo.canonicalize().expect("real").join("blobs/e1")
    );
    assert!(found.iter().all(|f| is_source_id(&f.id)), "{found:?}");
}

#[test]
fn lm_studio() {
    let dir = tempfile::tempdir().expect("tmp");
    let models = dir.path();
    write(
        &models.join("lmstudio-community/Qwen3-GGUF/Qwen3-Q4_K_M.gguf"),
        &[0; 12],
    );
    write(
        &models.join("lmstudio-community/Qwen3-GGUF/mmproj-Qwen3-f16.gguf"),
        &[0; 3],
    );
    write(&models.join("lmstudio-community/Qwen3-GGUF/notes.txt"), b"");
    mlx_files(&models.join("mlx-community/SmolLM2-4bit"));
    write(&models.join(".internal/x/y.gguf"), &[0; 3]);
    assert_eq!(
        ids(&lm_studio::scan(models)),
        [
            (
                "lmstudio:lmstudio-community/Qwen3-GGUF/Qwen3-Q4_K_M.gguf",
                12
            ),
            ("lmstudio:mlx-community/SmolLM2-4bit", 40),
        ]
    );
}

#[test]
fn ollama_store() {
    let dir = tempfile::tempdir().expect("tmp");
    let models = dir.path();
    let hex = |c: char| c.to_string().repeat(64);
    let manifest = |model_hex: &str| {
        format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"sha256:{c}","size":1}},
               "layers":[{{"mediaType":"application/vnd.ollama.image.model","digest":"sha256:{model_hex}","size":16}},
                         {{"mediaType":"application/vnd.ollama.image.template","digest":"sha256:{t}","size":2}}]}}"#,
            c = hex('c'),
            t = hex('d'),
        )
    };
    write(&models.join(format!("blobs/sha256-{}", hex('a'))), &[0; 16]);
    write(&models.join(format!("blobs/sha256-{}", hex('b'))), &[0; 24]);
    write(
        &models.join("manifests/registry.ollama.ai/library/smollm2/135m"),
        manifest(&hex('a')).as_bytes(),
    );
    write(
        &models.join("manifests/hf.co/bartowski/SmolLM2-GGUF/Q4_K_M"),
        manifest(&hex('b')).as_bytes(),
    );
    // A manifest whose blob is not there (a pull cut short), and one that is not JSON.
    write(
        &models.join("manifests/registry.ollama.ai/library/gone/latest"),
        manifest(&hex('e')).as_bytes(),
    );
    write(
        &models.join("manifests/registry.ollama.ai/library/junk/latest"),
        b"not json",
    );
    assert_eq!(
        ids(&ollama::scan(models)),
        [
            ("ollama:hf.co/bartowski/SmolLM2-GGUF:Q4_K_M", 24),
            ("ollama:smollm2:135m", 16),
        ]
    );
}

#[test]
fn llama_cpp_cache() {
    let dir = tempfile::tempdir().expect("tmp");
    let cache = dir.path();
    write(
        &cache.join("bartowski_SmolLM2-GGUF_SmolLM2-Q4_1.gguf"),
        &[0; 9],
    );
    write(
        &cache.join("bartowski_SmolLM2-GGUF_SmolLM2-Q4_1.gguf.json"),
        b"{}",
    );
    write(&cache.join("other.gguf.downloadInProgress"), &[0; 9]);
    assert_eq!(
        ids(&llama_cpp::scan(cache)),
        [("llamacpp:bartowski_SmolLM2-GGUF_SmolLM2-Q4_1", 9)]
    );
}

#[test]
fn sources_are_found_where_each_app_looks() {
    let dir = tempfile::tempdir().expect("tmp");
    let home = dir.path();
    let none = |_: &str| None;
    for kind in SourceKind::ALL {
        assert_eq!(
            kind.locate(&none, home),
            None,
            "{kind:?}: no folder, no source"
        );
    }
    let made = |p: PathBuf| {
        std::fs::create_dir_all(&p).expect("mkdir");
        p
    };
    let hf = made(home.join(".cache/huggingface/hub"));
    let ollama = made(home.join(".ollama/models"));
    let lms = made(home.join(".lmstudio/models"));
    assert_eq!(SourceKind::Huggingface.locate(&none, home), Some(hf));
    assert_eq!(SourceKind::Ollama.locate(&none, home), Some(ollama));
    assert_eq!(SourceKind::LmStudio.locate(&none, home), Some(lms));
    // Each app's own variable wins.
    let elsewhere = made(home.join("elsewhere"));
    let text = elsewhere.display().to_string();
    let var = |name: &str| {
        ["HF_HUB_CACHE", "OLLAMA_MODELS", "LLAMA_CACHE"]
            .contains(&name)
            .then(|| text.clone())
    };
    for kind in [
        SourceKind::Huggingface,
        SourceKind::Ollama,
        SourceKind::LlamaCpp,
    ] {
        assert_eq!(
            kind.locate(&var, home).as_ref(),
            Some(&elsewhere),
            "{kind:?}"
        );
    }
    let hf_home = |name: &str| (name == "HF_HOME").then(|| home.join("hfh").display().to_string());
    let hub = made(home.join("hfh/hub"));
    assert_eq!(SourceKind::Huggingface.locate(&hf_home, home), Some(hub));
}

#[test]
fn source_ids() {
    for id in [
        "hf:bartowski/SmolLM2-GGUF/SmolLM2-Q4_1.gguf",
        "hf:mlx-community/SmolLM2-4bit",
        "ollama:llama3.2:3b",
        "lmstudio:a/b/c.gguf",
        "llamacpp:a_b_c",
    ] {
        assert!(is_source_id(id), "{id}");
    }
    for id in [
        "SmolLM2",
        "hf:",
        "hf:../x",
        "hf:a/../b",
        "hf:/etc/passwd",
        "hf:a//b",
        "hf:a\\b",
        "ollama:a\nb",
        "other:x",
    ] {
        assert!(!is_source_id(id), "{id}");
    }
}

#[test]
fn a_scan_stands_briefly_and_a_miss_scans_again() {
    let dir = tempfile::tempdir().expect("tmp");
    let cache = dir.path().to_path_buf();
    write(&cache.join("a.gguf"), &[0; 4]);
    let index = Index::new(vec![Source {
        kind: SourceKind::LlamaCpp,
        root: cache.clone(),
    }]);
    assert_eq!(index.models().len(), 1);
    write(&cache.join("b.gguf"), &[0; 4]);
    // Not yet in the standing scan, but found: the miss scans again.
    assert_eq!(index.models().len(), 1);
    assert!(index.find("llamacpp:b").is_some());
    assert_eq!(index.models().len(), 2);
    assert!(index.find("llamacpp:c").is_none());
    assert!(
        index.find("b").is_none(),
        "an own-folder id is not the sources'"
    );
}

/// A tree of 200 models, 50 in each app's layout, scanned cold: the time is printed (and
/// recorded in docs/benchmarks.md), not held to a bound here.
#[cfg(unix)]
#[test]
fn a_tree_of_200_models() {
    let dir = tempfile::tempdir().expect("tmp");
    let root = dir.path();
    for n in 0..50 {
        let repo = root.join(format!("hub/models--org--repo{n}"));
        write(&repo.join("refs/main"), b"r");
        write(&repo.join(format!("blobs/b{n}")), &[0; 64]);
        link(
            &format!("../../blobs/b{n}"),
            &repo.join(format!("snapshots/r/m{n}.gguf")),
        );
        write(&root.join(format!("lms/pub/repo{n}/m{n}.gguf")), &[0; 64]);
        let hex = format!("{n:064x}");
        write(&root.join(format!("ollama/blobs/sha256-{hex}")), &[0; 64]);
        write(
            &root.join(format!("ollama/manifests/registry.ollama.ai/library/m{n}/latest")),
            format!(r#"{{"layers":[{{"mediaType":"application/vnd.ollama.image.model","digest":"sha256:{hex}"}}]}}"#).as_bytes(),
        );
        write(&root.join(format!("llama/org_repo{n}_m{n}.gguf")), &[0; 64]);
    }
    let index = Index::new(vec![
        Source {
            kind: SourceKind::Huggingface,
            root: root.join("hub"),
        },
        Source {
            kind: SourceKind::LmStudio,
            root: root.join("lms"),
        },
        Source {
            kind: SourceKind::Ollama,
            root: root.join("ollama"),
        },
        Source {
            kind: SourceKind::LlamaCpp,
            root: root.join("llama"),
        },
    ]);
    let started = Instant::now();
    let found = index.models();
    let elapsed = started.elapsed();
    assert_eq!(found.len(), 200);
    println!("200 models in four layouts scanned in {elapsed:?}");
}

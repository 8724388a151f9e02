//! Hears the model folders change: Headroom's own folders and other apps' stores, through the
//! platform's file events (inotify, FSEvents; the `notify` crate). A model added, removed or
//! renamed drops the stores' last scan at once and is announced as a `models_changed` event, so
//! the window shows it without waiting for its next refresh.
//!
//! The scan's own expiry (`sources::Index`, 2 s) stays: where events do not come (a network
//! folder, a watch the system refused), the lists are still at most seconds old. Writes into a
//! file are not changes of the model list and are not listened to, so a download in progress
//! costs nothing; its last rename is heard.

use std::path::{Component, Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use notify::event::ModifyKind;
use notify::{EventKind, RecursiveMode, Watcher};
use serde::Serialize;

use super::sources::Index;
use crate::vocab::Publish;

/// Changes closer together than this are announced once: a store writing a model's files and
/// links one after another is one change.
const QUIET: Duration = Duration::from_millis(300);

/// The `models_changed` event: the models on disk may have changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModelsChanged {
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The folders that changed (the watched folder each change was under).
    pub folders: Vec<PathBuf>,
}

/// The watch; dropping it stops it.
pub struct Watch {
    _watcher: notify::RecommendedWatcher,
}

/// Whether a file event changes which models there are: something created, removed or renamed,
/// not in a hidden place (Headroom's `.partial/` staging, the Hugging Face cache's `.locks`).
fn is_change(event: &notify::Event, under: &[PathBuf]) -> bool {
    let kind = matches!(
        event.kind,
        EventKind::Create(_) | EventKind::Remove(_) | EventKind::Modify(ModifyKind::Name(_))
    );
    kind && event.paths.iter().any(|p| !is_hidden(p, under))
}

/// Whether `path` lies in a hidden file or folder below the watched folder it is under.
fn is_hidden(path: &Path, under: &[PathBuf]) -> bool {
    let below = under
        .iter()
        .find_map(|root| path.strip_prefix(root).ok())
        .unwrap_or(path);
    below.components().any(|c| match c {
        Component::Normal(name) => name.to_string_lossy().starts_with('.'),
        _ => false,
    })
}

/// Watches `folders` (those that exist), dropping `index`'s scan and publishing a
/// `models_changed` event on each change; None where the platform refuses every watch.
pub fn start(
    folders: &[PathBuf],
    index: Arc<Index>,
    publish: Publish<ModelsChanged>,
) -> Option<Watch> {
    let roots: Vec<PathBuf> = folders
        .iter()
        .filter_map(|f| f.canonicalize().ok())
        .collect();
    let (tx, rx) = mpsc::channel::<Vec<PathBuf>>();
    let heard = roots.clone();
    let mut watcher =
        notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
            Ok(event) if is_change(&event, &heard) => {
                let _ = tx.send(event.paths);
            }
            Ok(_) => {}
            Err(e) => tracing::debug!("model folder watch: {e}"),
        })
        .map_err(|e| {
            tracing::warn!("cannot watch the model folders ({e}); their lists refresh every 2 s")
        })
        .ok()?;
    let mut watching = 0;
    for root in &roots {
        match watcher.watch(root, RecursiveMode::Recursive) {
            Ok(()) => watching += 1,
            Err(e) => {
                tracing::warn!(folder = %root.display(), "cannot watch a model folder ({e}); its list refreshes every 2 s")
            }
        }
    }
    if watching == 0 {
        return None;
    }
    tracing::info!(folders = watching, "watching the model folders");
    std::thread::Builder::new()
        .name("model-folders".into())
        .spawn(move || announce(&rx, &roots, &index, &publish))
        .map_err(|e| tracing::warn!("cannot start the model folder watch: {e}"))
        .ok()?;
    Some(Watch { _watcher: watcher })
}

/// Collects changes until they pause for [`QUIET`], then drops the scan and says so; ends when
/// the watch is dropped.
fn announce(
    rx: &mpsc::Receiver<Vec<PathBuf>>,
    roots: &[PathBuf],
    index: &Index,
    publish: &Publish<ModelsChanged>,
) {
    while let Ok(first) = rx.recv() {
        let mut paths = first;
        while let Ok(more) = rx.recv_timeout(QUIET) {
            paths.extend(more);
        }
        index.forget_scan();
        let mut folders: Vec<PathBuf> = roots
            .iter()
            .filter(|root| paths.iter().any(|p| p.starts_with(root)))
            .cloned()
            .collect();
        folders.dedup();
        tracing::debug!(?folders, "model folders changed");
        publish(ModelsChanged {
            kind: "models_changed",
            folders,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::time::Instant;

    #[test]
    fn hidden_places_are_not_changes() {
        let roots = vec![PathBuf::from("/m")];
        assert!(is_hidden(Path::new("/m/.partial/x.gguf.part"), &roots));
        assert!(is_hidden(Path::new("/m/.pulled.json"), &roots));
        assert!(!is_hidden(Path::new("/m/x.gguf"), &roots));
        // A watched folder may itself be under a hidden one (~/.cache, ~/.ollama).
        let roots = vec![PathBuf::from("/home/u/.cache/llama.cpp")];
        assert!(!is_hidden(
            Path::new("/home/u/.cache/llama.cpp/x.gguf"),
            &roots
        ));
    }

    #[test]
    fn a_model_added_and_removed_is_heard() {
        let dir = tempfile::tempdir().expect("tmp");
        let heard = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&heard);
        let publish: Publish<ModelsChanged> =
            Arc::new(move |e| sink.lock().expect("heard").push(e));
        let index = Arc::new(Index::new(Vec::new()));
        let _watch = start(&[dir.path().to_path_buf()], index, publish).expect("a watch");
        let wait = |n: usize| {
            let started = Instant::now();
            while heard.lock().expect("heard").len() < n {
                assert!(started.elapsed() < Duration::from_secs(10), "nothing heard");
                std::thread::sleep(Duration::from_millis(20));
            }
        };
        // Staging in a hidden folder is not heard; the rename into place is.
        std::fs::create_dir(dir.path().join(".partial")).expect("mkdir");
        std::fs::write(dir.path().join(".partial/m.gguf.part"), b"GGUF").expect("write");
        std::fs::rename(
            dir.path().join(".partial/m.gguf.part"),
            dir.path().join("m.gguf"),
        )
        .expect("rename");
        wait(1);
        std::fs::remove_file(dir.path().join("m.gguf")).expect("remove");
        wait(2);
        let heard = heard.lock().expect("heard");
        assert_eq!(heard[0].kind, "models_changed");
        assert_eq!(heard[0].folders, [dir.path().canonicalize().expect("real")]);
    }
}

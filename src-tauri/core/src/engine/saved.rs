//! Conversations that survive an unload. When a model unloads, the engine writes what its
//! slots' KV sequences hold to disk; when the model is loaded again, a prompt that extends a
//! saved sequence restores it instead of computing it again. Unloading (idle, Stop, eviction)
//! then costs a conversation a load and a read, not its whole prefill.
//!
//! The store is engine-neutral: the engine writes and reads the state file, this module keeps
//! the bookkeeping. Each model file has a folder named for a hash of its path, holding an
//! `identity` file (the model file's size and modification time: a model file that changed
//! makes every entry void) and entries of two files: `<key>.kv`, the engine's state, and
//! `<key>.tokens`, the tokens it holds with a CRC-32 of the state file. An entry counts once
//! both exist (the `.kv` is renamed into place first); an entry whose state does not match
//! its checksum is deleted, never given to the engine. All models' entries share one byte
//! budget, the least recently used going first.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// The sidecar's first bytes, and its version.
const MAGIC: &[u8; 8] = b"HRKVTOK1";

/// Conversations shorter than this are not worth a file.
pub const MIN_SAVED_TOKENS: usize = 32;
/// A saved conversation is read only when it spares this many more tokens than what the
/// engine holds: reading a file costs more than computing a few tokens.
pub const MIN_RESTORED_GAIN: usize = 32;
/// How long an unload may spend saving conversations.
pub const SAVE_BUDGET: std::time::Duration = std::time::Duration::from_secs(2);

/// The store of every model's saved sequences, under one folder and one budget.
#[derive(Debug, Clone)]
pub struct SavedPrefixes {
    root: PathBuf,
    /// Bytes all entries may take together; 0 keeps nothing.
    budget: u64,
}

/// One saved sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Saved {
    /// The engine's state file.
    pub state: PathBuf,
    pub tokens: Vec<i32>,
    checksum: u32,
}

/// One model file's entries.
#[derive(Debug, Clone)]
pub struct ModelPrefixes {
    store: SavedPrefixes,
    dir: PathBuf,
}

impl SavedPrefixes {
    pub fn new(root: PathBuf, budget: u64) -> Self {
        Self { root, budget }
    }

    pub fn enabled(&self) -> bool {
        self.budget > 0
    }

    /// The entries of the model in `file`. A model file whose size or modification time
    /// changed since they were written voids them (they are deleted). `None` when the store is
    /// off or its folder cannot be made.
    pub fn for_model(&self, file: &Path) -> Option<ModelPrefixes> {
        if !self.enabled() {
            return None;
        }
        let identity = identity(file)?;
        let dir = self.root.join(format!("{:08x}", path_hash(file)));
        let marker = dir.join("identity");
        let written = fs::read_to_string(&marker).ok();
        if written.as_deref() != Some(identity.as_str()) {
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).ok()?;
            fs::write(&marker, &identity).ok()?;
        }
        Some(ModelPrefixes {
            store: self.clone(),
            dir,
        })
    }

    /// Bytes the entries of the model in `file` take on disk (its current identity's).
    pub fn bytes_for(&self, file: &Path) -> u64 {
        let dir = self.root.join(format!("{:08x}", path_hash(file)));
        let current = identity(file);
        if current.is_none() || fs::read_to_string(dir.join("identity")).ok() != current {
            return 0;
        }
        entries(&dir).iter().map(|e| e.bytes).sum()
    }

    /// Deletes the least recently used entries, across models, until the rest fit the budget.
    fn enforce_budget(&self) {
        let Ok(models) = fs::read_dir(&self.root) else {
            return;
        };
        let mut all: Vec<Entry> = models
            .flatten()
            .flat_map(|dir| entries(&dir.path()))
            .collect();
        all.sort_by_key(|e| std::cmp::Reverse(e.used));
        let mut total = 0u64;
        for entry in all {
            total = total.saturating_add(entry.bytes);
            if total > self.budget {
                entry.remove();
            }
        }
    }
}

impl ModelPrefixes {
    /// The saved sequence sharing the longest prefix with `prompt`, and that length.
    pub fn best(&self, prompt: &[i32]) -> Option<(Saved, usize)> {
        entries(&self.dir)
            .into_iter()
            .filter_map(|entry| {
                let saved = read_sidecar(&entry.tokens_path(), entry.state.clone())?;
                let shared = saved
                    .tokens
                    .iter()
                    .zip(prompt)
                    .take_while(|(a, b)| a == b)
                    .count();
                (shared > 0).then_some((saved, shared))
            })
            .max_by_key(|(_, shared)| *shared)
    }

    /// Whether the state file is whole (its checksum matches); one that is not is deleted.
    /// A good one is marked used now, for the budget's order.
    pub fn verify(&self, saved: &Saved) -> bool {
        let good = checksum(&saved.state).is_some_and(|sum| sum == saved.checksum);
        let entry = Entry::of(saved.state.clone());
        if good {
            if let Ok(file) = fs::File::options().append(true).open(&saved.state) {
                let _ = file.set_modified(SystemTime::now());
            }
        } else {
            tracing::warn!(file = %saved.state.display(), "a saved conversation did not match its checksum; deleted");
            entry.remove();
        }
        good
    }

    /// Deletes an entry the engine could not restore.
    pub fn discard(&self, saved: &Saved) {
        Entry::of(saved.state.clone()).remove();
    }

    /// Saves a sequence of `tokens`: `write` writes the engine's state to the path it is given
    /// (a temporary name); the entry exists once it is complete. Returns its bytes.
    pub fn save(
        &self,
        tokens: &[i32],
        write: impl FnOnce(&Path) -> Result<(), String>,
    ) -> Result<u64, String> {
        let key = format!("{:016x}", tokens_hash(tokens));
        let state = self.dir.join(format!("{key}.kv"));
        let entry = Entry::of(state.clone());
        let temporary = self.dir.join(format!("{key}.kv.partial"));
        let result = (|| {
            write(&temporary)?;
            let sum = checksum(&temporary).ok_or("the state file cannot be read back")?;
            let mut sidecar = Vec::with_capacity(16 + tokens.len() * 4);
            sidecar.extend_from_slice(MAGIC);
            sidecar.extend_from_slice(&sum.to_le_bytes());
            sidecar.extend_from_slice(&(tokens.len() as u32).to_le_bytes());
            for token in tokens {
                sidecar.extend_from_slice(&token.to_le_bytes());
            }
            // The old entry of these tokens, if any, goes first: a crash in between leaves no
            // entry rather than a mismatched one.
            entry.remove();
            fs::rename(&temporary, &state).map_err(|e| e.to_string())?;
            let sidecar_temporary = self.dir.join(format!("{key}.tokens.partial"));
            fs::write(&sidecar_temporary, &sidecar).map_err(|e| e.to_string())?;
            fs::rename(&sidecar_temporary, entry.tokens_path()).map_err(|e| e.to_string())?;
            Ok(fs::metadata(&state).map(|m| m.len()).unwrap_or(0) + sidecar.len() as u64)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&temporary);
            entry.remove();
        }
        self.store.enforce_budget();
        result
    }
}

/// An entry on disk, by its state file.
struct Entry {
    state: PathBuf,
    bytes: u64,
    used: SystemTime,
}

impl Entry {
    fn of(state: PathBuf) -> Self {
        Self {
            state,
            bytes: 0,
            used: UNIX_EPOCH,
        }
    }

    fn tokens_path(&self) -> PathBuf {
        self.state.with_extension("tokens")
    }

    fn remove(&self) {
        let _ = fs::remove_file(self.tokens_path());
        let _ = fs::remove_file(&self.state);
    }
}

/// A folder's complete entries (state and sidecar both there).
fn entries(dir: &Path) -> Vec<Entry> {
    let Ok(files) = fs::read_dir(dir) else {
        return Vec::new();
    };
    files
        .flatten()
        .filter(|f| f.path().extension().is_some_and(|e| e == "kv"))
        .filter_map(|f| {
            let state = f.path();
            let meta = f.metadata().ok()?;
            let sidecar = fs::metadata(state.with_extension("tokens")).ok()?;
            Some(Entry {
                bytes: meta.len() + sidecar.len(),
                used: meta.modified().unwrap_or(UNIX_EPOCH),
                state,
            })
        })
        .collect()
}

fn read_sidecar(path: &Path, state: PathBuf) -> Option<Saved> {
    let bytes = fs::read(path).ok()?;
    let rest = bytes.strip_prefix(MAGIC.as_slice())?;
    let checksum = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?);
    let count = u32::from_le_bytes(rest.get(4..8)?.try_into().ok()?) as usize;
    let body = rest.get(8..)?;
    if body.len() != count.checked_mul(4)? {
        return None;
    }
    let tokens = body
        .chunks_exact(4)
        .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    Some(Saved {
        state,
        tokens,
        checksum,
    })
}

fn checksum(path: &Path) -> Option<u32> {
    let mut file = fs::File::open(path).ok()?;
    let mut hasher = crc32fast::Hasher::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buffer).ok()?;
        if n == 0 {
            return Some(hasher.finalize());
        }
        hasher.update(&buffer[..n]);
    }
}

/// The model file's size and modification time, as the `identity` file holds them. A model
/// folder (MLX) is its files' total size and newest modification: a weight file rewritten in
/// place changes it.
fn identity(file: &Path) -> Option<String> {
    let meta = fs::metadata(file).ok()?;
    let (len, modified) = if meta.is_dir() {
        fs::read_dir(file)
            .ok()?
            .flatten()
            .filter_map(|f| f.metadata().ok().filter(fs::Metadata::is_file))
            .fold((0u64, UNIX_EPOCH), |(len, newest), m| {
                let changed = m.modified().unwrap_or(UNIX_EPOCH);
                (len.saturating_add(m.len()), newest.max(changed))
            })
    } else {
        (meta.len(), meta.modified().ok()?)
    };
    let modified = modified.duration_since(UNIX_EPOCH).ok()?.as_nanos();
    Some(format!("{len} {modified}\n"))
}

fn path_hash(file: &Path) -> u32 {
    let path = fs::canonicalize(file).unwrap_or_else(|_| file.to_path_buf());
    crc32fast::hash(path.as_os_str().as_encoded_bytes())
}

/// An entry's name: a collision only makes one entry replace another.
fn tokens_hash(tokens: &[i32]) -> u64 {
    let bytes: Vec<u8> = tokens.iter().flat_map(|t| t.to_le_bytes()).collect();
    (u64::from(crc32fast::hash(&bytes)) << 32) | (tokens.len() as u64 & 0xffff_ffff)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(budget: u64) -> (tempfile::TempDir, SavedPrefixes, PathBuf) {
        let dir = tempfile::tempdir().expect("temp dir");
        let model = dir.path().join("model.gguf");
        fs::write(&model, b"weights").expect("model file");
        let store = SavedPrefixes::new(dir.path().join("saved"), budget);
        (dir, store, model)
    }

    fn write_state(bytes: usize) -> impl FnOnce(&Path) -> Result<(), String> {
        move |path| fs::write(path, vec![7u8; bytes]).map_err(|e| e.to_string())
    }

    #[test]
    fn the_longest_saved_prefix_of_a_prompt_is_found_and_verified() {
        let (_dir, store, model) = store(1 << 20);
        let prefixes = store.for_model(&model).expect("enabled");
        prefixes.save(&[1, 2, 3], write_state(100)).expect("saved");
        prefixes
            .save(&[1, 2, 3, 4, 5], write_state(200))
            .expect("saved");
        let (saved, shared) = prefixes.best(&[1, 2, 3, 4, 9]).expect("found");
        assert_eq!((saved.tokens.as_slice(), shared), (&[1, 2, 3, 4, 5][..], 4));
        assert!(prefixes.verify(&saved));
        assert!(prefixes.best(&[9]).is_none());
        assert!(store.bytes_for(&model) > 300);
    }

    #[test]
    fn a_damaged_state_file_is_deleted_not_used() {
        let (_dir, store, model) = store(1 << 20);
        let prefixes = store.for_model(&model).expect("enabled");
        prefixes.save(&[1, 2, 3], write_state(100)).expect("saved");
        let (saved, _) = prefixes.best(&[1, 2, 3]).expect("found");
        fs::write(&saved.state, vec![7u8; 50]).expect("truncate");
        assert!(!prefixes.verify(&saved));
        assert!(prefixes.best(&[1, 2, 3]).is_none());
        // A sidecar of garbage is no entry at all.
        prefixes.save(&[4, 5], write_state(10)).expect("saved");
        let (saved, _) = prefixes.best(&[4, 5]).expect("found");
        fs::write(saved.state.with_extension("tokens"), b"garbage").expect("garbage");
        assert!(prefixes.best(&[4, 5]).is_none());
    }

    #[test]
    fn a_changed_model_file_voids_its_entries() {
        let (_dir, store, model) = store(1 << 20);
        store
            .for_model(&model)
            .expect("enabled")
            .save(&[1, 2], write_state(10))
            .expect("saved");
        fs::write(&model, b"other weights").expect("rewritten");
        assert_eq!(store.bytes_for(&model), 0);
        let prefixes = store.for_model(&model).expect("enabled");
        assert!(prefixes.best(&[1, 2]).is_none());
    }

    #[test]
    fn a_weight_file_rewritten_in_a_model_folder_voids_its_entries() {
        let (dir, store, _) = store(1 << 20);
        let folder = dir.path().join("model-mlx");
        fs::create_dir(&folder).expect("folder");
        fs::write(folder.join("config.json"), b"{}").expect("config");
        fs::write(folder.join("model.safetensors"), b"weights").expect("weights");
        let prefixes = store.for_model(&folder).expect("enabled");
        prefixes.save(&[1, 2], write_state(10)).expect("saved");
        assert!(store.bytes_for(&folder) > 0);
        // Same length, so only the modification time tells.
        std::thread::sleep(std::time::Duration::from_millis(20));
        fs::write(folder.join("model.safetensors"), b"WEIGHTS").expect("rewritten");
        assert_eq!(store.bytes_for(&folder), 0);
        assert!(store
            .for_model(&folder)
            .expect("enabled")
            .best(&[1, 2])
            .is_none());
    }

    #[test]
    fn the_budget_keeps_the_most_recently_used() {
        let (_dir, store, model) = store(2_500);
        let prefixes = store.for_model(&model).expect("enabled");
        for n in 0..10 {
            prefixes
                .save(&[n, n + 1], write_state(1_000))
                .expect("saved");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(store.bytes_for(&model) <= 2_500);
        assert!(prefixes.best(&[9, 10]).is_some(), "the newest stays");
        assert!(prefixes.best(&[0, 1]).is_none(), "the oldest went");
    }

    #[test]
    fn a_failed_write_leaves_no_entry() {
        let (_dir, store, model) = store(1 << 20);
        let prefixes = store.for_model(&model).expect("enabled");
        let failed = prefixes.save(&[1], |_| Err("disk full".into()));
        assert_eq!(failed, Err("disk full".into()));
        assert!(prefixes.best(&[1]).is_none());
        assert!(SavedPrefixes::new(PathBuf::new(), 0)
            .for_model(&model)
            .is_none());
    }
}

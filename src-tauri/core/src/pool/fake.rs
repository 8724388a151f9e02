//! Stand-ins for the engine and the machine, so the pool's rules are tested without a model
//! file, llama.cpp or real memory. Test code only.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::{PoolConfig, PoolLimits};
use crate::engine::{
    ChatMessage, Engine, EngineError, Footprint, GenerateRequest, Generation, GenerationStats,
    LoadOptions, LoadedModel,
};
use crate::memory::{MemoryProbe, MemorySnapshot, ProbeError, SystemMemory};
use crate::models::ModelFile;
use crate::pressure::{PressureReport, Wake};
use crate::vocab::{IdleTimeout, Tier, TierMargins};

/// A mebibyte, as memory is counted and shown (see `vocab::memory_size`).
pub const MB: u64 = 1 << 20;

/// Models of any size, each loading at once; it counts what it dropped and stopped.
#[derive(Default)]
pub struct FakeEngine {
    sizes: Mutex<HashMap<PathBuf, Footprint>>,
    broken: Mutex<BTreeSet<PathBuf>>,
    dropped: Arc<AtomicUsize>,
    stops: Arc<Mutex<Vec<(String, String)>>>,
}

impl FakeEngine {
    /// A model file `id` that holds `mb` MB once loaded.
    pub fn file(&self, id: &str, mb: u64) -> ModelFile {
        let path = PathBuf::from(format!("/fake/{id}.gguf"));
        if let Ok(mut sizes) = self.sizes.lock() {
            sizes.insert(path.clone(), Footprint::new(mb * MB, 0, 0));
        }
        ModelFile {
            id: id.to_string(),
            path,
            size: mb * MB,
            source: None,
            version: Default::default(),
        }
    }

    /// A model file that is not a model: its load fails.
    pub fn broken_file(&self, id: &str) -> ModelFile {
        let file = self.file(id, 1);
        if let Ok(mut broken) = self.broken.lock() {
            broken.insert(file.path.clone());
        }
        file
    }

    /// Models freed so far.
    pub fn dropped(&self) -> usize {
        self.dropped.load(Ordering::SeqCst)
    }

    /// The models whose requests were ended, in order.
    pub fn stops(&self) -> Vec<String> {
        self.stops
            .lock()
            .map(|s| s.iter().map(|(id, _)| id.clone()).collect())
            .unwrap_or_default()
    }

    /// What the ended requests were told, in order.
    pub fn stop_reasons(&self) -> Vec<String> {
        self.stops
            .lock()
            .map(|s| s.iter().map(|(_, reason)| reason.clone()).collect())
            .unwrap_or_default()
    }

    fn footprint(&self, path: &Path) -> Result<Footprint, EngineError> {
        self.sizes
            .lock()
            .ok()
            .and_then(|sizes| sizes.get(path).copied())
            .ok_or_else(|| EngineError::BadModelFile {
                path: path.display().to_string(),
                reason: "not a fake model".into(),
            })
    }
}

impl Engine for FakeEngine {
    fn name(&self) -> &'static str {
        "fake"
    }

    fn is_native_format(&self, _: &Path) -> bool {
        true
    }

    fn estimate(&self, path: &Path, _: &LoadOptions) -> Result<Footprint, EngineError> {
        self.footprint(path)
    }

    fn load(&self, path: &Path, _: &LoadOptions) -> Result<Box<dyn LoadedModel>, EngineError> {
        if self.broken.lock().is_ok_and(|b| b.contains(path)) {
            return Err(EngineError::BadModelFile {
                path: path.display().to_string(),
                reason: "truncated".into(),
            });
        }
        Ok(Box::new(FakeModel {
            id: path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
            footprint: self.footprint(path)?,
            dropped: Arc::clone(&self.dropped),
            stops: Arc::clone(&self.stops),
        }))
    }
}

/// A loaded fake: it holds its footprint and generates nothing.
pub struct FakeModel {
    id: String,
    footprint: Footprint,
    dropped: Arc<AtomicUsize>,
    stops: Arc<Mutex<Vec<(String, String)>>>,
}

impl LoadedModel for FakeModel {
    fn engine(&self) -> &'static str {
        "fake"
    }

    fn footprint(&self) -> Footprint {
        self.footprint
    }

    fn context_per_request(&self) -> u32 {
        128
    }

    fn render_chat(
        &self,
        _: &[ChatMessage],
        _: Option<&[serde_json::Value]>,
    ) -> Result<String, EngineError> {
        Err(EngineError::Internal("a fake model does not chat".into()))
    }

    fn generate(&self, _: GenerateRequest) -> Result<Generation, EngineError> {
        Err(EngineError::Internal(
            "a fake model does not generate".into(),
        ))
    }

    fn stats(&self) -> GenerationStats {
        GenerationStats::default()
    }

    fn stop(&self, reason: &str) {
        if let Ok(mut stops) = self.stops.lock() {
            stops.push((self.id.clone(), reason.to_string()));
        }
    }
}

impl Drop for FakeModel {
    fn drop(&mut self) {
        self.dropped.fetch_add(1, Ordering::SeqCst);
    }
}

/// A machine whose available memory the test sets.
pub struct FakeProbe {
    system: Mutex<SystemMemory>,
}

impl FakeProbe {
    /// 24 GB, 20 GB of it available.
    pub fn roomy() -> Self {
        Self::with_available(20_000 * MB)
    }

    pub fn with_available(available: u64) -> Self {
        let total = 24_000 * MB;
        Self {
            system: Mutex::new(SystemMemory {
                total,
                available,
                used: total - available,
            }),
        }
    }

    pub fn set_available(&self, available: u64) {
        if let Ok(mut system) = self.system.lock() {
            system.available = available;
            system.used = system.total.saturating_sub(available);
        }
    }
}

impl MemoryProbe for FakeProbe {
    fn snapshot(&self) -> Result<MemorySnapshot, ProbeError> {
        Err(ProbeError::Parse {
            what: "a fake machine".into(),
        })
    }

    fn system(&self) -> Option<SystemMemory> {
        self.system.lock().ok().map(|s| *s)
    }
}

/// A pool of `limit_mb` MB with a 1 GB margin and floor, and one idle timeout.
pub fn config(limit_mb: u64, idle_timeout: IdleTimeout) -> PoolConfig {
    PoolConfig {
        load: LoadOptions {
            context_per_slot: 128,
            parallel: 1,
            queue: 4,
            threads: 1,
            map_weights: true,
            kv_cache: Default::default(),
            kv_cache_by_model: Default::default(),
            conversations: None,
            engine: Default::default(),
            engine_by_model: Default::default(),
            allocator_cache_limit: 0,
        },
        protector: None,
        config_source: "config.toml".into(),
        limits: PoolLimits {
            limit: limit_mb * MB,
            margins: TierMargins::flat(1_000 * MB),
            floor: 1_000 * MB,
            pinned: BTreeSet::new(),
            idle_timeout,
            idle_timeouts: BTreeMap::new(),
        },
    }
}

/// A look of the monitor at `tier`.
pub fn pressure(tier: Tier) -> PressureReport {
    PressureReport {
        tier,
        previous: Tier::Normal,
        wake: Wake::Poll,
        seen: std::time::Instant::now(),
        used_percent: 90.0,
        available: 1_000 * MB,
        stall_some: None,
        growth: None,
        seconds_left: None,
        urgent: false,
    }
}

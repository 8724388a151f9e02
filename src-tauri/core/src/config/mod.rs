//! Settings: defaults, then the config file, then `HEADROOM_*` environment variables, then
//! command-line flags. Every value is checked before anything starts, and a bad one is named
//! with what is allowed.

mod access;
mod dirs;
mod env;
mod headroom_margin;
mod store;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::engine::KvCacheType;
use crate::vocab::{
    memory_size, ByteSize, IdleTimeout, MemoryLimit, PressureThresholds, TierMargins,
};

pub use access::{api_key_problem, Bind};
pub use dirs::AppDirs;
pub use headroom_margin::HeadroomMargins;
pub use store::{write_atomically, SaveError, SettingsStore};

/// The default port; 11434 is Ollama's, so the two can run side by side.
pub const DEFAULT_PORT: u16 = 11435;

/// Every setting the server has, with its default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// TCP port. 0 picks a free one (the address is logged).
    pub port: u16,
    /// Where to listen: "loopback" (127.0.0.1 and [::1]), or one address of this machine,
    /// which shares the models with the network and so needs `api_key`.
    pub bind: Bind,
    /// When set, every request but the UI's files and `/health` must carry
    /// `Authorization: Bearer <api_key>`.
    pub api_key: Option<String>,
    /// Connections served at once; more are answered 503 with `Retry-After` and closed.
    pub max_connections: u32,
    /// Extra folders to find `.gguf` files in, after the data folder's `models/`.
    pub models_dirs: Vec<PathBuf>,
    /// Other apps' model stores to serve from, where their folders exist: "huggingface" (the
    /// Hugging Face cache), "lm_studio", "ollama", "llama_cpp" (its download cache). Read only.
    pub sources: Vec<crate::models::SourceKind>,
    /// A Hugging Face token, for pulling gated and private repos; kept in this file (readable
    /// by its owner only) and never shown by the API. Unset, `HF_TOKEN` or the token
    /// `huggingface-cli login` saved is used.
    pub hub_token: Option<String>,
    /// CPU threads per model; `None` = all cores but one, so the desktop stays responsive.
    pub threads: Option<u32>,
    /// Requests one model decodes at once.
    pub parallel: u32,
    /// Tokens of context (prompt + answer) each request gets.
    pub context_size: u32,
    /// Requests that may wait for a busy model before more are refused with 503.
    pub queue_size: u32,
    /// Map model weights from their files (reclaimable file pages, kept safe from writers by
    /// `protect`), or read them into the process's memory.
    pub map_weights: bool,
    /// How the KV cache stores keys and values: "f16", or quantized "q8_0" (about half the
    /// memory) or "q4_0" (about a quarter). Applies at the next start.
    pub kv_cache_type: KvCacheType,
    /// Per-model KV cache types, by model id.
    pub kv_cache_types: std::collections::BTreeMap<String, KvCacheType>,
    /// Which engine serves a model: "auto" (MLX folders with MLX, GGUF files with llama.cpp),
    /// "llama.cpp" or "mlx". Applies at the next start.
    pub engine: crate::engine::EngineChoice,
    /// Per-model engines, by model id (a GGUF served by MLX: `engines = { "x" = "mlx" }`).
    pub engines: std::collections::BTreeMap<String, crate::engine::EngineChoice>,
    /// What MLX's allocator may keep of freed buffers for reuse, in all (its cache, cleared
    /// when an MLX model unloads and by the pressure monitor). Applies at the next start.
    pub mlx_cache_limit: ByteSize,
    /// Disk space for conversations saved when a model unloads (restored when it loads
    /// again), in the data folder's `conversations/`; 0 saves none. Applies at the next start.
    pub conversation_cache: ByteSize,
    /// Reuse the longest prefix of a prompt that a slot's KV cache still holds (a chat's
    /// earlier turns), computing only the rest. A request's `cache_prompt` overrides it.
    pub cache_prompt: bool,
    /// The most memory the loaded models may hold together: "auto" (RAM minus a quarter of
    /// it, the quarter kept between 4 and 8 GiB), a percentage of RAM, or a size.
    pub memory_limit: MemoryLimit,
    /// Memory a load must leave available to the rest of the machine, per pressure tier.
    #[serde(deserialize_with = "headroom_margin::deserialize")]
    pub headroom_margin: HeadroomMargins,
    /// Below this much available memory, requests that would need a load are turned away.
    pub memory_floor: ByteSize,
    /// Pinned models: loaded at startup (or as soon as they are pinned) and never unloaded by
    /// eviction, idle expiry, pressure or flush. Written `preload` before it had this name; a
    /// config file that says `preload` still reads.
    #[serde(alias = "preload")]
    pub pinned: Vec<String>,
    /// How long a model stays loaded after its last request ends: "never", "10m", seconds.
    pub idle_timeout: IdleTimeout,
    /// Per-model idle timeouts, by model id.
    pub idle_timeouts: std::collections::BTreeMap<String, IdleTimeout>,
    /// Used-memory percentages at which the pressure tier rises.
    pub pressure: PressureThresholds,
    /// Desktop notifications when memory runs low or models are unloaded for it.
    pub notifications: bool,
    /// Start the app when the user logs in.
    pub launch_at_login: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            port: DEFAULT_PORT,
            bind: Bind::Loopback,
            api_key: None,
            max_connections: 512,
            models_dirs: Vec::new(),
            sources: crate::models::SourceKind::ALL.to_vec(),
            hub_token: None,
            threads: None,
            parallel: 2,
            context_size: 4096,
            queue_size: 64,
            map_weights: true,
            kv_cache_type: KvCacheType::F16,
            kv_cache_types: std::collections::BTreeMap::new(),
            engine: crate::engine::EngineChoice::Auto,
            engines: std::collections::BTreeMap::new(),
            mlx_cache_limit: ByteSize(256 << 20),
            conversation_cache: ByteSize(2 << 30),
            cache_prompt: true,
            memory_limit: MemoryLimit::Auto,
            headroom_margin: HeadroomMargins::default(),
            memory_floor: ByteSize(1 << 30),
            pinned: Vec::new(),
            idle_timeout: IdleTimeout::After(std::time::Duration::from_secs(600)),
            idle_timeouts: std::collections::BTreeMap::new(),
            pressure: PressureThresholds::default(),
            notifications: true,
            launch_at_login: false,
        }
    }
}

/// Settings changed live; `restart_required` lists those that apply at the next start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename = "settings_changed")]
pub struct SettingsChanged {
    pub changed: Vec<String>,
    pub restart_required: Vec<String>,
}

/// A setting that cannot be used, and why.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{source_name}: setting '{setting}' = {value}: {allowed}")]
pub struct SettingError {
    /// Where the value came from (the file's path, `HEADROOM_PORT`, ...).
    pub source_name: String,
    pub setting: String,
    pub value: String,
    pub allowed: String,
}

impl Settings {
    /// Reads a TOML config file. A missing file is not an error (defaults apply); one that
    /// does not parse is, with the line and the key.
    pub fn from_file(path: &Path) -> Result<Self, SettingError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => {
                return Err(SettingError {
                    source_name: path.display().to_string(),
                    setting: "(file)".into(),
                    value: String::new(),
                    allowed: format!("cannot read it: {e}"),
                })
            }
        };
        Self::from_toml(&text, &path.display().to_string())
    }

    pub fn from_toml(text: &str, source_name: &str) -> Result<Self, SettingError> {
        let settings: Self = toml::from_str(text).map_err(|e| SettingError {
            source_name: source_name.to_string(),
            setting: "(file)".into(),
            value: String::new(),
            allowed: e.to_string().trim().to_string(),
        })?;
        settings.validate(source_name)?;
        Ok(settings)
    }

    /// Applies `HEADROOM_*` variables from `vars` (normally `std::env::vars()`).
    pub fn apply_env(
        &mut self,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<(), SettingError> {
        env::apply(self, vars)?;
        self.validate("environment")
    }

    /// Checks ranges. `source_name` says where to look when one is off.
    pub fn validate(&self, source_name: &str) -> Result<(), SettingError> {
        let err = |setting: &str, value: String, allowed: &str| SettingError {
            source_name: source_name.to_string(),
            setting: setting.to_string(),
            value,
            allowed: allowed.to_string(),
        };
        if let Some(threads) = self.threads {
            if !(1..=1024).contains(&threads) {
                return Err(err("threads", threads.to_string(), "from 1 to 1024"));
            }
        }
        if let Some(problem) = self.api_key.as_deref().and_then(api_key_problem) {
            return Err(err("api_key", "(hidden)".into(), &problem));
        }
        if let Some(token) = &self.hub_token {
            if token.len() > 512 || !token.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(err(
                    "hub_token",
                    "(hidden)".into(),
                    "a Hugging Face token: printable ASCII without spaces, at most 512 characters",
                ));
            }
        }
        if self.bind.is_shared() && self.api_key.is_none() {
            return Err(err(
                "bind",
                self.bind.to_string(),
                "an address beyond loopback shares the models with the network: set api_key too",
            ));
        }
        if !(8..=100_000).contains(&self.max_connections) {
            return Err(err(
                "max_connections",
                self.max_connections.to_string(),
                "from 8 to 100000",
            ));
        }
        if !(1..=64).contains(&self.parallel) {
            return Err(err("parallel", self.parallel.to_string(), "from 1 to 64"));
        }
        if !(128..=1_048_576).contains(&self.context_size) {
            return Err(err(
                "context_size",
                self.context_size.to_string(),
                "from 128 to 1048576 tokens",
            ));
        }
        if !(1..=10_000).contains(&self.queue_size) {
            return Err(err(
                "queue_size",
                self.queue_size.to_string(),
                "from 1 to 10000",
            ));
        }
        let m = self.headroom_margin;
        if m.constrained < m.relaxed || m.critical < m.constrained {
            let (setting, value) = if m.constrained < m.relaxed {
                ("headroom_margin.constrained", m.constrained)
            } else {
                ("headroom_margin.critical", m.critical)
            };
            return Err(err(
                setting,
                memory_size(value.0),
                "at least the margin of the tier below: relaxed ≤ constrained ≤ critical",
            ));
        }
        let p = self.pressure;
        let ordered = 0.0 < p.elevated
            && p.elevated < p.constrained
            && p.constrained < p.critical
            && p.critical < p.emergency
            && p.emergency <= 100.0;
        if !ordered {
            return Err(err(
                "pressure",
                format!(
                    "elevated {}, constrained {}, critical {}, emergency {}",
                    p.elevated, p.constrained, p.critical, p.emergency
                ),
                "percentages rising from elevated to emergency, each above 0 and at most 100",
            ));
        }
        let bad_id = |id: &&String| !crate::models::is_valid_id(id);
        if let Some(id) = self.idle_timeouts.keys().find(bad_id) {
            return Err(err(
                "idle_timeouts",
                format!("{id:?}"),
                "model ids: file names without '.gguf' and without path separators",
            ));
        }
        if let Some(id) = self.pinned.iter().find(bad_id) {
            return Err(err(
                "pinned",
                format!("{id:?}"),
                "model ids: file names without '.gguf' and without path separators",
            ));
        }
        Ok(())
    }

    /// Checks the settings that depend on the machine: `total_ram` bytes of RAM.
    pub fn validate_for_machine(
        &self,
        total_ram: u64,
        source_name: &str,
    ) -> Result<(), SettingError> {
        let err = |setting: &str, value: String, allowed: String| SettingError {
            source_name: source_name.to_string(),
            setting: setting.to_string(),
            value,
            allowed,
        };
        if let MemoryLimit::Bytes(bytes) = self.memory_limit {
            if bytes > total_ram {
                return Err(err(
                    "memory_limit",
                    memory_size(bytes),
                    format!("at most the machine's RAM, {}", memory_size(total_ram)),
                ));
            }
        }
        // Defaults scale down on small machines (see `margins_for`); only a value the user
        // chose can be wrong.
        let too_big = |name: String, value: ByteSize, default: ByteSize| {
            if value != default && value.0 >= total_ram {
                Err(err(
                    &name,
                    memory_size(value.0),
                    format!("less than the machine's RAM, {}", memory_size(total_ram)),
                ))
            } else {
                Ok(())
            }
        };
        for (tier, value, default) in self.headroom_margin.tiers() {
            too_big(format!("headroom_margin.{tier}"), value, default)?;
        }
        too_big(
            "memory_floor".into(),
            self.memory_floor,
            Self::default().memory_floor,
        )?;
        Ok(())
    }

    /// The headroom margins and memory floor in force on a machine (or cgroup) with
    /// `total_ram` bytes: as set, except that defaults shrink on a small machine (the floor's
    /// 1 GiB to a sixteenth of it), so a 4 GiB container is not refused every load.
    pub fn margins_for(&self, total_ram: u64) -> (TierMargins, u64) {
        let floor = if self.memory_floor == Self::default().memory_floor {
            self.memory_floor.0.min(total_ram / 16)
        } else {
            self.memory_floor.0
        };
        (self.headroom_margin.for_machine(total_ram), floor)
    }

    /// Threads to give a model: the setting, or all cores but one.
    pub fn effective_threads(&self) -> u32 {
        self.threads.unwrap_or_else(|| {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            u32::try_from(cores.saturating_sub(1).max(1)).unwrap_or(1)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_file_means_defaults() {
        assert_eq!(
            Settings::from_toml("", "t").expect("parses"),
            Settings::default()
        );
    }

    #[test]
    fn a_file_sets_values() {
        let s = Settings::from_toml(
            "port = 9000\nparallel = 4\nmodels_dirs = [\"/m\"]\nthreads = 3\n",
            "t",
        )
        .expect("parses");
        assert_eq!(s.port, 9000);
        assert_eq!(s.parallel, 4);
        assert_eq!(s.models_dirs, vec![PathBuf::from("/m")]);
        assert_eq!(s.effective_threads(), 3);
    }

    #[test]
    fn unknown_keys_and_wrong_types_are_named() {
        let e = Settings::from_toml("prot = 1\n", "cfg.toml").unwrap_err();
        assert!(e.to_string().contains("prot"), "{e}");
        let e = Settings::from_toml("port = \"x\"\n", "cfg.toml").unwrap_err();
        assert!(e.to_string().contains("port"), "{e}");
    }

    #[test]
    fn every_validation_names_the_setting() {
        for (text, setting) in [
            ("queue_size = 0\n", "queue_size"),
            ("context_size = 100\n", "context_size"),
            ("threads = 0\n", "threads"),
            ("pinned = [\"../x\"]\n", "pinned"),
            ("[idle_timeouts]\n\"a/b\" = \"5m\"\n", "idle_timeouts"),
            ("[pressure]\ncritical = 80\n", "pressure"),
            ("bind = \"0.0.0.0\"\n", "bind"),
            ("api_key = \"short\"\n", "api_key"),
            ("max_connections = 1\n", "max_connections"),
        ] {
            let e = Settings::from_toml(text, "cfg.toml").unwrap_err();
            assert_eq!(e.setting, setting, "{text}: {e}");
        }
        for text in [
            "idle_timeout = -5\n",
            "idle_timeout = \"soon\"\n",
            "memory_limit = \"150%\"\n",
        ] {
            let e = Settings::from_toml(text, "cfg.toml").unwrap_err();
            let key = text.split(' ').next().unwrap_or_default();
            assert!(e.to_string().contains(key), "{text}: {e}");
        }
        let s = Settings::default();
        let e = Settings {
            memory_limit: MemoryLimit::Bytes(1 << 40),
            ..s.clone()
        }
        .validate_for_machine(16 << 30, "t")
        .unwrap_err();
        assert_eq!(e.setting, "memory_limit");
        let e = Settings {
            headroom_margin: HeadroomMargins::flat(ByteSize(16 << 30)),
            ..s.clone()
        }
        .validate_for_machine(16 << 30, "t")
        .unwrap_err();
        assert_eq!(e.setting, "headroom_margin.relaxed");
        let e = Settings {
            headroom_margin: HeadroomMargins {
                constrained: ByteSize(1 << 30),
                ..HeadroomMargins::default()
            },
            ..s
        }
        .validate("t")
        .unwrap_err();
        assert_eq!(e.setting, "headroom_margin.constrained");
    }

    #[test]
    fn pinned_models_read_under_their_old_name_too() {
        let s = Settings::from_toml("preload = [\"m\"]\n", "t").expect("parses");
        assert_eq!(s.pinned, ["m"]);
        let written = toml::to_string(&s).expect("writes");
        assert!(written.contains("pinned = [\"m\"]"), "{written}");
        assert!(!written.contains("preload"), "{written}");
    }

    #[test]
    fn out_of_range_values_say_what_is_allowed() {
        let e = Settings::from_toml("parallel = 0\n", "cfg.toml").unwrap_err();
        assert_eq!(e.setting, "parallel");
        assert_eq!(e.allowed, "from 1 to 64");
        assert_eq!(e.source_name, "cfg.toml");
    }
}

//! Which engine serves a model. The pool holds one [`Engine`]; with more than one engine built
//! in, that is a [`Router`], which hands each model to the engine the settings choose: by
//! default the one whose own format the model is in (an MLX folder to MLX, a GGUF file to
//! llama.cpp), or the one named for the model (`engines` in the settings).

use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{Engine, EngineError, Footprint, LoadOptions, LoadedModel};

/// The engine a model is served with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum EngineChoice {
    /// The engine whose own format the model is in.
    #[default]
    #[serde(rename = "auto")]
    Auto,
    #[serde(rename = "llama.cpp")]
    LlamaCpp,
    #[serde(rename = "mlx")]
    Mlx,
}

impl EngineChoice {
    pub const ALL: [Self; 3] = [Self::Auto, Self::LlamaCpp, Self::Mlx];

    pub fn name(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::LlamaCpp => "llama.cpp",
            Self::Mlx => "mlx",
        }
    }

    /// Whether an engine called `engine` (its [`Engine::name`]) is this choice.
    fn names(self, engine: &str) -> bool {
        self != Self::Auto && engine.eq_ignore_ascii_case(self.name())
    }
}

impl std::str::FromStr for EngineChoice {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|c| c.name().eq_ignore_ascii_case(text.trim()))
            .ok_or_else(|| format!("'{text}' is not one of auto, llama.cpp, mlx"))
    }
}

/// Engines side by side, one chosen per model.
pub struct Router {
    engines: Vec<Arc<dyn Engine>>,
}

impl Router {
    /// `engines` in order of preference where more than one reads a format natively.
    pub fn new(engines: Vec<Arc<dyn Engine>>) -> Self {
        Self { engines }
    }

    /// The engine for `path` under `options`, or why there is none.
    pub fn pick(&self, path: &Path, options: &LoadOptions) -> Result<&dyn Engine, EngineError> {
        let found = match options.engine {
            EngineChoice::Auto => self.engines.iter().find(|e| e.is_native_format(path)),
            choice => self.engines.iter().find(|e| choice.names(e.name())),
        };
        found.map(|e| &**e).ok_or_else(|| match options.engine {
            EngineChoice::Auto => EngineError::BadModelFile {
                path: path.display().to_string(),
                reason: "no engine here reads this format".into(),
            },
            choice => EngineError::Unsupported(format!(
                "the {} engine is not built into this Headroom",
                choice.name()
            )),
        })
    }
}

impl Engine for Router {
    fn name(&self) -> &'static str {
        "auto"
    }

    fn is_native_format(&self, path: &Path) -> bool {
        self.engines.iter().any(|e| e.is_native_format(path))
    }

    fn keeps_file_mapped(&self, path: &Path, options: &LoadOptions) -> bool {
        self.pick(path, options)
            .map_or(true, |e| e.keeps_file_mapped(path, options))
    }

    fn release_cached_memory(&self) -> Option<String> {
        let done: Vec<String> = self
            .engines
            .iter()
            .filter_map(|e| e.release_cached_memory())
            .collect();
        (!done.is_empty()).then(|| done.join("; "))
    }

    fn engine_for(&self, path: &Path, options: &LoadOptions) -> &'static str {
        self.pick(path, options).map_or("none", |e| e.name())
    }

    fn estimate(&self, path: &Path, options: &LoadOptions) -> Result<Footprint, EngineError> {
        self.pick(path, options)?.estimate(path, options)
    }

    fn load(
        &self,
        path: &Path,
        options: &LoadOptions,
    ) -> Result<Box<dyn LoadedModel>, EngineError> {
        self.pick(path, options)?.load(path, options)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An engine that only answers to its name and its format.
    struct Named(&'static str, fn(&Path) -> bool);

    impl Engine for Named {
        fn name(&self) -> &'static str {
            self.0
        }
        fn is_native_format(&self, path: &Path) -> bool {
            (self.1)(path)
        }
        fn estimate(&self, _: &Path, _: &LoadOptions) -> Result<Footprint, EngineError> {
            Ok(Footprint::new(1, 0, 0))
        }
        fn load(&self, _: &Path, _: &LoadOptions) -> Result<Box<dyn LoadedModel>, EngineError> {
            Err(EngineError::Internal("not loaded in this test".into()))
        }
    }

    fn options() -> LoadOptions {
        LoadOptions {
            context_per_slot: 128,
            parallel: 1,
            queue: 1,
            threads: 1,
            map_weights: true,
            kv_cache: Default::default(),
            kv_cache_by_model: Default::default(),
            conversations: None,
            engine: EngineChoice::Auto,
            engine_by_model: [("pinned-to-mlx".to_string(), EngineChoice::Mlx)].into(),
            allocator_cache_limit: 0,
        }
    }

    #[test]
    fn auto_goes_by_format_and_a_choice_names_the_engine() {
        let dir = tempfile::tempdir().expect("tmp");
        let file = dir.path().join("m.gguf");
        std::fs::write(&file, b"GGUF").expect("write");
        let router = Router::new(vec![
            Arc::new(Named("llama.cpp", |p| p.is_file())),
            Arc::new(Named("MLX", |p| p.is_dir())),
        ]);
        let mut options = options();
        assert_eq!(router.engine_for(dir.path(), &options), "MLX");
        assert_eq!(router.engine_for(&file, &options), "llama.cpp");
        assert_eq!(
            router.engine_for(&file, &options.for_model("pinned-to-mlx")),
            "MLX"
        );
        options.engine = EngineChoice::Mlx;
        assert_eq!(router.engine_for(&file, &options), "MLX");
        let only_llama = Router::new(vec![Arc::new(Named("llama.cpp", |p| p.is_file()))]);
        let err = only_llama
            .estimate(&file, &options)
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("the mlx engine is not built into this Headroom")
        );
        options.engine = EngineChoice::Auto;
        assert!(only_llama.estimate(dir.path(), &options).is_err());
    }

    #[test]
    fn choices_read_from_text() {
        assert_eq!("MLX".parse::<EngineChoice>(), Ok(EngineChoice::Mlx));
        assert_eq!(
            " llama.cpp".parse::<EngineChoice>(),
            Ok(EngineChoice::LlamaCpp)
        );
        assert!("vllm".parse::<EngineChoice>().unwrap_err().contains("auto"));
    }
}

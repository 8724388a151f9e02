//! What the tray menu says, computed from the pool's status and the machine's memory. Pure, so
//! the wording is tested without a display; `tray.rs` turns it into menu items.

use headroom_core::memory::SystemMemory;
use headroom_core::pool::{ModelState, ModelStatus, PoolStatus};
use headroom_core::vocab::memory_size;
use headroom_core::vocab::Tier;

/// The tray icon's three looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Look {
    Normal,
    Constrained,
    Critical,
}

impl Look {
    pub fn of(tier: Tier) -> Self {
        match tier {
            Tier::Normal | Tier::Elevated => Self::Normal,
            Tier::Constrained => Self::Constrained,
            Tier::Critical | Tier::Emergency => Self::Critical,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelLine {
    pub id: String,
    /// "SmolLM2-135M-Instruct.Q4_1 · 164 MB · idle 7:12"
    pub text: String,
    /// Pinned models, and models still loading or already unloading, cannot be stopped.
    pub stoppable: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrayView {
    pub look: Look,
    /// "System: 9.8 GB of 24 GB (41%)"
    pub system: String,
    /// Used percent, for the menu-bar title on macOS.
    pub system_percent: Option<u64>,
    /// "Pool: 164 MB of 17.7 GB"
    pub pool: String,
    pub models: Vec<ModelLine>,
}

impl TrayView {
    pub fn new(pool: &PoolStatus, system: Option<SystemMemory>, now_ms: u64) -> Self {
        let system_percent = system
            .filter(|s| s.total > 0)
            .map(|s| (s.used * 100 + s.total / 2) / s.total);
        Self {
            look: Look::of(pool.tier),
            system: match (system, system_percent) {
                (Some(s), Some(p)) => {
                    format!(
                        "System: {} of {} ({p}%)",
                        memory_size(s.used),
                        memory_size(s.total)
                    )
                }
                _ => "System: unknown".into(),
            },
            system_percent,
            pool: format!(
                "Pool: {} of {}",
                memory_size(pool.used),
                memory_size(pool.limit)
            ),
            models: pool
                .models
                .iter()
                .map(|m| ModelLine {
                    id: m.id.clone(),
                    text: format!(
                        "{} · {} · {}",
                        m.id,
                        memory_size(m.memory.unwrap_or(m.estimate).total),
                        activity(m, now_ms)
                    ),
                    stoppable: !m.pinned && matches!(m.state, ModelState::Ready | ModelState::Busy),
                })
                .collect(),
        }
    }

    /// Whether `other` needs a new menu, rather than new text on the same items.
    pub fn same_items(&self, other: &Self) -> bool {
        self.models.len() == other.models.len()
            && self
                .models
                .iter()
                .zip(&other.models)
                .all(|(a, b)| a.id == b.id && a.stoppable == b.stoppable)
    }
}

/// What a model is doing: "busy ×2", "idle 7:12" (until the idle unload), "pinned".
fn activity(m: &ModelStatus, now_ms: u64) -> String {
    match m.state {
        ModelState::Loading => "loading".into(),
        ModelState::Unloading => "unloading".into(),
        ModelState::Busy => format!("busy ×{}", m.in_flight),
        ModelState::Ready if m.pinned => "pinned".into(),
        ModelState::Ready => match m.expires_at {
            Some(at) => {
                let left = at.saturating_sub(now_ms) / 1000;
                format!("idle {}:{:02}", left / 60, left % 60)
            }
            None => "idle, kept loaded".into(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use headroom_core::engine::Footprint;
    use headroom_core::vocab::TierMargins;

    fn model(id: &str, state: ModelState, pinned: bool, expires_at: Option<u64>) -> ModelStatus {
        ModelStatus {
            id: id.into(),
            engine: Some("llama.cpp"),
            path: format!("/models/{id}.gguf"),
            state,
            pinned,
            memory: Some(Footprint::new(100 << 20, 60 << 20, 4 << 20)),
            estimate: Footprint::new(100_000_000, 60_000_000, 5_000_000),
            estimate_error_percent: None,
            in_flight: if state == ModelState::Busy { 2 } else { 0 },
            load_ms: Some(300),
            protection: None,
            loaded_at: Some(0),
            last_used: Some(0),
            expires_at,
            stats: None,
        }
    }

    fn pool(models: Vec<ModelStatus>, tier: Tier) -> PoolStatus {
        PoolStatus {
            // 17.7 GiB and 164 MiB: memory is shown in binary units labelled GB and MB.
            limit: 19_005_230_694,
            used: 164 << 20,
            margin: 0,
            margins: TierMargins::flat(0),
            tier,
            floor: 0,
            models,
            loads: Default::default(),
        }
    }

    #[test]
    fn lines_say_what_each_model_holds_and_does() {
        let now = 1_000_000;
        let status = pool(
            vec![
                model("SmolLM2", ModelState::Ready, false, Some(now + 432_400)),
                model("gemma", ModelState::Busy, false, None),
                model("qwen", ModelState::Ready, true, None),
            ],
            Tier::Constrained,
        );
        let system = SystemMemory {
            total: 24 << 30,
            used: 10_522_669_875,
            available: (24 << 30) - 10_522_669_875,
        };
        let view = TrayView::new(&status, Some(system), now);
        assert_eq!(view.system, "System: 9.8 GB of 24.0 GB (41%)");
        assert_eq!(view.pool, "Pool: 164 MB of 17.7 GB");
        assert_eq!(view.look, Look::Constrained);
        let texts: Vec<_> = view.models.iter().map(|m| m.text.as_str()).collect();
        assert_eq!(
            texts,
            [
                "SmolLM2 · 164 MB · idle 7:12",
                "gemma · 164 MB · busy ×2",
                "qwen · 164 MB · pinned"
            ]
        );
        assert_eq!(
            view.models.iter().map(|m| m.stoppable).collect::<Vec<_>>(),
            [true, true, false]
        );
        // A second later only the text changes: the same menu items are kept.
        let later = TrayView::new(&status, Some(system), now + 1000);
        assert_eq!(later.models[0].text, "SmolLM2 · 164 MB · idle 7:11");
        assert!(later.same_items(&view));
        let fewer = TrayView::new(&pool(vec![], Tier::Critical), None, now);
        assert!(!fewer.same_items(&view));
        assert_eq!(fewer.look, Look::Critical);
        assert_eq!(fewer.system, "System: unknown");
    }
}

//! What the pool tells the world: every change, in the order it happened. The UI and
//! `/api/events` live on this stream.

use serde::Serialize;

use crate::engine::Footprint;
use crate::pressure::{PressureReport, Wake};
use crate::vocab::Tier;

/// Why a model left memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UnloadReason {
    /// Someone pressed Stop (`DELETE /api/memory/models/{id}`).
    Requested,
    /// `POST /api/memory/flush`.
    Flush,
    /// Unloaded to make room for another model.
    Evicted,
    /// Its idle timeout ran out.
    Idle,
    /// The memory pressure monitor asked for the room.
    Pressure,
    /// Another program is rewriting, truncating or replacing the model's file in place.
    FileChanged,
    /// Another file took the model's file name (renamed over it), or it was rewritten while
    /// the weights were in memory: the model reloads from the new file once its requests end.
    FileReplaced,
    Shutdown,
}

impl UnloadReason {
    /// Whether the model's conversations are worth the disk write as it goes: not when
    /// memory is short (the unload must free it at once) nor when its file changed (they would
    /// no longer match it).
    pub fn keeps_conversations(self) -> bool {
        !matches!(
            self,
            Self::Pressure | Self::FileChanged | Self::FileReplaced
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Requested => "requested",
            Self::Flush => "flush",
            Self::Evicted => "evicted",
            Self::Idle => "idle",
            Self::Pressure => "pressure",
            Self::FileChanged => "file_changed",
            Self::FileReplaced => "file_replaced",
            Self::Shutdown => "shutdown",
        }
    }

    /// What a request ended by this unload is told.
    pub fn ended_request(self, model: &str) -> String {
        match self {
            Self::FileChanged => format!(
                "the model file of '{model}' changed on disk while this request ran; the model was unloaded, and the next request loads the new file"
            ),
            Self::Pressure => format!(
                "the model '{model}' was stopped while this request ran: memory ran short and another app needed it (memory pressure); retry when memory is free again"
            ),
            _ => format!(
                "the model '{model}' was stopped ({}) while this request ran",
                self.as_str()
            ),
        }
    }
}

/// What an unload gave back, measured.
#[derive(Debug, Clone, Serialize)]
pub struct UnloadReport {
    pub model: String,
    pub reason: UnloadReason,
    /// The model's footprint just before it was unloaded.
    pub footprint: Footprint,
    /// Process memory before and after, when it could be read.
    pub rss_before: Option<u64>,
    pub rss_after: Option<u64>,
    /// `rss_before - rss_after`.
    pub reclaimed: Option<u64>,
    /// Reclaimed bytes as a percentage of the footprint.
    pub reclaimed_percent: Option<f64>,
    /// From the decision to unload (after in-flight requests ended) to memory freed.
    pub duration_ms: u64,
    /// For a pressure unload: from the moment the monitor saw the pressure to memory freed.
    pub since_pressure_ms: Option<u64>,
    /// For a pressure unload: what the monitor saw that called for it.
    pub pressure: Option<PressureCause>,
}

/// The look of the pressure monitor that unloaded a model.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct PressureCause {
    pub tier: Tier,
    /// What woke the monitor for that look.
    pub wake: Wake,
    pub used_percent: f64,
    pub available: u64,
    /// Other apps' memory growth, bytes per second, when fast.
    pub growth_rate: Option<f64>,
    /// How long what was available would last at that pace, in seconds.
    pub seconds_left: Option<f64>,
    /// Memory was running out sooner than an unload takes: busy models went too.
    pub urgent: bool,
}

impl From<&PressureReport> for PressureCause {
    fn from(report: &PressureReport) -> Self {
        Self {
            tier: report.tier,
            wake: report.wake,
            used_percent: report.used_percent_shown(),
            available: report.available,
            growth_rate: report.growth_shown(),
            seconds_left: report.seconds_left_shown(),
            urgent: report.urgent,
        }
    }
}

/// One change in the pool.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PoolEvent {
    Loading {
        model: String,
        estimate: Footprint,
    },
    Loaded {
        model: String,
        memory: Footprint,
        estimate: Footprint,
        load_ms: u64,
    },
    LoadFailed {
        model: String,
        error: String,
    },
    /// An idle model is being unloaded to make room for `for_model`, or because the pool
    /// limit was lowered (`for_model` null).
    Evicted {
        model: String,
        for_model: Option<String>,
    },
    /// A load or a request was turned away; `code` is the API's error code.
    Refused {
        model: String,
        code: String,
        message: String,
    },
    /// An unload began; with requests in flight, it waits for them (or ends them).
    Unloading {
        model: String,
        reason: UnloadReason,
        in_flight: u32,
    },
    Unloaded(UnloadReport),
    RequestStarted {
        model: String,
        in_flight: u32,
    },
    RequestFinished {
        model: String,
        in_flight: u32,
    },
}

//! The app-wide event stream: every change in the pool, every pressure tier change, every
//! settings change, every finished generation, every pull's progress and every change of the
//! models on disk, in the order they happened. `/api/events`,
//! the timeline, notifications and the tray all follow this one stream.
//!
//! Each subsystem publishes its own kind of event through a [`Publish`] the bus hands it; it
//! does not know the bus, so the subsystems stay below this module in the graph.

use serde::Serialize;
use tokio::sync::broadcast;

use crate::config::SettingsChanged;
use crate::metrics::GenerationFinished;
use crate::models::watch::ModelsChanged;
use crate::pool::PoolEvent;
use crate::pressure::TierChanged;
use crate::pull::PullEvent;
use crate::vocab::Publish;

/// One change, as `/api/events` sends it: each kind carries its own `type` field.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Event {
    Pool(PoolEvent),
    Pressure(TierChanged),
    Settings(SettingsChanged),
    Generation(GenerationFinished),
    Pull(PullEvent),
    Models(ModelsChanged),
}

impl From<ModelsChanged> for Event {
    fn from(event: ModelsChanged) -> Self {
        Self::Models(event)
    }
}

impl From<PullEvent> for Event {
    fn from(event: PullEvent) -> Self {
        Self::Pull(event)
    }
}

impl From<PoolEvent> for Event {
    fn from(event: PoolEvent) -> Self {
        Self::Pool(event)
    }
}

impl From<TierChanged> for Event {
    fn from(event: TierChanged) -> Self {
        Self::Pressure(event)
    }
}

impl From<SettingsChanged> for Event {
    fn from(event: SettingsChanged) -> Self {
        Self::Settings(event)
    }
}

impl From<GenerationFinished> for Event {
    fn from(event: GenerationFinished) -> Self {
        Self::Generation(event)
    }
}

/// Events a slow subscriber may fall behind by before it misses some (and is told so).
const BACKLOG: usize = 1024;

/// The stream's sending end; cheap to clone.
#[derive(Clone)]
pub struct Bus {
    sender: broadcast::Sender<Event>,
}

impl Default for Bus {
    fn default() -> Self {
        Self {
            sender: broadcast::channel(BACKLOG).0,
        }
    }
}

impl Bus {
    pub fn publish(&self, event: impl Into<Event>) {
        let event = event.into();
        tracing::debug!(?event, "event");
        // No subscribers is fine: nobody is watching.
        let _ = self.sender.send(event);
    }

    /// A publisher for one subsystem's kind of event.
    pub fn publisher<T: Into<Event> + 'static>(&self) -> Publish<T> {
        let bus = self.clone();
        std::sync::Arc::new(move |event: T| bus.publish(event))
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.sender.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocab::Tier;

    #[test]
    fn every_kind_keeps_its_own_type_on_the_wire() {
        let bus = Bus::default();
        let mut events = bus.subscribe();
        bus.publisher::<PoolEvent>()(PoolEvent::RequestStarted {
            model: "m".into(),
            in_flight: 1,
        });
        bus.publish(SettingsChanged {
            changed: vec!["idle_timeout".into()],
            restart_required: Vec::new(),
        });
        bus.publish(TierChanged {
            tier: Tier::Critical,
            previous: Tier::Normal,
            wake: crate::pressure::Wake::Poll,
            used_percent: 91.0,
            available: 1,
            stall_some_avg10: None,
            growth_rate: None,
            seconds_left: None,
        });
        let types: Vec<String> = std::iter::from_fn(|| events.try_recv().ok())
            .map(|e| serde_json::to_value(e).expect("serializes")["type"].to_string())
            .collect();
        assert_eq!(
            types,
            [
                "\"request_started\"",
                "\"settings_changed\"",
                "\"pressure\""
            ]
        );
    }
}

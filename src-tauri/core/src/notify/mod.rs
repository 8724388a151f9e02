//! Desktop notifications: the user hears when memory runs low and what Headroom did about it.
//!
//! A task follows the app's events. When the pressure tier reaches critical or emergency it
//! waits a moment ([`GATHER`]) for the unloads that pressure causes, then sends one
//! notification saying what was unloaded, how much memory came back and what the user can do.
//! At most one per tier change and one a minute. Memory running out faster than the tiers climb
//! (another app allocating fast: the pool unloads at once, whatever the tier) is told the same
//! way, from the first such unload. Without a notification service (headless, no session bus)
//! the same text goes to the log.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::broadcast::error::RecvError;

use crate::events::{Bus, Event};
use crate::pool::{PoolEvent, UnloadReason};
use crate::pressure::TierChanged;
use crate::vocab::{memory_size, Tier};

/// How long to collect pressure unloads before telling the user.
const GATHER: Duration = Duration::from_millis(1500);
/// The fewest seconds between two notifications.
const MIN_INTERVAL: Duration = Duration::from_secs(60);

/// What the user would read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub summary: String,
    pub body: String,
}

/// Switched live by the `notifications` setting.
#[derive(Clone)]
pub struct Notifications {
    enabled: Arc<AtomicBool>,
}

impl Notifications {
    pub fn set_enabled(&self, on: bool) {
        self.enabled.store(on, Ordering::Relaxed);
    }

    /// Sends `message` now (no rate limit): for one-off notices such as a config file that
    /// was moved aside.
    pub fn send(&self, message: Message) {
        if self.enabled.load(Ordering::Relaxed) {
            deliver(message);
        } else {
            tracing::info!(summary = %message.summary, body = %message.body, "notification (switched off)");
        }
    }
}

/// Starts the task that turns pressure events into notifications.
pub fn start(bus: &Bus, enabled: bool) -> Notifications {
    let notifications = Notifications {
        enabled: Arc::new(AtomicBool::new(enabled)),
    };
    let mut events = bus.subscribe();
    let handle = notifications.clone();
    tokio::spawn(async move {
        let mut last_sent: Option<Instant> = None;
        let mut notified_tier = Tier::Normal;
        // Pressure unloads of the last moments: an urgent look unloads before the tier rises.
        let mut recent: Vec<(Instant, String, u64)> = Vec::new();
        loop {
            let event = match events.recv().await {
                Ok(event) => event,
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => return,
            };
            recent.retain(|(at, _, _)| at.elapsed() < GATHER);
            let tier = match event {
                Event::Pressure(TierChanged { tier, .. }) => tier,
                Event::Pool(PoolEvent::Unloaded(report))
                    if report.reason == UnloadReason::Pressure =>
                {
                    let urgent = report.pressure.is_some_and(|p| p.urgent);
                    let unload = (report.model, report.reclaimed.unwrap_or(0));
                    let recently = last_sent.is_some_and(|t| t.elapsed() < MIN_INTERVAL);
                    if urgent && !recently {
                        let mut unloads = vec![unload];
                        unloads.extend(gather_unloads(&mut events).await);
                        last_sent = Some(Instant::now());
                        notified_tier = notified_tier.max(Tier::Critical);
                        handle.send(running_out_message(&unloads));
                    } else {
                        recent.push((Instant::now(), unload.0, unload.1));
                    }
                    continue;
                }
                _ => continue,
            };
            if tier < Tier::Critical {
                notified_tier = notified_tier.min(tier);
                continue;
            }
            // One per tier change, one a minute.
            let recently = last_sent.is_some_and(|t| t.elapsed() < MIN_INTERVAL);
            if tier <= notified_tier || recently {
                continue;
            }
            let mut unloads: Vec<(String, u64)> = recent
                .drain(..)
                .map(|(_, model, bytes)| (model, bytes))
                .collect();
            unloads.extend(gather_unloads(&mut events).await);
            let message = pressure_message(tier, &unloads);
            notified_tier = tier;
            last_sent = Some(Instant::now());
            handle.send(message);
        }
    });
    notifications
}

/// Pressure unloads that complete within [`GATHER`]: (model, bytes reclaimed).
async fn gather_unloads(
    events: &mut tokio::sync::broadcast::Receiver<Event>,
) -> Vec<(String, u64)> {
    let deadline = tokio::time::Instant::now() + GATHER;
    let mut unloads = Vec::new();
    while let Ok(Ok(event)) = tokio::time::timeout_at(deadline, events.recv()).await {
        if let Event::Pool(PoolEvent::Unloaded(report)) = event {
            if report.reason == UnloadReason::Pressure {
                unloads.push((report.model, report.reclaimed.unwrap_or(0)));
            }
        }
    }
    unloads
}

/// The words: what happened, what Headroom did, what the user can do.
pub fn pressure_message(tier: Tier, unloads: &[(String, u64)]) -> Message {
    let level = if tier >= Tier::Emergency {
        "critically low"
    } else {
        "low"
    };
    let advice = "Close apps or lower the pool limit in Preferences.";
    let body = if unloads.is_empty() {
        format!("No model could be unloaded to help. {advice}")
    } else {
        let freed: u64 = unloads.iter().map(|(_, b)| b).sum();
        let names: Vec<&str> = unloads.iter().map(|(m, _)| m.as_str()).collect();
        format!(
            "Unloaded {} to free {}. {advice}",
            names.join(", "),
            memory_size(freed)
        )
    };
    Message {
        summary: format!("Memory is {level}"),
        body,
    }
}

/// The words when another app takes memory faster than it could last.
pub fn running_out_message(unloads: &[(String, u64)]) -> Message {
    let freed: u64 = unloads.iter().map(|(_, b)| b).sum();
    let names: Vec<&str> = unloads.iter().map(|(m, _)| m.as_str()).collect();
    Message {
        summary: "Memory is running out fast".into(),
        body: format!(
            "Another app is taking memory quickly: unloaded {} to free {}. Close apps or lower the pool limit in Preferences.",
            names.join(", "),
            memory_size(freed)
        ),
    }
}

/// Shows the notification, or logs it where there is no notification service.
#[cfg(feature = "desktop-notifications")]
fn deliver(message: Message) {
    tokio::task::spawn_blocking(move || {
        let shown = notify_rust::Notification::new()
            .appname("Headroom")
            .summary(&message.summary)
            .body(&message.body)
            .show();
        match shown {
            Ok(_) => {
                tracing::info!(summary = %message.summary, body = %message.body, "notification sent")
            }
            Err(e) => tracing::warn!(
                summary = %message.summary, body = %message.body, error = %e,
                "no notification service; the notification is logged instead"
            ),
        }
    });
}

/// Built without desktop notifications (the core's own tests): the log carries the message.
#[cfg(not(feature = "desktop-notifications"))]
fn deliver(message: Message) {
    tracing::info!(summary = %message.summary, body = %message.body, "notification (built without desktop notifications)");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_says_what_was_done_and_what_to_do() {
        let m = pressure_message(Tier::Critical, &[("SmolLM2".into(), 208 << 20)]);
        assert_eq!(m.summary, "Memory is low");
        assert_eq!(
            m.body,
            "Unloaded SmolLM2 to free 208 MB. Close apps or lower the pool limit in Preferences."
        );
        let m = pressure_message(Tier::Emergency, &[]);
        assert_eq!(m.summary, "Memory is critically low");
        assert!(m.body.starts_with("No model could be unloaded"));
        let m = running_out_message(&[("gemma".into(), 380 << 20), ("smol".into(), 200 << 20)]);
        assert_eq!(m.summary, "Memory is running out fast");
        assert_eq!(
            m.body,
            "Another app is taking memory quickly: unloaded gemma, smol to free 580 MB. Close apps or lower the pool limit in Preferences."
        );
    }
}

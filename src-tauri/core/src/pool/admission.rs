//! Whether a model may be loaded now, and which idle models must make room for it.
//!
//! Two limits apply: the pool's own (what all models together may hold) and the machine's
//! (what must stay available to everything else: the headroom margin). The shortfall against
//! the tighter of the two is made up by unloading idle, unpinned models, least recently used
//! first. A model serving a request is never chosen: evicting it would end that request, which
//! is what users of other servers complain about most.

use tokio::time::Instant;

use crate::memory::SystemMemory;
use crate::vocab::memory_size;

/// A loaded model as admission sees it.
#[derive(Debug, Clone)]
pub(super) struct Holder {
    pub id: String,
    /// What it holds now (its measured footprint, or its estimate while it loads).
    pub bytes: u64,
    pub last_used: Instant,
    pub hold: Hold,
}

/// Why a model can or cannot be unloaded to make room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Hold {
    Idle,
    Busy {
        in_flight: u32,
    },
    Pinned,
    /// Loading: its estimate counts, and it is not resident yet.
    Loading,
    /// Already unloading: not available to evict.
    Changing,
}

/// The load asked for.
#[derive(Debug, Clone)]
pub(super) struct Ask<'a> {
    pub model: &'a str,
    /// Its estimated footprint.
    pub need: u64,
    pub limit: u64,
    pub margin: u64,
    /// The machine now; `None` where it cannot be read (then only the pool limit applies).
    pub system: Option<SystemMemory>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Decision {
    /// Load after unloading these (possibly none), in this order.
    Admit { evict: Vec<String> },
    /// It cannot fit; the message says what holds the memory and what to do.
    Refuse { message: String, retry: bool },
}

pub(super) fn decide(ask: &Ask<'_>, holders: &[Holder]) -> Decision {
    let used: u64 = holders.iter().map(|h| h.bytes).sum();
    let pool_short = used.saturating_add(ask.need).saturating_sub(ask.limit);
    // Memory an evicted model gives back becomes available to the machine too.
    // Loads under way will take memory that is still available now.
    let loading: u64 = holders
        .iter()
        .filter(|h| h.hold == Hold::Loading)
        .map(|h| h.bytes)
        .sum();
    let machine_short = ask.system.map_or(0, |s| {
        ask.need
            .saturating_add(loading)
            .saturating_add(ask.margin)
            .saturating_sub(s.available)
    });
    let short = pool_short.max(machine_short);
    let (evict, freed) = idle_to_free(short, holders);
    if freed >= short {
        return Decision::Admit { evict };
    }

    let head = format!(
        "cannot load '{}' (it needs about {})",
        ask.model,
        memory_size(ask.need)
    );
    if ask.need > ask.limit {
        return Decision::Refuse {
            message: format!(
                "{head}: that is more than the whole pool limit of {}. Raise memory_limit, or lower context_size or parallel",
                memory_size(ask.limit)
            ),
            retry: false,
        };
    }
    let kept: Vec<String> = holders
        .iter()
        .filter_map(|h| match h.hold {
            Hold::Idle => None,
            Hold::Busy { in_flight } => Some(format!(
                "'{}' ({}, busy with {in_flight} request{})",
                h.id,
                memory_size(h.bytes),
                if in_flight == 1 { "" } else { "s" }
            )),
            Hold::Pinned => Some(format!("'{}' ({}, pinned)", h.id, memory_size(h.bytes))),
            Hold::Loading => Some(format!("'{}' ({}, loading)", h.id, memory_size(h.bytes))),
            Hold::Changing => Some(format!("'{}' ({}, unloading)", h.id, memory_size(h.bytes))),
        })
        .collect();
    let busy = holders
        .iter()
        .any(|h| matches!(h.hold, Hold::Busy { .. } | Hold::Loading | Hold::Changing));
    let missing = memory_size(short - freed);
    let message = if pool_short >= machine_short {
        format!(
            "{head}: the pool limit is {} and {} of it is held by models that cannot be unloaded now: {}. {missing} more is needed. Wait for the requests to finish, stop or unpin a model (Pinned models in Preferences), or raise memory_limit",
            memory_size(ask.limit),
            memory_size(used.saturating_sub(freed)),
            if kept.is_empty() { "none".to_string() } else { kept.join(", ") },
        )
    } else {
        let available = ask.system.map_or(0, |s| s.available);
        format!(
            "{head}: {} of memory is available and Headroom keeps {} free for the rest of the machine (headroom_margin); {missing} more is needed. Close apps or lower context_size{}",
            memory_size(available),
            memory_size(ask.margin),
            if kept.is_empty() { String::new() } else { format!(" (loaded and not evictable: {})", kept.join(", ")) },
        )
    };
    Decision::Refuse {
        message,
        retry: busy,
    }
}

/// The idle models to unload so the pool fits a `limit` that was lowered, least recently used
/// first; as many as can be, when busy and pinned models alone are over it.
pub(super) fn over_limit(limit: u64, holders: &[Holder]) -> Vec<String> {
    let used: u64 = holders.iter().map(|h| h.bytes).sum();
    idle_to_free(used.saturating_sub(limit), holders).0
}

/// Idle models, least recently used first, until they hold `short` bytes (or there are no
/// more): their ids, and the bytes they hold.
fn idle_to_free(short: u64, holders: &[Holder]) -> (Vec<String>, u64) {
    let mut idle: Vec<&Holder> = holders.iter().filter(|h| h.hold == Hold::Idle).collect();
    idle.sort_by_key(|h| h.last_used);
    let mut evict = Vec::new();
    let mut freed: u64 = 0;
    for holder in idle {
        if freed >= short {
            break;
        }
        freed = freed.saturating_add(holder.bytes);
        evict.push(holder.id.clone());
    }
    (evict, freed)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const MB: u64 = 1 << 20;

    fn holder(id: &str, mb: u64, age_s: u64, hold: Hold) -> Holder {
        Holder {
            id: id.into(),
            bytes: mb * MB,
            last_used: Instant::now() - Duration::from_secs(age_s),
            hold,
        }
    }

    fn ask(need_mb: u64, limit_mb: u64) -> Ask<'static> {
        Ask {
            model: "new",
            need: need_mb * MB,
            limit: limit_mb * MB,
            margin: 2000 * MB,
            system: Some(SystemMemory {
                total: 24_000 * MB,
                available: 20_000 * MB,
                used: 4_000 * MB,
            }),
        }
    }

    #[test]
    fn a_lowered_limit_unloads_idle_models_oldest_first_and_as_many_as_it_can() {
        let holders = [
            holder("recent", 200, 1, Hold::Idle),
            holder("old", 200, 100, Hold::Idle),
            holder("busy", 300, 300, Hold::Busy { in_flight: 1 }),
        ];
        assert!(over_limit(700 * MB, &holders).is_empty());
        assert_eq!(over_limit(500 * MB, &holders), ["old"]);
        // Busy alone is over the limit: every idle model goes, and that is all it can do.
        assert_eq!(over_limit(100 * MB, &holders), ["old", "recent"]);
    }

    #[test]
    fn fits_without_evicting() {
        let holders = [holder("a", 200, 10, Hold::Idle)];
        assert_eq!(
            decide(&ask(300, 600), &holders),
            Decision::Admit { evict: vec![] }
        );
    }

    #[test]
    fn evicts_least_recently_used_idle_models_until_it_fits() {
        let holders = [
            holder("recent", 200, 1, Hold::Idle),
            holder("old", 200, 100, Hold::Idle),
            holder("older", 100, 200, Hold::Idle),
        ];
        // 500 used + 300 needed against 600: 200 short; "older" (100) then "old" (200).
        assert_eq!(
            decide(&ask(300, 600), &holders),
            Decision::Admit {
                evict: vec!["older".into(), "old".into()]
            }
        );
    }

    #[test]
    fn never_evicts_busy_or_pinned_models_and_says_which_they_are() {
        let holders = [
            holder("busy", 200, 100, Hold::Busy { in_flight: 1 }),
            holder("pinned", 200, 100, Hold::Pinned),
        ];
        let Decision::Refuse { message, retry } = decide(&ask(300, 600), &holders) else {
            panic!("admitted");
        };
        assert!(retry, "a busy model frees up later");
        assert!(
            message.contains("'busy' (200 MB, busy with 1 request)"),
            "{message}"
        );
        assert!(message.contains("'pinned' (200 MB, pinned)"), "{message}");
        assert!(message.contains("100 MB more is needed"), "{message}");
    }

    #[test]
    fn a_model_larger_than_the_limit_is_refused_outright() {
        let Decision::Refuse { message, retry } = decide(&ask(700, 600), &[]) else {
            panic!("admitted");
        };
        assert!(!retry);
        assert!(
            message.contains("more than the whole pool limit of 600 MB"),
            "{message}"
        );
    }

    #[test]
    fn the_machine_margin_applies_even_under_the_pool_limit() {
        let mut tight = ask(300, 100_000);
        tight.system = Some(SystemMemory {
            total: 24_000 * MB,
            available: 2_100 * MB,
            used: 21_900 * MB,
        });
        let Decision::Refuse { message, .. } = decide(&tight, &[]) else {
            panic!("admitted");
        };
        assert!(
            message.contains("2.1 GB of memory is available"),
            "{message}"
        );
        assert!(message.contains("200 MB more is needed"), "{message}");
        assert!(
            message.contains("Close apps or lower context_size"),
            "{message}"
        );
        // A load under way counts against the margin too.
        let mut with_loading = tight.clone();
        with_loading.system = Some(SystemMemory {
            total: 24_000 * MB,
            available: 2_400 * MB,
            used: 21_600 * MB,
        });
        assert!(matches!(decide(&with_loading, &[]), Decision::Admit { .. }));
        let loading = [holder("other", 200, 0, Hold::Loading)];
        assert!(matches!(
            decide(&with_loading, &loading),
            Decision::Refuse { retry: true, .. }
        ));
        // An idle model's memory would come back: evicting it makes room.
        let holders = [holder("idle", 250, 5, Hold::Idle)];
        assert_eq!(
            decide(&tight, &holders),
            Decision::Admit {
                evict: vec!["idle".into()]
            }
        );
    }
}

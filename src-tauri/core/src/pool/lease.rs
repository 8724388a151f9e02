//! A request's hold on a model.

use std::ops::Deref;
use std::sync::Arc;

use tokio::sync::mpsc;

use super::state::Report;
use crate::engine::LoadedModel;

/// Keeps a model loaded, and counted as busy, while a request uses it. Dropping it tells the
/// pool the request finished, which restarts the model's idle time and lets a waiting unload go
/// ahead; the pool never unloads a model under a lease unless told to stop it.
pub struct Lease {
    model: Option<Arc<dyn LoadedModel>>,
    id: String,
    /// Which load of the model this lease belongs to.
    serial: u64,
    done: mpsc::UnboundedSender<Report>,
}

impl Lease {
    pub(super) fn new(
        model: Arc<dyn LoadedModel>,
        id: String,
        serial: u64,
        done: mpsc::UnboundedSender<Report>,
    ) -> Self {
        Self {
            model: Some(model),
            id,
            serial,
            done,
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }
}

impl Deref for Lease {
    type Target = dyn LoadedModel;

    fn deref(&self) -> &Self::Target {
        match &self.model {
            Some(model) => model.as_ref(),
            // Only `drop` takes it.
            None => unreachable!("a lease is used after it was dropped"),
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        // Let go of the model first: once the pool hears of the release, this handle must
        // already be gone, or an unload would wait on it.
        drop(self.model.take());
        let _ = self.done.send(Report::Released {
            id: std::mem::take(&mut self.id),
            serial: self.serial,
        });
    }
}

//! The used-memory percentages at which each pressure tier begins: a setting the monitor reads.

use serde::{Deserialize, Serialize};

/// Percent of the effective RAM in use at which each pressure tier begins.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PressureThresholds {
    pub elevated: f64,
    pub constrained: f64,
    pub critical: f64,
    pub emergency: f64,
}

impl Default for PressureThresholds {
    fn default() -> Self {
        Self {
            elevated: 75.0,
            constrained: 85.0,
            critical: 90.0,
            emergency: 95.0,
        }
    }
}

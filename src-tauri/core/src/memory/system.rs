//! The machine's memory, as the pool's admission needs it: how much there is and how much a
//! new load may still take. (The pressure monitor builds its fuller snapshot on this trait.)

use serde::Serialize;

/// The machine's memory at one moment, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SystemMemory {
    pub total: u64,
    /// What can be had without swapping: free memory plus caches the kernel can drop.
    pub available: u64,
    pub used: u64,
}

/// Where system memory figures come from; a trait so the pool can be driven by fixtures.
pub trait MemoryProbe: Send + Sync + 'static {
    fn system(&self) -> Option<SystemMemory>;
}

/// The operating system's own figures.
#[derive(Debug, Default, Clone, Copy)]
pub struct OsProbe;

impl MemoryProbe for OsProbe {
    #[cfg(target_os = "linux")]
    fn system(&self) -> Option<SystemMemory> {
        let text = std::fs::read_to_string("/proc/meminfo").ok()?;
        parse_meminfo(&text)
    }

    /// Interim outside Linux: sysinfo's figures. The macOS probe (host_statistics64 with
    /// Activity Monitor's arithmetic) replaces this in the pressure monitor's work.
    #[cfg(not(target_os = "linux"))]
    fn system(&self) -> Option<SystemMemory> {
        let mut sys = sysinfo::System::new();
        sys.refresh_memory();
        let total = sys.total_memory();
        let used = sys.used_memory().min(total);
        Some(SystemMemory {
            total,
            available: total - used,
            used,
        })
    }
}

/// `MemTotal` and `MemAvailable` from `/proc/meminfo`; used is the difference, as `free` and
/// the desktop's system monitor count it.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub(crate) fn parse_meminfo(text: &str) -> Option<SystemMemory> {
    let field = |name: &str| {
        text.lines().find_map(|line| {
            let rest = line.strip_prefix(name)?.strip_prefix(':')?;
            rest.trim()
                .strip_suffix("kB")?
                .trim()
                .parse::<u64>()
                .ok()?
                .checked_mul(1024)
        })
    };
    let total = field("MemTotal")?;
    let available = field("MemAvailable")?.min(total);
    Some(SystemMemory {
        total,
        available,
        used: total - available,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_total_and_available() {
        let text = "MemTotal:       24608932 kB\nMemFree:         1000000 kB\n\
                    MemAvailable:   20000000 kB\nBuffers:           1 kB\n";
        let m = parse_meminfo(text).expect("parses");
        assert_eq!(m.total, 24_608_932 * 1024);
        assert_eq!(m.available, 20_000_000 * 1024);
        assert_eq!(m.used, 4_608_932 * 1024);
        assert_eq!(parse_meminfo("MemTotal: 1 kB\n"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_machine_has_memory() {
        let m = OsProbe.system().expect("readable");
        assert!(m.total > 0 && m.available <= m.total && m.used + m.available == m.total);
    }
}

//! macOS: `host_statistics64(HOST_VM_INFO64)` with Activity Monitor's arithmetic, and the
//! kernel's own pressure level from `sysctl kern.memorystatus_vm_pressure_level`.
//!
//! sysinfo's `available_memory()` is not used: since 0.38.3 it counts active app memory as
//! available, which is exactly the memory a pressure monitor must not count.
//!
//! The arithmetic ([`snapshot_from`]) is tested on every platform; the reading ([`MacProbe`])
//! is built on macOS only and was not run on the Linux machines this was written on.

use super::{MemorySnapshot, OsPressure};

/// The `vm_statistics64` counters the arithmetic needs, in pages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VmCounters {
    pub page_size: u64,
    pub wire_count: u64,
    pub internal_page_count: u64,
    pub external_page_count: u64,
    pub purgeable_count: u64,
    pub compressor_page_count: u64,
}

/// Activity Monitor's figures: App = internal − purgeable; Wired = wire_count; Compressed =
/// compressor_page_count; Cached = external + purgeable; Used = App + Wired + Compressed;
/// Available = total − Used.
pub fn snapshot_from(
    vm: VmCounters,
    total: u64,
    swap_used: u64,
    pressure_level: i32,
) -> MemorySnapshot {
    let bytes = |pages: u64| pages.saturating_mul(vm.page_size);
    let app = bytes(vm.internal_page_count.saturating_sub(vm.purgeable_count));
    let wired = bytes(vm.wire_count);
    let compressed = bytes(vm.compressor_page_count);
    let cached = bytes(vm.external_page_count.saturating_add(vm.purgeable_count));
    let used = app
        .saturating_add(wired)
        .saturating_add(compressed)
        .min(total);
    MemorySnapshot {
        total,
        used,
        available: total - used,
        wired: Some(wired),
        compressed: Some(compressed),
        cached_files: cached,
        file_in_use: 0,
        free: None,
        swap_used,
        pressure: pressure_from_level(pressure_level),
        stall: None,
        cgroup_limited: false,
        process: None,
    }
}

/// `kern.memorystatus_vm_pressure_level`: 1 normal, 2 warn, 4 critical.
pub fn pressure_from_level(level: i32) -> OsPressure {
    match level {
        1 => OsPressure::Normal,
        2 => OsPressure::Warn,
        4 => OsPressure::Critical,
        _ => OsPressure::Unknown,
    }
}

#[cfg(target_os = "macos")]
pub use reader::MacProbe;

#[cfg(target_os = "macos")]
mod reader {
    use std::ffi::CStr;

    use super::super::{with_process, MemoryProbe, MemorySnapshot, ProbeError};
    use super::{snapshot_from, VmCounters};

    /// Reads the counters through the Mach host port and sysctl.
    pub struct MacProbe;

    impl MemoryProbe for MacProbe {
        fn snapshot(&self) -> Result<MemorySnapshot, ProbeError> {
            let vm = vm_counters()?;
            let total: u64 = sysctl_value(c"hw.memsize")?;
            let level: i32 = sysctl_value(c"kern.memorystatus_vm_pressure_level").unwrap_or(0);
            let swap: libc::xsw_usage = sysctl_value(c"vm.swapusage").unwrap_or(libc::xsw_usage {
                xsu_total: 0,
                xsu_avail: 0,
                xsu_used: 0,
                xsu_pagesize: 0,
                xsu_encrypted: 0,
            });
            Ok(with_process(snapshot_from(vm, total, swap.xsu_used, level)))
        }
    }

    fn vm_counters() -> Result<VmCounters, ProbeError> {
        // SAFETY: a zeroed vm_statistics64 is valid (plain integers); host_statistics64 writes
        // at most `count` integers into it, and count is its size in integers.
        let mut stats: libc::vm_statistics64 = unsafe { std::mem::zeroed() };
        let mut count = libc::HOST_VM_INFO64_COUNT;
        let result = unsafe {
            libc::host_statistics64(
                mach2::mach_init::mach_host_self(),
                libc::HOST_VM_INFO64,
                (&mut stats as *mut libc::vm_statistics64).cast(),
                &mut count,
            )
        };
        if result != libc::KERN_SUCCESS {
            return Err(ProbeError::Os(format!(
                "host_statistics64 failed ({result})"
            )));
        }
        // SAFETY: sysconf has no preconditions.
        let page_size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        Ok(VmCounters {
            page_size: u64::try_from(page_size).unwrap_or(16384),
            wire_count: u64::from(stats.wire_count),
            internal_page_count: u64::from(stats.internal_page_count),
            external_page_count: u64::from(stats.external_page_count),
            purgeable_count: u64::from(stats.purgeable_count),
            compressor_page_count: u64::from(stats.compressor_page_count),
        })
    }

    /// A fixed-size sysctl value by name.
    fn sysctl_value<T: Copy>(name: &CStr) -> Result<T, ProbeError> {
        let mut value = std::mem::MaybeUninit::<T>::uninit();
        let mut size = std::mem::size_of::<T>();
        // SAFETY: the buffer is `size` bytes; the kernel writes at most that and reports how
        // much it wrote, which must be all of it for the value to be initialised.
        let result = unsafe {
            libc::sysctlbyname(
                name.as_ptr(),
                value.as_mut_ptr().cast(),
                &mut size,
                std::ptr::null_mut(),
                0,
            )
        };
        if result != 0 || size != std::mem::size_of::<T>() {
            return Err(ProbeError::Os(format!(
                "sysctl {} failed: {}",
                name.to_string_lossy(),
                std::io::Error::last_os_error()
            )));
        }
        // SAFETY: fully written, checked above.
        Ok(unsafe { value.assume_init() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activity_monitor_arithmetic() {
        // A 16 GiB Apple Silicon Mac (16 KiB pages), figures as vm_stat prints them:
        //   internal 500 000, purgeable 20 000, wired 150 000, compressor 60 000,
        //   external 200 000.
        // By hand, in pages then × 16 384 bytes:
        //   App        = 500 000 − 20 000 = 480 000 → 7 864 320 000
        //   Wired      = 150 000          →          2 457 600 000
        //   Compressed =  60 000          →            983 040 000
        //   Used       = 690 000          →         11 304 960 000
        //   Cached     = 200 000 + 20 000 = 220 000 → 3 604 480 000
        //   Available  = 17 179 869 184 − 11 304 960 000 = 5 874 909 184
        let vm = VmCounters {
            page_size: 16_384,
            wire_count: 150_000,
            internal_page_count: 500_000,
            external_page_count: 200_000,
            purgeable_count: 20_000,
            compressor_page_count: 60_000,
        };
        let s = snapshot_from(vm, 17_179_869_184, 1 << 30, 2);
        assert_eq!(s.used, 11_304_960_000);
        assert_eq!(s.available, 5_874_909_184);
        assert_eq!(s.wired, Some(2_457_600_000));
        assert_eq!(s.compressed, Some(983_040_000));
        assert_eq!(s.cached_files, 3_604_480_000);
        assert_eq!(s.swap_used, 1 << 30);
        assert_eq!(s.pressure, OsPressure::Warn);
        assert!(
            (s.used_percent() - 65.80).abs() < 0.01,
            "{}",
            s.used_percent()
        );
    }

    #[test]
    fn pressure_levels() {
        assert_eq!(pressure_from_level(1), OsPressure::Normal);
        assert_eq!(pressure_from_level(2), OsPressure::Warn);
        assert_eq!(pressure_from_level(4), OsPressure::Critical);
        assert_eq!(pressure_from_level(0), OsPressure::Unknown);
    }

    #[test]
    fn counters_that_do_not_add_up_never_underflow() {
        let vm = VmCounters {
            page_size: 16_384,
            wire_count: 2_000_000,
            internal_page_count: 10,
            purgeable_count: 20,
            ..VmCounters::default()
        };
        let s = snapshot_from(vm, 1 << 30, 0, 4);
        assert_eq!((s.used, s.available), (1 << 30, 0));
    }
}

//! macOS: the dispatch memory-pressure source, the same signal the system sends apps before it
//! starts compressing and swapping in earnest (`DISPATCH_SOURCE_TYPE_MEMORYPRESSURE`).
//!
//! The handler only wakes the monitor: the snapshot it then takes reads the level the kernel
//! set (`kern.memorystatus_vm_pressure_level`), so there is one place that interprets it.

use std::ffi::c_void;

use dispatch2::{
    dispatch_source_memorypressure_flags_t as Level, dispatch_source_type_t, DispatchObject,
    DispatchQueue, DispatchSource,
};
use tokio::sync::mpsc;

use super::{forward, Wake};

pub(super) fn arm(tx: &mpsc::Sender<Wake>) {
    let queue = DispatchQueue::new("dev.headroom.memory-pressure", None);
    let mask = (Level::DISPATCH_MEMORYPRESSURE_NORMAL.0
        | Level::DISPATCH_MEMORYPRESSURE_WARN.0
        | Level::DISPATCH_MEMORYPRESSURE_CRITICAL.0) as usize;
    // SAFETY: the type is the system's memory-pressure source type; its handle must be 0 and
    // its mask a set of DISPATCH_MEMORYPRESSURE_* flags, as given.
    let source = unsafe {
        let kind = std::ptr::addr_of!(dispatch2::_dispatch_source_type_memorypressure)
            as dispatch_source_type_t;
        DispatchSource::new(kind, 0, mask, Some(&queue))
    };
    // The sender lives as long as the process: the source is never cancelled.
    let context = Box::into_raw(Box::new(tx.clone())).cast::<c_void>();
    // SAFETY: the context is the leaked sender above, read only by `on_pressure`.
    unsafe { source.set_context(context) };
    source.set_event_handler_f(on_pressure);
    source.activate();
    // Dropping the last reference to an active source would release it; it must outlive the
    // process's use of it, which is the whole run.
    std::mem::forget(source);
    std::mem::forget(queue);
    tracing::info!("memory pressure dispatch source armed");
}

extern "C" fn on_pressure(context: *mut c_void) {
    // SAFETY: `context` is the sender leaked in `arm`, never freed.
    let tx = unsafe { &*context.cast::<mpsc::Sender<Wake>>() };
    forward(tx, Wake::OsSignal);
}

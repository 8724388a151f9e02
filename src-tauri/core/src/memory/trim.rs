//! Giving freed heap memory back to the operating system.

/// Returns the allocator's free memory to the OS. glibc keeps freed chunks in its arenas (after
/// a model unload, llama.cpp leaves tens of MB there) until told otherwise; other platforms'
/// allocators return large blocks on free, so there this does nothing.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

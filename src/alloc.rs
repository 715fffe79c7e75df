//! How the daemon uses glibc's malloc, chosen from measurement (BENCHMARKS.md, "Memory").
//!
//! A plan at 10,000 stores, the first read of the store directory and the first list of
//! namespaces each allocate tens of MiB that are freed when they finish. glibc's malloc keeps
//! freed memory mapped for reuse, per arena, and trims only the top of the main heap by itself,
//! so RSS stays near the high-water mark although the live heap is a fraction of it. heaptrack at
//! 10,000 stores showed a live heap of ~40 MiB and an RSS of 155 MiB with the defaults; with
//! [`release`] after each plan 95 MiB; with that and two arenas ([`configure`]) 90 MiB. mimalloc
//! measured worse (124 MiB steady, 206 MiB peak), so the allocator stays glibc's.

/// Caps malloc at two arenas (glibc's default is 8 per core), unless `MALLOC_ARENA_MAX` is set
/// in the environment (glibc reads that itself). Call first in `main`, before any thread exists:
/// arenas are made as threads first allocate.
pub fn configure() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only sets an allocator parameter; called before any other thread runs.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}

/// Returns free heap memory to the OS: glibc's `malloc_trim(0)`, which also gives back whole
/// free pages inside the heaps (`madvise(MADV_DONTNEED)`), not only the top. It walks the arenas
/// (well under a millisecond here), so it runs after a burst of work, never per request.
pub fn release() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks and trims the allocator's own free lists, taking the arena
    // locks itself; it is safe from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

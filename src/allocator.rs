//! The binary's global allocator: jemalloc (the default feature `jemalloc`),
//! told to give freed memory back to the system within about a second.
//! Declared by `main.rs` (and the load harnesses, `examples/*gen.rs`), not
//! by the library, which leaves the choice to whoever embeds it.
//!
//! Why (BENCHMARKS.md, "Allocator"): against glibc's malloc on the same runs,
//! live mode at 10,000 objects stays at 42-44 MiB instead of 50-54 (glibc kept
//! the bootstrap's freed 4 KB objects as fragmented arenas) and the admission
//! server spends about a quarter less CPU per request. Without the background
//! thread and the short decay, jemalloc kept its peak resident (72 MiB).
//! Built without the feature (`--no-default-features`), the binary uses the
//! system allocator.

#[cfg(feature = "jemalloc")]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read once when it starts; `_RJEM_MALLOC_CONF` in the
/// environment is read after them and overrides them. A background thread
/// purges freed pages (without it purging waits for the next allocation);
/// dirty pages go back after a second; `muzzy_decay_ms:0` returns them at
/// once (`MADV_DONTNEED`) rather than lazily (`MADV_FREE`), which would still
/// count in the process's and its cgroup's resident memory.
#[cfg(feature = "jemalloc")]
#[unsafe(export_name = "_rjem_malloc_conf")]
static MALLOC_CONF: &u8 = &b"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0\0"[0];

//! Gives freed memory back to the system. The C allocator keeps what the daemon frees in its
//! arenas for reuse, so after a walk of a million files is forgotten by the kernel, or a
//! listing of 100,000 entries leaves the cache, the process would stay as big as at its peak.
//! Parts that free much at once ask for a trim ([`trim_soon`]); a thread does it shortly
//! after (and once a minute anyway), off the request path.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

static WANTED: AtomicBool = AtomicBool::new(false);

/// How often the trimmer looks whether a trim was asked for.
const CHECK_EVERY: Duration = Duration::from_secs(2);
/// A trim happens at least this often.
const TRIM_ANYWAY: u32 = 30;

/// Much memory was just freed: give it back soon.
pub fn trim_soon() {
    WANTED.store(true, Ordering::Relaxed);
}

/// Blocks at least this big get their own mapping, given back when freed.
const OWN_MAPPING_FROM: libc::c_int = 4 << 20;
/// Allocator arenas at most (glibc's default is 8 per core).
const ARENAS: libc::c_int = 4;

/// Sets the allocator up for a daemon whose memory must follow its working set. Call it before
/// any thread starts.
///
/// - Few arenas: each thread that allocates under contention gets an arena of its own, and a
///   walk's listings and names then lie in up to 16 of them, each kept resident by a few live
///   blocks between freed ones. After a walk of 1,000,000 entries was forgotten, RSS stayed
///   31–49 MiB over the start with the default; with 4 arenas, 17 MiB.
/// - A fixed threshold for own mappings: glibc raises it after a big block is freed, and fuser's
///   16 MiB request buffers (one per FUSE thread) then come from the arenas, where fewer arenas
///   mean recycled memory that must be zeroed: the daemon started at 45 MiB instead of 11.
pub fn tune_allocator() {
    // SAFETY: mallopt only changes allocator parameters; called before other threads exist.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, OWN_MAPPING_FROM);
        libc::mallopt(libc::M_ARENA_MAX, ARENAS);
    }
}

/// Starts the trimmer thread.
pub fn start_trimmer() {
    let spawned = std::thread::Builder::new().name("memory".into()).spawn(|| {
        let mut rounds = 0;
        loop {
            std::thread::sleep(CHECK_EVERY);
            rounds += 1;
            if WANTED.swap(false, Ordering::Relaxed) || rounds >= TRIM_ANYWAY {
                rounds = 0;
                // SAFETY: malloc_trim has no preconditions; it returns free pages to the system.
                unsafe { libc::malloc_trim(0) };
            }
        }
    });
    if let Err(e) = spawned {
        tracing::debug!("no memory trimmer: {e}");
    }
}

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

/// Starts the trimmer thread. (Fewer allocator arenas, `M_ARENA_MAX` 4, were tried: the
/// daemon then started at 45 MiB instead of 11.)
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

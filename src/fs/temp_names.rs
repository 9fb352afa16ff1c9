//! Temporary upload names: hidden, unique, in the file's own directory, and recognisable as
//! this daemon's (so listings hide them) without ever exceeding NAME_MAX.

use std::sync::atomic::{AtomicU64, Ordering};

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Whether `name` is one of this daemon's temporary upload names (see [`temp_name`]).
/// Others' (another mount's, or a killed daemon's leftovers) stay visible.
pub fn is_own_temp(name: &str) -> bool {
    let Some(rest) = name.strip_prefix('.').and_then(|n| n.strip_suffix(".part")) else { return false };
    let Some((_, tail)) = rest.rsplit_once(".ftpmount-") else { return false };
    let own = std::process::id().to_string();
    tail.split_once('-').is_some_and(|(pid, n)| pid == own && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// `dir/.name.ftpmount-PID-N.part`: hidden, in the same directory, unique, and never longer
/// than 255 bytes (NAME_MAX): a long name is cut (see [`short_temp_stem`]).
pub fn temp_name(path: &str) -> String {
    let (dir, name) = super::split(path);
    let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let suffix = format!(".ftpmount-{}-{n}.part", std::process::id());
    let temp = format!(".{}{suffix}", short_temp_stem(name, super::NAME_MAX - 1 - suffix.len()));
    if dir.is_empty() { temp } else { format!("{dir}/{temp}") }
}

/// `name` if it fits in `max` bytes, else its longest prefix (cut on a character boundary)
/// that fits with `~` and 8 hex digits of a hash of the whole name: still recognisable.
pub fn short_temp_stem(name: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if name.len() <= max {
        return name.into();
    }
    // FNV-1a: stable across runs and platforms.
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3));
    let mut cut = max.saturating_sub(9);
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}~{:08x}", &name[..cut], hash as u32).into()
}

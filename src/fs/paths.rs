//! Paths inside the mount (`a/b/c`, no leading slash; the root is `""`): joining, splitting,
//! showing, and the limits on names.

use super::{MAX_FILE_SIZE, Result};
use crate::error::FsError;

/// The mount-relative path of `name` in `dir` (`""` is the root).
pub fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() { name.to_string() } else { format!("{dir}/{name}") }
}

/// A mount-relative path as users see it: `/a/b`.
pub fn shown(path: &str) -> String {
    format!("/{path}")
}

/// The longest name a directory entry may have, in bytes (Linux NAME_MAX).
pub const NAME_MAX: usize = 255;

/// The EFBIG error for a size over [`MAX_FILE_SIZE`].
pub fn too_big(size: u64) -> FsError {
    FsError::TooBig(format!("{size} bytes is more than this mount can hold (at most {MAX_FILE_SIZE} bytes, 8 TiB)"))
}

/// A name longer than [`NAME_MAX`] bytes: ENAMETOOLONG before any command.
pub fn check_name_length(name: &str) -> Result<()> {
    if name.len() > NAME_MAX {
        return Err(FsError::NameTooLong(format!(
            "{}…: the name has {} bytes; names may have at most {NAME_MAX}",
            name.chars().take(40).collect::<String>(),
            name.len()
        )));
    }
    Ok(())
}

/// `("a/b", "c")` for `"a/b/c"`, `("", "c")` for `"c"`.
pub fn split(path: &str) -> (&str, &str) {
    path.rsplit_once('/').unwrap_or(("", path))
}

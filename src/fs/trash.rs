//! No trash on the server. A file manager's "Move to Trash" on a mount goes through GLib's
//! `g_file_trash`, which makes `$topdir/.Trash-$uid/{files,info}` at the mount's root (or
//! `$topdir/.Trash/$uid` where a sticky `.Trash` exists) and moves the file there. On an FTP
//! share that root is shared: every user of the account sees the folder, emptying the trash
//! leaves the folders behind, and browsing the trash downloads the files.
//!
//! So nothing new is made at or below `/.Trash` or `/.Trash-<digits>`: GLib's `mkdir` fails,
//! and it reports "Unable to find or create trash directory" as `G_IO_ERROR_NOT_SUPPORTED`
//! (`g_local_file_trash` in glib's gio/glocalfile.c), on which file managers offer to delete
//! permanently, as they do on GVfs's own ftp:// backend, which has no trash at all.

use crate::error::FsError;

/// True for the mount-relative path `dir/name` when it is a trash folder at the mount's root
/// or anything below one.
pub fn is_trash(dir: &str, name: &str) -> bool {
    let top = if dir.is_empty() { name } else { dir.split('/').next().unwrap_or(dir) };
    top == ".Trash"
        || top.strip_prefix(".Trash-").is_some_and(|uid| !uid.is_empty() && uid.bytes().all(|b| b.is_ascii_digit()))
}

/// Refuses to make `dir/name` when it is (in) a trash folder: ENOTSUP.
pub fn refuse(dir: &str, name: &str) -> Result<(), FsError> {
    if is_trash(dir, name) {
        let path = super::shown(&super::join(dir, name));
        tracing::debug!("refused to make {path}: no trash folders on the server");
        return Err(FsError::NoTrash(path));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trash_folders_at_the_root_and_below_are_recognised() {
        assert!(is_trash("", ".Trash-0"));
        assert!(is_trash("", ".Trash-1000"));
        assert!(is_trash("", ".Trash"));
        assert!(is_trash(".Trash-1000", "info"));
        assert!(is_trash(".Trash-1000/files", "photo.jpg"));
        assert!(is_trash(".Trash", "1000"));
        assert!(!is_trash("", ".Trash-"), "no uid");
        assert!(!is_trash("", ".Trash-me"));
        assert!(!is_trash("", ".Trashcan"));
        assert!(!is_trash("docs", ".Trash-1000"), "only at the mount's root (GLib's topdir)");
        assert!(!is_trash("", "Trash"));
        assert_eq!(refuse("", ".Trash-0").unwrap_err().errno(), libc::ENOTSUP);
        assert!(refuse("", "ok").is_ok());
    }

    /// What `g_file_trash` does on a mount, step by step: every step that would make
    /// something on the server fails, and nothing is made.
    #[test]
    fn glibs_trash_steps_create_nothing_on_the_server() {
        use crate::fs::OpenMode;
        use crate::fs::inode::ROOT;
        use crate::remote::fake::FakeRemote;
        use std::sync::Arc;

        let fake = Arc::new(FakeRemote::new());
        fake.add_file("photo.jpg", b"jpeg", std::time::SystemTime::now());
        fake.add_dir("docs");
        let fs = crate::fs::tests::fs_with(fake.clone());
        let before = fake.paths();
        for name in [".Trash-1000", ".Trash"] {
            assert_eq!(fs.mkdir(ROOT, name).unwrap_err().errno(), libc::ENOTSUP, "{name}");
        }
        let create = OpenMode { write: true, truncate: true, ..Default::default() };
        assert_eq!(fs.create(ROOT, ".Trash-1000", create, true).unwrap_err().errno(), libc::ENOTSUP);
        assert_eq!(fs.rename(ROOT, "photo.jpg", ROOT, ".Trash-1000", false).unwrap_err().errno(), libc::ENOTSUP);
        assert_eq!(fake.paths(), before, "nothing made, nothing moved");
        // A folder of that name anywhere else is an ordinary folder.
        let docs = fs.lookup(ROOT, "docs").unwrap().ino;
        fs.mkdir(docs, ".Trash-1000").unwrap();
    }

    /// A trash folder an earlier mount (or another client) made stays readable and removable,
    /// but nothing new goes into it.
    #[test]
    fn an_existing_trash_folder_takes_nothing_new_but_can_be_emptied() {
        use crate::fs::OpenMode;
        use crate::fs::inode::ROOT;
        use crate::remote::fake::FakeRemote;
        use std::sync::Arc;

        let fake = Arc::new(FakeRemote::new());
        fake.add_file(".Trash-1000/files/old.txt", b"old", std::time::SystemTime::now());
        fake.add_dir(".Trash-1000/info");
        fake.add_file("new.txt", b"new", std::time::SystemTime::now());
        let fs = crate::fs::tests::fs_with(fake.clone());
        let trash = fs.lookup(ROOT, ".Trash-1000").unwrap().ino;
        let info = fs.lookup(trash, "info").unwrap().ino;
        let files = fs.lookup(trash, "files").unwrap().ino;
        let create = OpenMode { write: true, truncate: true, ..Default::default() };
        assert_eq!(fs.create(info, "new.txt.trashinfo", create, true).unwrap_err().errno(), libc::ENOTSUP);
        assert_eq!(fs.rename(ROOT, "new.txt", files, "new.txt", false).unwrap_err().errno(), libc::ENOTSUP);
        // Restoring (moving out) and emptying work.
        fs.rename(files, "old.txt", ROOT, "old.txt", false).unwrap();
        fs.rmdir(trash, "files").unwrap();
        fs.rmdir(trash, "info").unwrap();
        fs.rmdir(ROOT, ".Trash-1000").unwrap();
        assert_eq!(fake.file("old.txt").as_deref(), Some(&b"old"[..]));
        assert!(fake.paths().iter().all(|p| !p.starts_with(".Trash")), "{:?}", fake.paths());
    }
}

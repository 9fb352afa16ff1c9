//! The filesystem layer's error type and the one table that turns errors into errno values.

use crate::remote::RemoteError;

#[derive(Debug, thiserror::Error)]
pub enum FsError {
    #[error("no such file or directory")]
    NotFound,
    #[error("not a directory")]
    NotDir,
    #[error("is a directory")]
    IsDir,
    #[error("read-only file system")]
    ReadOnly,
    #[error("invalid argument: {0}")]
    Invalid(String),
    /// A new name the server's charset has no bytes for (`--encoding`).
    #[error("{0}")]
    Unrepresentable(String),
    #[error("not supported: {0}")]
    Unsupported(&'static str),
    #[error("unknown file handle")]
    BadHandle,
    /// A new name differs only in case from an existing one (`--case-collisions reject`).
    #[error("{0}")]
    CaseCollision(String),
    /// A name longer than 255 bytes (NAME_MAX).
    #[error("{0}")]
    NameTooLong(String),
    /// An operation FTP cannot do at all (symbolic links, hard links, devices).
    #[error("operation not permitted: {0}")]
    NotPermitted(&'static str),
    /// A size beyond what the mount can hold (see `fs::MAX_FILE_SIZE`).
    #[error("{0}")]
    TooBig(String),
    /// A trash folder (`.Trash`, `.Trash-UID`) at the mount's root: never made on the server
    /// (see `fs::trash`). ENOTSUP, which GLib reports as "trashing not supported".
    #[error(
        "not supported: {0} would be a trash folder on the server; ftpmount keeps none (delete permanently instead)"
    )]
    NoTrash(String),
    #[error(transparent)]
    Remote(#[from] RemoteError),
}

impl FsError {
    pub fn errno(&self) -> i32 {
        use RemoteError as R;
        match self {
            FsError::NotFound => libc::ENOENT,
            FsError::NotDir => libc::ENOTDIR,
            FsError::IsDir => libc::EISDIR,
            FsError::ReadOnly => libc::EROFS,
            FsError::Invalid(_) => libc::EINVAL,
            FsError::Unrepresentable(_) => libc::EILSEQ,
            FsError::Unsupported(_) => libc::ENOTSUP,
            FsError::BadHandle => libc::EBADF,
            FsError::CaseCollision(_) => libc::EEXIST,
            FsError::NameTooLong(_) => libc::ENAMETOOLONG,
            FsError::NotPermitted(_) => libc::EPERM,
            FsError::TooBig(_) => libc::EFBIG,
            FsError::NoTrash(_) => libc::ENOTSUP,
            FsError::Remote(r) => match r {
                R::NotFound(_) => libc::ENOENT,
                R::PermissionDenied(_) | R::Login(_) => libc::EACCES,
                R::NoSpace(_) => libc::ENOSPC,
                R::NotADirectory(_) => libc::ENOTDIR,
                R::AlreadyExists(_) => libc::EEXIST,
                R::NotEmpty(_) => libc::ENOTEMPTY,
                R::IsADirectory(_) => libc::EISDIR,
                R::Unsupported(_) => libc::ENOTSUP,
                R::NameTooLong(_) => libc::ENAMETOOLONG,
                R::Timeout(_) | R::Connection(_) | R::Tls(_) | R::TooManyConnections(_) | R::Protocol(_) => libc::EIO,
            },
        }
    }

    /// A name for the kind of failure, for "first of each kind" logging and `status`.
    pub fn kind(&self) -> &'static str {
        use RemoteError as R;
        match self {
            FsError::NotFound => "not found",
            FsError::NotDir => "not a directory",
            FsError::IsDir => "is a directory",
            FsError::ReadOnly => "read-only",
            FsError::Invalid(_) => "invalid argument",
            FsError::Unrepresentable(_) => "name not in the server's charset",
            FsError::Unsupported(_) => "not supported",
            FsError::BadHandle => "bad handle",
            FsError::CaseCollision(_) => "case collision",
            FsError::NameTooLong(_) => "name too long",
            FsError::NotPermitted(_) => "not permitted",
            FsError::TooBig(_) => "file too large",
            FsError::NoTrash(_) => "no trash on the server",
            FsError::Remote(r) => match r {
                R::NotFound(_) => "not found",
                R::PermissionDenied(_) => "permission denied",
                R::NoSpace(_) => "no space",
                R::NotADirectory(_) => "not a directory",
                R::AlreadyExists(_) => "exists",
                R::NotEmpty(_) => "not empty",
                R::IsADirectory(_) => "is a directory",
                R::Timeout(_) => "timeout",
                R::Connection(_) => "connection",
                R::Tls(_) => "TLS",
                R::Login(_) => "login",
                R::TooManyConnections(_) => "too many connections",
                R::Unsupported(_) => "not supported",
                R::NameTooLong(_) => "name too long",
                R::Protocol(_) => "protocol",
            },
        }
    }

    /// Expected outcomes (a missing file) are not worth a warning in the log.
    pub fn is_routine(&self) -> bool {
        matches!(
            self,
            FsError::NotFound
                | FsError::NotDir
                | FsError::IsDir
                | FsError::CaseCollision(_) // logged where it is decided
                | FsError::NameTooLong(_)
                | FsError::NotPermitted(_)
                | FsError::TooBig(_)
                | FsError::NoTrash(_) // a policy, asked for by every "Move to Trash"
                | FsError::Remote(RemoteError::NotFound(_))
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_errors_map_to_the_errno_applications_expect() {
        let e = |r: RemoteError| FsError::Remote(r).errno();
        assert_eq!(e(RemoteError::NotFound("x".into())), libc::ENOENT);
        assert_eq!(e(RemoteError::PermissionDenied("x".into())), libc::EACCES);
        assert_eq!(e(RemoteError::NoSpace("x".into())), libc::ENOSPC);
        assert_eq!(e(RemoteError::Timeout("x".into())), libc::EIO);
        assert_eq!(e(RemoteError::Connection("x".into())), libc::EIO);
        assert_eq!(FsError::ReadOnly.errno(), libc::EROFS);
        assert_eq!(e(RemoteError::NameTooLong("x".into())), libc::ENAMETOOLONG);
        assert_eq!(FsError::NameTooLong("x".into()).errno(), libc::ENAMETOOLONG);
        assert_eq!(FsError::TooBig("x".into()).errno(), libc::EFBIG);
        assert_eq!(FsError::NotPermitted("x").errno(), libc::EPERM);
    }
}

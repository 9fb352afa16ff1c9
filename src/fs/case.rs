//! Case rules of a mount: whether the server folds case (found out by a probe at mount), and
//! what to do when a new name differs only in case from one already in its directory.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::Deserialize;

use crate::casefold::{self, Folding};
use crate::remote::{Entry, Kind, Remote, RemoteError};

/// `--case-collisions`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CollisionPolicy {
    /// Log a warning naming both paths, then go on.
    Warn,
    /// Refuse the new name with "File exists" (EEXIST) and log why.
    Reject,
    /// No checks.
    Off,
}

/// `--case-insensitive-server`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServerCase {
    /// Find out at mount with a probe (or, read-only, from listings).
    #[default]
    Auto,
    Yes,
    No,
}

/// How this mount treats names that differ only in case: the policy, how names fold, and
/// whether the server folds them itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CaseRules {
    /// What a collision does (`--case-collisions`).
    pub policy: CollisionPolicy,
    /// The server treats names that fold equal as one name.
    pub server_folds: bool,
    /// Which names count as the same.
    pub folding: Folding,
}

impl CaseRules {
    /// Without an explicit policy: `reject` where a collision is an overwrite (a server that
    /// folds case), `warn` elsewhere.
    pub fn new(policy: Option<CollisionPolicy>, server_folds: bool, folding: Folding) -> Self {
        let default = if server_folds { CollisionPolicy::Reject } else { CollisionPolicy::Warn };
        CaseRules { policy: policy.unwrap_or(default), server_folds, folding }
    }

    /// Case-sensitive server, no checks: what a mount without this layer would do.
    pub fn none() -> Self {
        CaseRules { policy: CollisionPolicy::Off, server_folds: false, folding: Folding::Unicode }
    }

    /// Whether a lookup of `readme` may find `README` (on a server that folds case). Not under
    /// `reject`: a tool that finds `docs` when it asked for it would write into `Docs` and
    /// merge the two, which is what `reject` exists to prevent.
    pub fn folded_lookups(&self) -> bool {
        self.server_folds && self.policy != CollisionPolicy::Reject
    }

    /// Whether listings need an index by folded name.
    pub fn needs_index(&self) -> bool {
        self.policy != CollisionPolicy::Off || self.server_folds
    }

    /// What a collision costs, for messages.
    pub fn consequence(&self) -> &'static str {
        if self.server_folds {
            "this server treats them as one name, so one would overwrite the other (or merge into it)"
        } else {
            "they become one name on Windows, macOS and other case-insensitive systems (files overwritten, folders merged)"
        }
    }
}

/// What the mount found out about the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detection {
    pub server_folds: bool,
    /// How we know, for the log.
    pub how: String,
}

/// Finds out whether the server folds case: creates a uniquely named empty file, asks for it
/// in upper case, deletes it. Without write access, looks at the root's listing instead.
pub fn detect(remote: &dyn Remote, may_write: bool) -> Detection {
    if may_write {
        match probe_with_file(remote) {
            Ok(d) => return d,
            Err(e) => tracing::debug!("case probe with a temporary file failed ({e}); looking at listings instead"),
        }
    }
    probe_with_listing(remote)
}

fn probe_with_file(remote: &dyn Remote) -> Result<Detection, RemoteError> {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    let name = format!(".ftpmount-case-probe-{}-{nanos:x}", std::process::id());
    let upper = name.to_ascii_uppercase();
    remote.open_write(&name, false)?.finish()?;
    let found = file_found_as(remote, &name, &upper);
    if let Err(e) = remote.delete(&name) {
        tracing::warn!("could not remove the case probe file /{name}: {e}; remove it by hand");
    }
    Ok(match found {
        Some(true) => Detection { server_folds: true, how: format!("a file created as {name} was found as {upper}") },
        Some(false) => {
            Detection { server_folds: false, how: format!("a file created as {name} was not found as {upper}") }
        }
        None => return Err(RemoteError::Unsupported("no command told whether the probe file exists".into())),
    })
}

/// Whether the server finds the file `name` under the spelling `other`: asked with SIZE,
/// MDTM, then RETR, each trusted only if it finds `name` itself (some servers refuse SIZE of
/// an empty file, or in ASCII mode, with the same 550 as for a missing one).
fn file_found_as(remote: &dyn Remote, name: &str, other: &str) -> Option<bool> {
    let by_size = |p: &str| remote.size(p).map(|s| s.is_some());
    let by_mdtm = |p: &str| remote.mtime(p).map(|t| t.is_some());
    let by_retr = |p: &str| remote.open_read(p, 0).map(|_| true);
    type Exists<'a> = &'a dyn Fn(&str) -> Result<bool, RemoteError>;
    let methods: [Exists; 3] = [&by_size, &by_mdtm, &by_retr];
    for exists in methods {
        if !matches!(exists(name), Ok(true)) {
            continue;
        }
        match exists(other) {
            Ok(true) => return Some(true),
            Err(RemoteError::NotFound(_)) => return Some(false),
            _ => {}
        }
    }
    None
}

fn probe_with_listing(remote: &dyn Remote) -> Detection {
    let unknown = |why: String| Detection {
        server_folds: false,
        how: format!("{why}; assuming case-sensitive (set --case-insensitive-server yes|no to be sure)"),
    };
    let entries = match remote.list("") {
        Ok(e) => e,
        Err(e) => return unknown(format!("the root could not be listed ({e})")),
    };
    let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
    if let Some(group) = casefold::collision_groups(names.iter().copied(), Folding::Ascii).first() {
        return Detection { server_folds: false, how: format!("the root lists both {}", group.join(" and ")) };
    }
    // Ask for an existing entry with its case swapped.
    for e in entries.iter().filter(|e| matches!(e.kind, Kind::File | Kind::Dir)).take(3) {
        let swapped = swap_case(&e.name);
        if swapped == e.name {
            continue;
        }
        let answer = match e.kind {
            Kind::Dir => match remote.list(&swapped) {
                Ok(_) => Some(true),
                Err(RemoteError::NotFound(_)) => Some(false),
                Err(_) => None,
            },
            _ => file_found_as(remote, &e.name, &swapped),
        };
        if let Some(folds) = answer {
            let verb = if folds { "was" } else { "was not" };
            return Detection { server_folds: folds, how: format!("{} {verb} found as {swapped}", describe(e)) };
        }
    }
    unknown("the root has no entry to test with".into())
}

fn describe(e: &Entry) -> String {
    match e.kind {
        Kind::Dir => format!("the directory {}", e.name),
        _ => format!("the file {}", e.name),
    }
}

fn swap_case(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_lowercase() { c.to_ascii_uppercase() } else { c.to_ascii_lowercase() }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::fake::{FakeRemote, Fault};

    #[test]
    fn default_policy_is_reject_where_the_server_folds_and_warn_elsewhere() {
        assert_eq!(CaseRules::new(None, true, Folding::Unicode).policy, CollisionPolicy::Reject);
        assert_eq!(CaseRules::new(None, false, Folding::Unicode).policy, CollisionPolicy::Warn);
        assert_eq!(CaseRules::new(Some(CollisionPolicy::Off), true, Folding::Unicode).policy, CollisionPolicy::Off);
    }

    #[test]
    fn folded_lookups_only_on_a_folding_server_and_never_under_reject() {
        assert!(CaseRules::new(Some(CollisionPolicy::Warn), true, Folding::Unicode).folded_lookups());
        assert!(CaseRules::new(Some(CollisionPolicy::Off), true, Folding::Unicode).folded_lookups());
        assert!(!CaseRules::new(Some(CollisionPolicy::Reject), true, Folding::Unicode).folded_lookups());
        assert!(!CaseRules::new(Some(CollisionPolicy::Warn), false, Folding::Unicode).folded_lookups());
    }

    #[test]
    fn the_probe_tells_folding_servers_apart_and_leaves_nothing_behind() {
        for folds in [false, true] {
            let fake = FakeRemote::new();
            fake.set_case_insensitive(folds);
            fake.add_file("keep.txt", b"x", SystemTime::now());
            let d = detect(&fake, true);
            assert_eq!(d.server_folds, folds, "{}", d.how);
            let names: Vec<String> = fake.list("").unwrap().into_iter().map(|e| e.name).collect();
            assert_eq!(names, ["keep.txt"], "the probe file is gone");
        }
    }

    #[test]
    fn a_server_that_refuses_size_is_still_judged_right() {
        for folds in [false, true] {
            let fake = FakeRemote::new();
            fake.set_case_insensitive(folds);
            fake.inject(Fault::RefuseSize);
            assert_eq!(detect(&fake, true).server_folds, folds);
        }
    }

    #[test]
    fn read_only_servers_are_judged_from_listings() {
        for folds in [false, true] {
            let fake = FakeRemote::new();
            fake.set_case_insensitive(folds);
            fake.add_file("Report.pdf", b"x", SystemTime::now());
            let d = detect(&fake, false);
            assert_eq!(d.server_folds, folds, "{}", d.how);
            assert!(d.how.contains("rEPORT.PDF"), "{}", d.how);
        }
        let fake = FakeRemote::new();
        fake.add_file("Docs", b"x", SystemTime::now());
        fake.add_file("docs", b"y", SystemTime::now());
        let d = detect(&fake, false);
        assert!(!d.server_folds && d.how.contains("Docs and docs"), "{}", d.how);
        let empty = FakeRemote::new();
        let d = detect(&empty, false);
        assert!(!d.server_folds && d.how.contains("assuming case-sensitive"), "{}", d.how);
    }
}

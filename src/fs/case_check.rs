//! The case-folding checks of the filesystem core: refusing or warning about new names that
//! differ only in case from existing ones, folded lookups on servers that fold case, and
//! case-only renames. The rules themselves (policy, detection) are in `case`.

use super::case::CollisionPolicy;
use super::dircache::Listing;
use super::{CASE_CHECK_FRESHNESS, Fs, MAX_WARNED, Result, join, shown, split};
use crate::error::FsError;
use crate::remote::Entry;
use std::time::Instant;

impl Fs {
    /// True the first time `key` is seen: one warning per directory or name per mount.
    fn first_warning(&self, key: String) -> bool {
        let mut warned = self.case_warned.lock();
        warned.len() < MAX_WARNED && warned.insert(key)
    }

    /// A directory that already holds names colliding under folding: one warning per mount.
    pub(super) fn warn_listed_collisions(&self, dir: &str, listing: &Listing) {
        if self.config.case.policy == CollisionPolicy::Off {
            return;
        }
        if !listing.has_collisions() || !self.first_warning(format!("dir:{dir}")) {
            return;
        }
        let groups = listing.collision_groups();
        let listed: Vec<String> = groups.iter().take(5).map(|g| g.join(" / ")).collect();
        let more = if groups.len() > 5 { format!(" and {} more", groups.len() - 5) } else { String::new() };
        tracing::warn!(
            "{} holds names that differ only in case: {}{more}; {}",
            shown(dir),
            listed.join(", "),
            self.config.case.consequence()
        );
    }

    /// Refuses or warns about `name` as a new name in `dir` when another name there folds to
    /// the same one. `moving` is the entry being renamed within `dir` (a case-only rename of
    /// it is no collision).
    pub(super) fn check_case(&self, dir: &str, name: &str, moving: Option<&str>) -> Result<()> {
        let rules = self.config.case;
        if rules.policy == CollisionPolicy::Off {
            return Ok(());
        }
        let mut others: Vec<String> =
            self.names_folding_like(dir, name)?.into_iter().filter(|n| Some(n.as_str()) != moving).collect();
        // Files created but not uploaded yet are names too.
        for path in self.writing.lock().keys() {
            let (d, n) = split(path);
            if d == dir
                && n != name
                && Some(n) != moving
                && crate::casefold::collide(n, name, rules.folding)
                && !others.iter().any(|o| o == n)
            {
                others.push(n.to_string());
            }
        }
        if others.is_empty() {
            return Ok(());
        }
        let new = shown(&join(dir, name));
        let existing: Vec<String> = others.iter().map(|o| shown(&join(dir, o))).collect();
        let existing = existing.join(" and ");
        match rules.policy {
            CollisionPolicy::Reject => {
                let msg = format!(
                    "refused to create {new}: {existing} differs only in case; {} (--case-collisions reject; rename one of them, or choose --case-collisions warn)",
                    rules.consequence()
                );
                tracing::warn!("{msg}");
                Err(FsError::CaseCollision(msg))
            }
            _ => {
                tracing::warn!("case collision: {new} and {existing} differ only in case; {}", rules.consequence());
                Ok(())
            }
        }
    }

    /// The other names in `dir` that fold like `name`, from a listing no older than
    /// `CASE_CHECK_FRESHNESS`. A cached listing older than that is checked against the server's
    /// current names (one LIST, no per-file commands) and trusted again if they agree.
    fn names_folding_like(&self, dir: &str, name: &str) -> Result<Vec<String>> {
        let listing = self.listing(dir)?;
        let now = self.clock.now();
        let recent = |t: Instant| now.saturating_duration_since(t) < CASE_CHECK_FRESHNESS;
        let confirmed = self.case_confirmed.lock().get(dir).copied();
        if !recent(listing.fetched()) && !confirmed.is_some_and(recent) {
            let names = self.remote.list_names(dir)?;
            let same = names.len() == listing.entries().len() && names.iter().all(|n| listing.get(n).is_some());
            if !same {
                // Someone else changed the directory: the cached listing is stale.
                self.dirs.invalidate(dir);
                let folding = self.config.case.folding;
                return Ok(names.into_iter().filter(|n| crate::casefold::collide(n, name, folding)).collect());
            }
            self.case_confirmed.lock().insert(dir.to_string(), now);
        }
        Ok(listing.case_variants(name).into_iter().map(String::from).collect())
    }

    /// On a server that folds case, the one entry whose name folds to `name`.
    pub(super) fn folded_match(&self, dir: &str, listing: &Listing, name: &str) -> Option<Entry> {
        let variants = listing.case_variants(name);
        let [only] = variants.as_slice() else { return None };
        let entry = listing.get(only)?.clone();
        if self.config.case.policy == CollisionPolicy::Warn && self.first_warning(format!("lookup:{dir}/{name}")) {
            tracing::warn!(
                "{} was asked for and {} answered: the server folds case, so both names are one file",
                shown(&join(dir, name)),
                shown(&join(dir, only))
            );
        }
        Some(entry)
    }

    /// Whether `path` is inside `dir` when names are compared folded.
    pub(super) fn folds_into(&self, path: &str, dir: &str) -> bool {
        let f = self.config.case.folding;
        crate::casefold::fold(path, f).starts_with(&format!("{}/", crate::casefold::fold(dir, f)))
    }

    /// Renames to a name that differs only in case. A server that folds case may take the
    /// new name for the old one and do nothing (or refuse), so it goes via a temporary name.
    pub(super) fn rename_case_only(&self, from: &str, to: &str) -> Result<()> {
        if !self.config.case.server_folds {
            return Ok(self.remote.rename(from, to)?);
        }
        let temp = super::temp_names::temp_name(from);
        self.remote.rename(from, &temp)?;
        if let Err(e) = self.remote.rename(&temp, to) {
            if let Err(back) = self.remote.rename(&temp, from) {
                tracing::error!(
                    "renaming {} to {} failed ({e}); it is now {} ({back})",
                    shown(from),
                    shown(to),
                    shown(&temp)
                );
            }
            return Err(e.into());
        }
        Ok(())
    }
}

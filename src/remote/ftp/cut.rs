//! Listings the server cuts short. Pure-FTPd stops every MLSD, NLST and LIST at 10,000 entries
//! (its `-L max_files:max_depth`, default 10000:5) and says so only in the text of the final
//! reply (`226 Output truncated to 10000 matches`). What it still allows: `LIST` sorts names
//! (strcmp) before it cuts, and `LIST -r` sorts them the other way, so `LIST -a` and `LIST -ar`
//! are both ends of the name order; when they meet, together they are the whole directory (up
//! to twice the limit). Glob patterns do not help there: its glob stops reading a directory
//! after limit + 2 entries and then lists nothing ("Out of memory during globbing"), whatever
//! the pattern. Beyond that the listing stays incomplete, is marked so, and the log says what
//! to do; single names can still be asked for (`MLST`, see [`FtpRemote::lookup_entry`]).

use std::collections::HashSet;
use std::num::NonZeroUsize;
use std::sync::atomic::Ordering;

use super::listing::{self, EntryKind, ListEntry};
use super::session::Received;
use super::{FtpRemote, parse_listing, to_entry};
use crate::remote::{Entry, RemoteError, Result};

/// The two ends of a listing cut short, joined: `first` as listed from the start of the name
/// order (ascending bytes, `key`), `last` from its end (`-r`, descending). When each is in its
/// order and they share a name, no name can lie between them: together they are the whole
/// directory. Returns the union (in name order when they are ordered) and whether it is whole.
pub fn join_windows(
    first: Vec<ListEntry>,
    last: Vec<ListEntry>,
    key: impl Fn(&str) -> Option<Vec<u8>>,
) -> (Vec<ListEntry>, bool) {
    let ordered = |entries: &[ListEntry], ascending: bool| {
        let keys: Option<Vec<Vec<u8>>> = entries.iter().map(|e| key(&e.name)).collect();
        keys.is_some_and(|k| k.windows(2).all(|w| if ascending { w[0] < w[1] } else { w[0] > w[1] }))
    };
    let in_order = ordered(&first, true) && ordered(&last, false);
    let seen: HashSet<String> = first.iter().map(|e| e.name.clone()).collect();
    let meet = last.iter().any(|e| seen.contains(&e.name));
    let mut union = first;
    union.extend(last.into_iter().rev().filter(|e| !seen.contains(&e.name)));
    (union, in_order && meet)
}

/// Gives the links among `entries` whose target is unknown (MLSD does not show it) the
/// target `list`, a LIST of the same directory, shows for the same name.
pub fn take_link_targets(entries: &mut [ListEntry], list: &[ListEntry]) {
    let targets: std::collections::HashMap<&str, &String> = list
        .iter()
        .filter_map(|e| match &e.kind {
            EntryKind::Symlink { target: Some(t) } => Some((e.name.as_str(), t)),
            _ => None,
        })
        .collect();
    for e in entries {
        if let (EntryKind::Symlink { target: None }, Some(t)) = (&e.kind, targets.get(e.name.as_str())) {
            e.kind = EntryKind::Symlink { target: Some((*t).clone()) };
        }
    }
}

/// MLSD's entries (exact facts) and LIST's, without a name twice: a name in both keeps MLSD's
/// facts and takes the link target only LIST shows.
pub fn merge_mlsd(mut mlsd: Vec<ListEntry>, list: Vec<ListEntry>) -> (Vec<ListEntry>, Vec<ListEntry>) {
    take_link_targets(&mut mlsd, &list);
    let names: HashSet<&str> = mlsd.iter().map(|e| e.name.as_str()).collect();
    let rest = list.into_iter().filter(|e| !names.contains(e.name.as_str())).collect();
    (mlsd, rest)
}

/// A directory's entries as fetched: MLSD's (exact facts, UTC) and LIST's (times as listed),
/// no name in both.
#[derive(Debug, Default)]
pub(super) struct Fetched {
    pub mlsd: Vec<ListEntry>,
    pub list: Vec<ListEntry>,
    /// False when the server cut the listing short and the rest could not be had.
    pub complete: bool,
    /// A Unix listing was read (its link targets are in already).
    pub list_seen: bool,
    /// The commands that made it, for the log (`MLSD, LIST -a, LIST -ar`).
    pub tried: Vec<String>,
}

impl Fetched {
    fn new(mlsd: Vec<ListEntry>, list: Vec<ListEntry>, complete: bool, tried: Vec<String>) -> Fetched {
        let list_seen = !list.is_empty();
        let (mlsd, list) = merge_mlsd(mlsd, list);
        Fetched { mlsd, list, complete, list_seen, tried }
    }

    pub fn len(&self) -> usize {
        self.mlsd.len() + self.list.len()
    }
}

/// Directories whose listings the server cut short, for the log (once per directory and
/// outcome) and `status`.
pub(super) struct CutDirs {
    /// The server's words, the first time.
    notice: Option<String>,
    /// Directory → (listed whole, entries shown).
    dirs: lru::LruCache<String, (bool, usize)>,
}

impl Default for CutDirs {
    fn default() -> Self {
        CutDirs { notice: None, dirs: lru::LruCache::new(NonZeroUsize::new(256).expect("not zero")) }
    }
}

impl CutDirs {
    /// Records `dir`'s outcome; true when it is new (the log should say it).
    fn record(&mut self, dir: &str, notice: &str, complete: bool, shown: usize) -> bool {
        self.notice.get_or_insert_with(|| notice.to_string());
        let before = self.dirs.put(dir.to_string(), (complete, shown));
        before.is_none_or(|(was, _)| was != complete)
    }

    /// For `status` and `check`: the server's words and where it mattered.
    pub fn describe(&self) -> Option<String> {
        let notice = self.notice.as_ref()?;
        let pick = |whole: bool| {
            let dirs: Vec<String> = self
                .dirs
                .iter()
                .filter(|(_, (c, _))| *c == whole)
                .map(|(d, (_, n))| if whole { d.clone() } else { format!("{d} ({n} shown)") })
                .collect();
            let more = dirs.len().saturating_sub(5);
            let mut text = dirs.into_iter().take(5).collect::<Vec<_>>().join(", ");
            if more > 0 {
                text.push_str(&format!(" and {more} more"));
            }
            text
        };
        let mut out = format!("the server cuts listings short (\"{notice}\")");
        let (whole, cut) = (pick(true), pick(false));
        if !whole.is_empty() {
            out.push_str(&format!("; listed whole from both ends of the name order (LIST -a, LIST -ar): {whole}"));
        }
        if !cut.is_empty() {
            out.push_str(&format!(
                "; INCOMPLETE: {cut}: names not shown can still be opened by path; ask the server's \
                 administrator to raise the limit (Pure-FTPd: -L, e.g. -L 100000:5)"
            ));
        }
        Some(out)
    }
}

impl FtpRemote {
    /// A directory's entries and whether they are all of them. Where the server cuts the
    /// listing short, the rest is asked for (see [`FtpRemote::recover`]). `on_line` sees the
    /// first listing's lines as they arrive.
    pub(super) fn fetch(&self, path: &str, on_line: &mut dyn FnMut(&str)) -> Result<Fetched> {
        let (first, mlsd) = self.with_session(true, |s| Ok((s.list_lines_seen(path, on_line)?, s.features.mlsd)))?;
        let entries = parse_listing(path, &first.lines, mlsd);
        let Some(notice) = first.cut else {
            let (m, l) = if mlsd { (entries, Vec::new()) } else { (Vec::new(), entries) };
            return Ok(Fetched::new(m, l, true, Vec::new()));
        };
        let fetched = self.recover(path, entries, mlsd)?;
        self.note_cut(path, &notice, &fetched);
        Ok(fetched)
    }

    /// After a first listing cut short: a cut MLSD is followed by `LIST -a` (some servers cut
    /// only one of them); a cut `LIST -a` by `LIST -ar`, the other end of the name order.
    /// A command the server refuses leaves what was had, marked incomplete.
    fn recover(&self, path: &str, first: Vec<ListEntry>, mlsd: bool) -> Result<Fetched> {
        let what = format!("listing {path} again (the server cut its listing short)");
        let mut tried = vec![if mlsd { "MLSD".to_string() } else { self.list_command(false) }];
        let (from_mlsd, forward) = if mlsd {
            tried.push(self.list_command(false));
            match self.window(path, &what, false)? {
                Some(r) if r.cut.is_none() => {
                    return Ok(Fetched::new(first, parse_listing(path, &r.lines, false), true, tried));
                }
                Some(r) => (first, parse_listing(path, &r.lines, false)),
                None => return Ok(Fetched::new(first, Vec::new(), false, tried)),
            }
        } else {
            (Vec::new(), first)
        };
        tried.push(self.list_command(true));
        let Some(r) = self.window(path, &what, true)? else {
            return Ok(Fetched::new(from_mlsd, forward, false, tried));
        };
        let last = parse_listing(path, &r.lines, false);
        if r.cut.is_none() {
            return Ok(Fetched::new(from_mlsd, last, true, tried));
        }
        let (list, whole) = join_windows(forward, last, |n| self.charset.encode(n).ok());
        Ok(Fetched::new(from_mlsd, list, whole, tried))
    }

    /// `LIST -a` (or `-ar`, `reversed`); `None` when the server refused it (a server without
    /// `-r`, say): what was had then stands, marked incomplete.
    fn window(&self, path: &str, what: &str, reversed: bool) -> Result<Option<Received>> {
        match self.with_session(true, |s| s.unix_list_lines(path, what, reversed)) {
            Ok(r) => Ok(Some(r)),
            Err(e) if e.is_transient() => Err(e),
            Err(e) => {
                tracing::debug!("{e}");
                Ok(None)
            }
        }
    }

    fn list_command(&self, reversed: bool) -> String {
        let dash_a = self.pool.connector().features.get().is_none_or(|f| f.list_dash_a.load(Ordering::Relaxed));
        match (dash_a, reversed) {
            (true, false) => "LIST -a",
            (true, true) => "LIST -ar",
            (false, false) => "LIST",
            (false, true) => "LIST -r",
        }
        .to_string()
    }

    /// Logs a directory cut short, once per directory and outcome: `info` when the rest was
    /// had, `warn` with what to do when not.
    fn note_cut(&self, path: &str, notice: &str, f: &Fetched) {
        let (shown, tried) = (f.len(), f.tried.join(", "));
        if !self.cuts.lock().record(path, notice, f.complete, shown) {
            return tracing::debug!("{path}: listing cut short again (\"{notice}\"); {tried}: {shown} entries");
        }
        if f.complete {
            tracing::info!(
                "the server cut the listing of {path} short (\"{notice}\"); {tried} together gave all {shown} entries"
            );
        } else {
            tracing::warn!(
                "the listing of {path} is INCOMPLETE: the server cuts every listing short (\"{notice}\"), and {tried} \
                 together gave {shown} entries, not all of them. Names not shown can still be opened by their exact \
                 path. To see them all, ask the server's administrator to raise the limit (Pure-FTPd: -L, e.g. \
                 -L 100000:5, or LimitRecursion in pure-ftpd.conf), or split the directory into smaller ones"
            );
        }
    }
}

impl FtpRemote {
    /// `path`'s entry by `MLST` (one command, whatever the listing shows): `Some(None)` when
    /// the server says there is no such name, `None` when it has no `MLST` (then the caller
    /// looks in the listing).
    pub(super) fn lookup_entry(&self, path: &str) -> Result<Option<Option<Entry>>> {
        let p = self.server_path(path);
        let name = path.rsplit('/').next().unwrap_or(path);
        let asked = self.with_session(true, |s| {
            if !s.features.mlsd {
                return Ok(None);
            }
            match s.mlst(&p) {
                Ok(facts) => Ok(Some(facts)),
                Err(RemoteError::Unsupported(_)) => Ok(None),
                Err(e) => Err(e),
            }
        })?;
        let Some(answer) = asked else { return Ok(None) };
        let Some(line) = answer else { return Ok(Some(None)) };
        // MLST's facts name the whole path; the entry is named by its last part.
        let facts = line.split_once(' ').map_or(line.as_str(), |(f, _)| f);
        match listing::parse_mlsd_line(&format!("{facts} {name}")) {
            Ok(e) => Ok(Some(Some(to_entry(e)))),
            Err(why) => Err(RemoteError::Protocol(format!("asking about {p} (MLST): {why:?} in \"{line}\""))),
        }
    }
}

#[cfg(test)]
#[path = "cut_tests.rs"]
mod tests;

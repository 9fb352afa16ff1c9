//! The `collisions` command: walks a tree (on a server, or local such as a mounted one) and
//! reports every group of names in one directory that fold to the same name.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use crate::casefold::{self, Folding};
use crate::clock::SystemClock;
use crate::config::Options;
use crate::remote::ftp::FtpRemote;
use crate::remote::{Kind, Remote};

/// One group: names in `dir` that are one name under the folding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub dir: String,
    /// Names as listed, directories with a trailing `/`.
    pub names: Vec<String>,
}

#[derive(Debug, Default)]
pub struct Report {
    pub groups: Vec<Group>,
    pub dirs_read: usize,
    /// Directories that could not be read, with the reason.
    pub errors: Vec<String>,
}

/// Gives a directory's entries as (name, is a directory), or why it could not be read.
pub type ListDir<'a> = dyn FnMut(&str) -> Result<Vec<(String, bool)>, String> + 'a;

/// Walks the tree from `root` (a `/`-separated path, `""` for the top), depth first in name
/// order. `list` gives a directory's entries; links are not followed.
pub fn walk(root: &str, folding: Folding, list: &mut ListDir<'_>) -> Report {
    let mut report = Report::default();
    let mut stack = vec![root.trim_matches('/').to_string()];
    while let Some(dir) = stack.pop() {
        let mut entries = match list(&dir) {
            Ok(e) => e,
            Err(e) => {
                report.errors.push(format!("{}: {e}", shown(&dir)));
                continue;
            }
        };
        report.dirs_read += 1;
        entries.sort();
        let labels: Vec<String> =
            entries.iter().map(|(n, is_dir)| if *is_dir { format!("{n}/") } else { n.clone() }).collect();
        let names: Vec<&str> = entries.iter().map(|(n, _)| n.as_str()).collect();
        for group in casefold::collision_groups(names.iter().copied(), folding) {
            let names =
                group.iter().map(|g| labels[names.iter().position(|n| n == g).expect("listed")].clone()).collect();
            report.groups.push(Group { dir: shown(&dir), names });
        }
        for (name, is_dir) in entries.iter().rev() {
            if *is_dir {
                stack.push(if dir.is_empty() { name.clone() } else { format!("{dir}/{name}") });
            }
        }
    }
    report
}

fn shown(dir: &str) -> String {
    format!("/{dir}")
}

/// Entries of a local directory; symbolic links count as files (not followed).
fn list_local(base: &Path, dir: &str) -> Result<Vec<(String, bool)>, String> {
    let path = if dir.is_empty() { base.to_path_buf() } else { base.join(dir) };
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&path).map_err(|e| e.to_string())? {
        let entry = entry.map_err(|e| e.to_string())?;
        let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
        out.push((entry.file_name().to_string_lossy().into_owned(), is_dir));
    }
    Ok(out)
}

fn list_remote(remote: &dyn Remote, dir: &str) -> Result<Vec<(String, bool)>, String> {
    let entries = remote.list(dir).map_err(|e| e.to_string())?;
    Ok(entries.into_iter().map(|e| (e.name, e.kind == Kind::Dir)).collect())
}

pub struct CollisionsRequest {
    /// A local directory (a mountpoint, or any tree), or a server URL / connection label.
    pub target: String,
    pub path: Option<String>,
    pub options: Options,
    pub profile_path: Option<PathBuf>,
}

/// Exit status: 0 no collisions, 1 collisions found, 2 the tree could not (all) be read.
pub fn run(req: CollisionsRequest) -> ExitCode {
    let folding = req.options.case_folding.unwrap_or_default();
    let root = req.path.clone().unwrap_or_default();
    let local = Path::new(&req.target);
    let report = if !req.target.contains("://") && local.is_dir() {
        walk(&root, folding, &mut |dir| list_local(local, dir))
    } else {
        let prepared = match crate::mount::resolve(&req.target, req.options.clone(), req.profile_path.clone(), None) {
            Ok(p) => p,
            Err(e) => return fail(&req.target, &e),
        };
        let sessions = prepared.options.max_connections.unwrap_or(crate::mount::DEFAULT_MAX_CONNECTIONS).min(4);
        let remote = match FtpRemote::connect(prepared.endpoint, sessions, &prepared.target.path, Arc::new(SystemClock))
        {
            Ok((r, _)) => r,
            Err(e) => return fail(&req.target, &e.to_string()),
        };
        let report = walk(&root, folding, &mut |dir| list_remote(&remote, dir));
        remote.close();
        report
    };
    print_report(&report, folding);
    if !report.groups.is_empty() {
        ExitCode::from(1)
    } else if !report.errors.is_empty() {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    }
}

fn fail(target: &str, msg: &str) -> ExitCode {
    eprintln!("ftpmount: cannot check {}: {msg}", crate::config::redact(target));
    ExitCode::from(2)
}

fn print_report(report: &Report, folding: Folding) {
    for g in &report.groups {
        let names: Vec<String> = g.names.iter().map(|n| format!("{n:?}")).collect();
        println!("{}: {}", g.dir, names.join(", "));
    }
    for e in &report.errors {
        eprintln!("ftpmount: not checked: {e}");
    }
    let folding = match folding {
        Folding::Unicode => "Unicode case folding",
        Folding::Ascii => "ASCII case folding",
    };
    let summary = match report.groups.len() {
        0 => format!("no names that differ only in case ({} directories, {folding})", report.dirs_read),
        n => format!(
            "{n} group(s) of names that differ only in case ({} directories, {folding}): on a case-insensitive system each group becomes one name",
            report.dirs_read
        ),
    };
    eprintln!("{summary}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn walk_reports_each_group_with_its_directory_and_marks_folders() {
        let tree: HashMap<&str, Vec<(&str, bool)>> = HashMap::from([
            ("", vec![("Docs", true), ("docs", true), ("a.txt", false)]),
            ("Docs", vec![("MyFile.txt", false), ("myfile.txt", false), ("x", false)]),
            ("docs", vec![("Straße", false), ("STRASSE", false)]),
        ]);
        let mut list = |dir: &str| -> Result<Vec<(String, bool)>, String> {
            tree.get(dir).map(|v| v.iter().map(|(n, d)| (n.to_string(), *d)).collect()).ok_or("missing".to_string())
        };
        let report = walk("", Folding::Unicode, &mut list);
        assert_eq!(report.dirs_read, 3);
        assert_eq!(
            report.groups,
            vec![
                Group { dir: "/".into(), names: vec!["Docs/".into(), "docs/".into()] },
                Group { dir: "/Docs".into(), names: vec!["MyFile.txt".into(), "myfile.txt".into()] },
                Group { dir: "/docs".into(), names: vec!["STRASSE".into(), "Straße".into()] },
            ]
        );
        let ascii = walk("", Folding::Ascii, &mut list);
        assert_eq!(ascii.groups.len(), 2, "ß is not folded under ASCII");
        let sub = walk("/Docs", Folding::Unicode, &mut list);
        assert_eq!(sub.groups.len(), 1);
    }

    #[test]
    fn unreadable_directories_are_reported_not_fatal() {
        let mut list = |dir: &str| -> Result<Vec<(String, bool)>, String> {
            if dir.is_empty() {
                Ok(vec![("locked".into(), true), ("A".into(), false), ("a".into(), false)])
            } else {
                Err("550 Permission denied".into())
            }
        };
        let report = walk("", Folding::Unicode, &mut list);
        assert_eq!(report.groups.len(), 1);
        assert_eq!(report.errors, vec!["/locked: 550 Permission denied".to_string()]);
    }
}

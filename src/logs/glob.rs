//! Expands a `logs.files` path pattern ([`PathPattern`]) against the file system, one directory
//! level at a time, as the pods of a node come and go under `/var/log/pods`.
//!
//! Only regular files are matched at the last level (symlinks to one included) and only
//! directories before it. A file whose name says it is a rotated copy of another (kubelet's
//! `0.log.20261201-101010`, `tikv.log.1`, compressed `….gz`, temporary `….tmp`) is never a match
//! of its own: the follower of the file it was rotated from reads it, and only that follower
//! ([`super::file`]), so even a pattern such as `*.log*` cannot count a rotated file twice.

use std::io;
use std::path::{Path, PathBuf};

use super::rotated::is_rotated_copy;
use crate::domain::{Part, PathPattern, glob_match};

/// What one expansion found.
#[derive(Debug, Default)]
pub(crate) struct Expansion {
    /// Matching regular files, sorted, at most the limit given.
    pub(crate) files: Vec<PathBuf>,
    /// More files matched than the limit: the first ones (in path order) are kept.
    pub(crate) truncated: bool,
    /// Every directory that was looked into (the fixed base directory first): a change in one
    /// of them may change the expansion.
    pub(crate) dirs: Vec<PathBuf>,
    /// The first directory below the base that could not be read (for another reason than
    /// having gone meanwhile); what else was found is still in `files`.
    pub(crate) error: Option<(PathBuf, io::Error)>,
}

/// Lists the files matching `pattern` now, at most `limit`. Fails only when the base directory
/// cannot be read; directories below it that vanish meanwhile (a pod removed) are skipped,
/// other unreadable ones are reported in [`Expansion::error`].
pub(crate) fn expand(pattern: &PathPattern, limit: usize) -> io::Result<Expansion> {
    let mut out = Expansion::default();
    std::fs::read_dir(pattern.base())?;
    let mut level = vec![pattern.base().to_path_buf()];
    let parts = pattern.parts();
    for (i, part) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        let mut next = Vec::new();
        for dir in &level {
            out.dirs.push(dir.clone());
            match part {
                Part::Literal(name) => {
                    let path = dir.join(name);
                    if kind_fits(&path, last) {
                        next.push(path);
                    }
                }
                Part::Glob(glob) => match names_in(dir) {
                    Ok(mut names) => {
                        names.retain(|n| glob_match(glob, n));
                        for name in &names {
                            if last && is_rotated_copy(name, &names) {
                                continue;
                            }
                            let path = dir.join(name);
                            if kind_fits(&path, last) {
                                next.push(path);
                            }
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => {
                        if out.error.is_none() {
                            out.error = Some((dir.clone(), e));
                        }
                    }
                },
            }
        }
        next.sort();
        level = next;
    }
    out.truncated = level.len() > limit;
    level.truncate(limit);
    out.files = level;
    Ok(out)
}

/// A regular file at the last level, a directory before it (symlinks followed).
fn kind_fits(path: &Path, last: bool) -> bool {
    std::fs::metadata(path).is_ok_and(|m| if last { m.is_file() } else { m.is_dir() })
}

/// The UTF-8 names in `dir` (others cannot match a pattern).
fn names_in(dir: &Path) -> io::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let Ok(entry) = entry else { continue };
        if let Ok(name) = entry.file_name().into_string() {
            names.push(name);
        }
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expansion_follows_the_levels_and_skips_rotated_copies() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let mk = |rel: &str| {
            let p = root.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, "x\n").unwrap();
        };
        mk("tidb_basic-tikv-0_u0/tikv/0.log");
        mk("tidb_basic-tikv-0_u0/tikv/1.log");
        mk("tidb_basic-tikv-0_u0/tikv/0.log.20261201-101010");
        mk("tidb_basic-tikv-0_u0/tikv/0.log.20261201-100000.gz");
        mk("tidb_basic-tikv-0_u0/tikv/1.log.20261201-101010.tmp");
        mk("tidb_basic-tikv-0_u0/slowlog/0.log");
        mk("tidb_basic-pd-0_u1/pd/0.log");
        // The live file renamed away and not yet reopened: its copy is still no match.
        mk("tidb_basic-tikv-1_u2/tikv/0.log.20261201-101010");
        // A directory is no file.
        std::fs::create_dir_all(root.join("tidb_basic-tikv-2_u3/tikv/2.log")).unwrap();
        let p = PathPattern::parse(&root.join("*_basic-tikv-*_*/tikv/*.log*")).unwrap();
        let x = expand(&p, 10).unwrap();
        let rel: Vec<String> = x
            .files
            .iter()
            .map(|f| f.strip_prefix(root).unwrap().display().to_string())
            .collect();
        assert_eq!(
            rel,
            [
                "tidb_basic-tikv-0_u0/tikv/0.log",
                "tidb_basic-tikv-0_u0/tikv/1.log"
            ]
        );
        assert!(!x.truncated && x.error.is_none());
        assert_eq!(x.dirs[0], root);
        assert!(x.dirs.contains(&root.join("tidb_basic-tikv-1_u2/tikv")));
        assert!(!x.dirs.contains(&root.join("tidb_basic-pd-0_u1")));
        let x = expand(&p, 1).unwrap();
        assert_eq!(x.files.len(), 1);
        assert!(x.truncated);
        let missing = PathPattern::parse(&root.join("nope/*/tikv/*.log")).unwrap();
        assert_eq!(
            expand(&missing, 10).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
    }
}

//! Name and path patterns: `*` matches any run of characters and `?` one character, within one
//! name (a path component; never across `/`). Container names (`logs.docker.containers`) are
//! matched with [`glob_match`]; a `logs.files` path with a wildcard is a [`PathPattern`]
//! (expanded against the file system by `logs::glob`).

use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};

/// Whether `name` matches `pattern`, where `*` matches any run of characters and `?` one.
/// Without wildcards this is exact equality (Docker's own `name=` filter matches substrings).
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let s: Vec<char> = name.chars().collect();
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == s[si]) {
            pi += 1;
            si += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, si));
            pi += 1;
        } else if let Some((sp, ss)) = star {
            pi = sp + 1;
            si = ss + 1;
            star = Some((sp, ss + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Whether `path` is a pattern (has a `*` or `?`) rather than the path of one file.
pub fn is_pattern(path: &Path) -> bool {
    path.to_string_lossy().contains(['*', '?'])
}

/// Why a path pattern is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PatternError {
    /// `**` (any depth) is not supported.
    #[error(
        "`**` is not supported: use one `*` per directory level, e.g. /var/log/pods/*/tikv/*.log"
    )]
    AnyDepth,
    /// A wildcard outside a name (or a `..` after one), or no wildcard at all.
    #[error(
        "wildcards (`*`, `?`) must be in file or directory names, with no `.` or `..` after them"
    )]
    NotAName,
}

/// One component of a pattern after its fixed base.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Part {
    /// A name taken as it is.
    Literal(OsString),
    /// A name with wildcards, matched with [`glob_match`].
    Glob(String),
}

/// A path with wildcards, split into its fixed leading directory and the parts after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathPattern {
    /// The longest leading part without wildcards (`.` for a relative pattern starting with one).
    base: PathBuf,
    /// The components after `base`, the first of them a glob.
    parts: Vec<Part>,
}

impl PathPattern {
    /// Checks `path` (which should be [`is_pattern`]) and splits it.
    pub fn parse(path: &Path) -> Result<PathPattern, PatternError> {
        let mut base = PathBuf::new();
        let mut parts = Vec::new();
        for c in path.components() {
            let wild = c.as_os_str().to_string_lossy().contains(['*', '?']);
            if wild {
                let Component::Normal(name) = c else {
                    return Err(PatternError::NotAName);
                };
                let name = name.to_str().ok_or(PatternError::NotAName)?;
                if name.contains("**") {
                    return Err(PatternError::AnyDepth);
                }
                parts.push(Part::Glob(name.to_owned()));
            } else if parts.is_empty() {
                base.push(c);
            } else {
                match c {
                    Component::Normal(name) => parts.push(Part::Literal(name.to_owned())),
                    _ => return Err(PatternError::NotAName),
                }
            }
        }
        if parts.is_empty() {
            return Err(PatternError::NotAName);
        }
        if base.as_os_str().is_empty() {
            base.push(".");
        }
        Ok(PathPattern { base, parts })
    }

    /// The fixed leading directory.
    pub fn base(&self) -> &Path {
        &self.base
    }

    /// The components after the base, the last one naming the files.
    pub fn parts(&self) -> &[Part] {
        &self.parts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_are_exact_unless_wildcards() {
        assert!(glob_match("tikv0", "tikv0"));
        assert!(!glob_match("tikv", "tikv0"));
        assert!(!glob_match("tikv", "my-tikv"));
        assert!(glob_match("tikv-*", "tikv-0"));
        assert!(glob_match("tikv-*", "tikv-"));
        assert!(!glob_match("tikv-*", "pd-tikv-0"));
        assert!(glob_match("*tikv*", "pd-tikv-0"));
        assert!(glob_match("tikv?", "tikv1"));
        assert!(!glob_match("tikv?", "tikv10"));
        assert!(glob_match("a*b*c", "aXXbYYbZc"));
        assert!(!glob_match("a*b*c", "aXXbYYbZ"));
        assert!(glob_match("*", ""));
        assert!(glob_match("?.log", "é.log"), "one character, not one byte");
    }

    #[test]
    fn patterns_split_into_a_fixed_base_and_parts() {
        let p = PathPattern::parse(Path::new("/var/log/pods/*_basic-tikv-*_*/tikv/*.log")).unwrap();
        assert_eq!(p.base(), Path::new("/var/log/pods"));
        assert_eq!(
            p.parts(),
            [
                Part::Glob("*_basic-tikv-*_*".into()),
                Part::Literal("tikv".into()),
                Part::Glob("*.log".into())
            ]
        );
        assert_eq!(
            PathPattern::parse(Path::new("*.log")).unwrap().base(),
            Path::new(".")
        );
        assert_eq!(
            PathPattern::parse(Path::new("/var/log/**/*.log")),
            Err(PatternError::AnyDepth)
        );
        assert_eq!(
            PathPattern::parse(Path::new("/var/log/*/..")),
            Err(PatternError::NotAName)
        );
        assert_eq!(
            PathPattern::parse(Path::new("/var/log/x.log")),
            Err(PatternError::NotAName)
        );
        assert!(is_pattern(Path::new("/a/?.log")) && !is_pattern(Path::new("/a/b.log")));
    }
}

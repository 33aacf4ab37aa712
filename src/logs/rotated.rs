//! Which files next to a log file are its rotated copies (`tikv.log.1`, `tikv.log-<date>`,
//! kubelet's `0.log.<timestamp>`; never compressed or temporary ones), listing them, and their
//! birth times (the coarse file clock allowed for). The file follower finds missed rotations and
//! copytruncate's copies with them; the glob source keeps copies from being followed as logs.

use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// File times come from a coarse kernel clock, up to a tick (4-10 ms) behind the precise one.
pub(crate) const BIRTH_SLACK: Duration = Duration::from_millis(20);
/// Suffixes of rotated files that are not plain text (compressed or being written).
const SKIPPED_SUFFIXES: [&str; 7] = [".gz", ".zst", ".xz", ".bz2", ".lz4", ".zip", ".tmp"];

/// When a file was created (its birth time; its last change where the file system keeps none).
pub(crate) fn birth(m: &fs::Metadata) -> Option<SystemTime> {
    m.created().or_else(|_| m.modified()).ok()
}

/// Orders rotated files oldest first: by birth time, and for files born in the same tick of the
/// file clock by name (`name.2` before `name.1`; dates and timestamps in their own order).
pub(crate) fn older_first(
    pa: &Path,
    ma: &fs::Metadata,
    pb: &Path,
    mb: &fs::Metadata,
) -> std::cmp::Ordering {
    let number = |p: &Path| {
        let ext = p.extension()?.to_str()?;
        ext.parse::<u64>().ok()
    };
    birth(ma)
        .cmp(&birth(mb))
        .then_with(|| match (number(pa), number(pb)) {
            (Some(a), Some(b)) => b.cmp(&a),
            _ => pa.cmp(pb),
        })
}

/// True when the file was created at or after `t` (allowing for the coarse file clock).
pub(crate) fn born_since(m: &fs::Metadata, t: SystemTime) -> bool {
    birth(m).is_some_and(|b| b + BIRTH_SLACK >= t)
}

/// Regular files next to `real` whose names say they are its rotated copies, and whether one
/// listed was gone before it could be looked at (renamed or deleted meanwhile).
pub(crate) fn rotated_siblings(real: &Path) -> (Vec<(PathBuf, fs::Metadata)>, bool) {
    let (Some(dir), Some(name)) = (real.parent(), real.file_name().and_then(OsStr::to_str)) else {
        return (Vec::new(), false);
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let Ok(entries) = fs::read_dir(dir) else {
        return (Vec::new(), false);
    };
    let mut raced = false;
    let mut files = Vec::new();
    for entry in entries.filter_map(Result::ok) {
        if !entry
            .file_name()
            .to_str()
            .is_some_and(|n| is_rotated_name(name, n))
        {
            continue;
        }
        match fs::metadata(entry.path()) {
            Ok(meta) if meta.is_file() => files.push((entry.path(), meta)),
            Ok(_) => {}
            Err(_) => raced = true,
        }
    }
    (files, raced)
}

/// `tikv.log` → `tikv.log.1`, `tikv.log.20240712-092610`, `tikv.log-20240712`,
/// `tikv.log_1`, `tikv.2024-07-12T09-26-10.005.log`; never a compressed or temporary file.
fn is_rotated_name(name: &str, candidate: &str) -> bool {
    if candidate == name || SKIPPED_SUFFIXES.iter().any(|s| candidate.ends_with(s)) {
        return false;
    }
    let after_name = candidate
        .strip_prefix(name)
        .and_then(|rest| rest.chars().next())
        .is_some_and(|c| matches!(c, '.' | '-' | '_'));
    let stem_and_ext = name.rsplit_once('.').is_some_and(|(stem, ext)| {
        !stem.is_empty()
            && candidate.len() > name.len() + 1
            && candidate.starts_with(&format!("{stem}."))
            && candidate.ends_with(&format!(".{ext}"))
    });
    after_name || stem_and_ext
}

/// Whether `name` is a rotated, compressed or temporary copy of a log file rather than a log
/// file of its own: it ends in a compressed or temporary suffix, it is a rotated name of one of
/// `siblings` (other names of its directory), or it continues a `….log` name with a rotation
/// suffix (kubelet's `0.log.20261201-101010`), also while the file it came from is not there
/// (renamed away, not yet reopened).
pub(crate) fn is_rotated_copy(name: &str, siblings: &[String]) -> bool {
    SKIPPED_SUFFIXES.iter().any(|s| name.ends_with(s))
        || siblings.iter().any(|s| is_rotated_name(s, name))
        || name
            .match_indices(".log")
            .any(|(i, _)| is_rotated_name(&name[..i + 4], name))
}

#[cfg(test)]
mod tests {
    use super::{is_rotated_copy, is_rotated_name};

    #[test]
    fn rotated_copies_are_not_log_files_of_their_own() {
        let siblings = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let none = siblings(&[]);
        for copy in [
            "0.log.20261201-101010",
            "0.log.20261201-101010.gz",
            "0.log.20261201-101010.tmp",
            "tikv.log.1",
            "tikv.log-20240712",
        ] {
            assert!(is_rotated_copy(copy, &none), "{copy}");
        }
        for live in ["0.log", "1.log", "10.log", "tikv.log", "rocksdb.info"] {
            assert!(
                !is_rotated_copy(live, &siblings(&["0.log", "1.log"])),
                "{live}"
            );
        }
        // TiKV's own rotation keeps the extension: a copy only next to its live file.
        let tikv = "tikv.2024-07-12T09-26-10.005.log";
        assert!(is_rotated_copy(tikv, &siblings(&["tikv.log", tikv])));
        assert!(!is_rotated_copy(tikv, &siblings(&[tikv])));
    }

    #[test]
    fn rotated_names_are_recognised_and_compressed_or_other_files_are_not() {
        for rotated in [
            "tikv.log.1",
            "tikv.log.20240712-092610",
            "tikv.log-20240712",
            "tikv.log_1",
            "tikv.2024-07-12T09-26-10.005.log",
            "0.log.20210618-133041",
        ] {
            let name = if rotated.starts_with('0') {
                "0.log"
            } else {
                "tikv.log"
            };
            assert!(is_rotated_name(name, rotated), "{rotated}");
        }
        for other in [
            "tikv.log",
            "tikv.log.1.gz",
            "0.log.20210618-133031.gz",
            "tikv.log.tmp",
            "tikv-ctl.log",
            "tikv_stderr.log",
            "pd.log",
            "tikv.logx",
            "1.log",
        ] {
            let name = if other.starts_with(['0', '1']) {
                "0.log"
            } else {
                "tikv.log"
            };
            assert!(!is_rotated_name(name, other), "{other}");
        }
    }
}

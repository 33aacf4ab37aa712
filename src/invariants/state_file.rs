//! The optional state file: when each active violation started, written atomically so a
//! restart neither re-arms nor skips a grace period.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::engine::Persisted;

/// Saved states older than this are ignored on start (like Prometheus'
/// `--rules.alert.for-outage-tolerance`): after a long outage nothing is known about the gap.
pub const OUTAGE_TOLERANCE_SECS: f64 = 3600.0;

#[derive(Serialize, Deserialize)]
struct FileContent {
    version: u32,
    saved_at: f64,
    active: Vec<Persisted>,
}

/// While violations are active the file is rewritten at least this often, so that its
/// `saved_at` never makes a steady violation look stale after a crash (see
/// [`OUTAGE_TOLERANCE_SECS`]).
pub const REFRESH_SECS: f64 = 300.0;

/// Writes `active` to `path` atomically (temporary file, fsync, rename, fsync of the directory).
/// A failed write (`ENOSPC`, ...) removes its temporary file and leaves `path` as it was.
pub fn save(path: &Path, active: &[Persisted], now: f64) -> std::io::Result<()> {
    let body = serde_json::to_vec_pretty(&FileContent {
        version: 1,
        saved_at: now,
        active: active.to_vec(),
    })
    .map_err(std::io::Error::other)?;
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty());
    let tmp = path.with_extension("tmp");
    let written = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&body)?;
        f.write_all(b"\n")?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    if let Some(d) = dir
        && let Ok(df) = std::fs::File::open(d)
    {
        let _ = df.sync_all();
    }
    Ok(())
}

/// A state file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StateFileError {
    /// It exists but cannot be read.
    #[error("cannot read state file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// It is not a state file this version understands.
    #[error("state file {} is corrupt: {reason}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What the JSON parser (or the size check) said.
        reason: String,
    },
}

/// Largest state file read: far more than any number of violations writes.
const MAX_BYTES: u64 = 64 << 20;

/// Reads the saved states; a missing file is empty, a stale one (older than the outage
/// tolerance) is ignored, a corrupt one (empty, truncated, not JSON, too large) is an error
/// naming the file.
pub fn load(path: &Path, now: f64) -> Result<Vec<Persisted>, StateFileError> {
    let text = match read_bounded(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
            return Err(StateFileError::Corrupt {
                path: path.to_owned(),
                reason: e.to_string(),
            });
        }
        Err(source) => {
            return Err(StateFileError::Read {
                path: path.to_owned(),
                source,
            });
        }
    };
    let c: FileContent = serde_json::from_slice(&text).map_err(|e| StateFileError::Corrupt {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    if now - c.saved_at > OUTAGE_TOLERANCE_SECS {
        return Ok(Vec::new());
    }
    Ok(c.active)
}

/// The bytes of `path`, refusing a non-regular file or one above [`MAX_BYTES`] (as
/// `InvalidData`, which makes it corrupt).
fn read_bounded(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::{Error, ErrorKind, Read};
    let meta = std::fs::metadata(path)?;
    if !meta.is_file() {
        return Err(Error::new(ErrorKind::InvalidInput, "not a regular file"));
    }
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(MAX_BYTES + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_BYTES {
        return Err(Error::new(
            ErrorKind::InvalidData,
            format!("larger than {MAX_BYTES} bytes"),
        ));
    }
    Ok(bytes)
}

/// Removes the temporary file a write interrupted by a crash may have left next to `path`
/// (never a complete state: the rename did not happen); returns whether there was one.
pub fn remove_leftover(path: &Path) -> bool {
    std::fs::remove_file(path.with_extension("tmp")).is_ok()
}

/// Moves an unusable state file out of the way, to `<name>.corrupt-<unix seconds>` next to
/// it, so that it can be inspected and is never overwritten; returns the new path.
pub fn set_aside(path: &Path, now: f64) -> std::io::Result<PathBuf> {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(format!(".corrupt-{}", now as i64));
    let aside = path.with_file_name(name);
    std::fs::rename(path, &aside)?;
    Ok(aside)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::invariants::engine::Phase;

    #[test]
    fn round_trip_staleness_and_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("state.json");
        assert_eq!(load(&p, 0.0).unwrap(), vec![]);
        let a = vec![Persisted {
            name: "disk_usage".into(),
            store: "4".into(),
            phase: Phase::Firing,
            active_since: 1000.5,
            clearing_since: None,
        }];
        save(&p, &a, 2000.0).unwrap();
        assert!(!p.with_extension("tmp").exists());
        assert_eq!(load(&p, 2100.0).unwrap(), a);
        assert_eq!(
            load(&p, 2000.0 + OUTAGE_TOLERANCE_SECS + 1.0).unwrap(),
            vec![]
        );
        std::fs::write(&p, b"{not json").unwrap();
        assert!(
            load(&p, 0.0)
                .unwrap_err()
                .to_string()
                .contains("is corrupt")
        );
    }
}

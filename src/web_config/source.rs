//! [`WebConfigSource`]: the web configuration as of now. The toolkit re-reads its file on every
//! request and connection; this does the equivalent cheaply: each call compares the identity
//! (device, inode, size, modification and change time) of the file and of every file it names
//! with what was read, and reads them again only when one changed. A bad new version keeps the
//! previous settings serving, logged once (and its recovery once).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::{FileReader, WebConfigError, WebSettings, load_with};

/// What identifies a version of a file without reading it (symbolic links followed, so a
/// Kubernetes Secret volume's `..data` swap is a change).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FileStamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl FileStamp {
    /// The stamp of `path` now; `None` when it cannot be stat'ed.
    pub(crate) fn of(path: &Path) -> Option<FileStamp> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(path).ok()?;
        let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
        Some(FileStamp {
            dev: m.dev(),
            ino: m.ino(),
            len: m.len(),
            mtime_ns: ns(m.mtime(), m.mtime_nsec()),
            ctime_ns: ns(m.ctime(), m.ctime_nsec()),
        })
    }
}

/// The web configuration file, re-read when it or a file it names changes.
#[derive(Debug)]
pub struct WebConfigSource {
    path: PathBuf,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// The files of the last read (its successful part when it failed), as they were then.
    files: Vec<(PathBuf, Option<FileStamp>)>,
    current: Arc<WebSettings>,
    /// The error of the last read, when it failed (logged once).
    failing: Option<String>,
}

impl WebConfigSource {
    /// Reads and validates the file (and the files it names); an error names the key.
    pub fn open(path: &Path) -> Result<WebConfigSource, WebConfigError> {
        let mut reader = FileReader::default();
        let settings = load_with(path, &mut reader)?;
        Ok(WebConfigSource {
            path: path.to_owned(),
            state: Mutex::new(State {
                files: reader.read,
                current: Arc::new(settings),
                failing: None,
            }),
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The settings now: read again first when a file changed since the last read; when the
    /// new version is bad (or would turn TLS on or off, which takes a restart), the previous
    /// settings stay.
    pub fn current(&self) -> Arc<WebSettings> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if st
            .files
            .iter()
            .all(|(path, stamp)| FileStamp::of(path) == *stamp)
        {
            return st.current.clone();
        }
        let mut reader = FileReader::default();
        let outcome = load_with(&self.path, &mut reader)
            .map_err(|e| e.to_string())
            .and_then(|new| {
                if new.tls_enabled() == st.current.tls_enabled() {
                    Ok(new)
                } else {
                    Err(format!(
                        "web config file {}: tls_server_config: turning TLS {} takes a restart",
                        self.path.display(),
                        if new.tls_enabled() { "on" } else { "off" }
                    ))
                }
            });
        st.files = reader.read;
        match outcome {
            Ok(new) => {
                let what = if st.failing.take().is_some() {
                    "is valid again"
                } else {
                    "changed"
                };
                crate::log::info(&format!(
                    "web config file {} {what}, applied: {}",
                    self.path.display(),
                    new.summary()
                ));
                st.current = Arc::new(new);
            }
            Err(e) => {
                if st.failing.as_deref() != Some(e.as_str()) {
                    crate::log::error(&format!(
                        "{e}; the previous web configuration keeps serving"
                    ));
                    st.failing = Some(e);
                }
            }
        }
        st.current.clone()
    }
}

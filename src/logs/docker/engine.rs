//! Talking to the Docker engine: connecting to its address, telling a missing container from
//! other failures, and the backoff between retries.

use std::time::Duration;

use bollard::errors::Error as DockerError;
use bollard::{API_DEFAULT_VERSION, Docker};

/// Docker's default socket.
const DEFAULT_HOST: &str = "unix:///var/run/docker.sock";

/// Timeout for the response head of every request (not for the followed streams themselves).
const REQUEST_TIMEOUT_SECS: u64 = 30;

/// Connects to `host` (`unix://`, a socket path, `tcp://` or `http://`); unset: `DOCKER_HOST`,
/// else the local socket. The API version is negotiated separately.
pub(crate) fn connect(host: Option<&str>) -> Result<Docker, DockerError> {
    let env = std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty());
    let host = host.map(str::to_owned).or(env);
    let host = host.as_deref().unwrap_or(DEFAULT_HOST).trim();
    if host.starts_with('/') || host.starts_with("unix://") {
        Docker::connect_with_unix(host, REQUEST_TIMEOUT_SECS, API_DEFAULT_VERSION)
    } else if host.starts_with("tcp://") || host.starts_with("http://") {
        Docker::connect_with_http(host, REQUEST_TIMEOUT_SECS, API_DEFAULT_VERSION)
    } else {
        Err(DockerError::UnsupportedURISchemeError {
            uri: host.to_owned(),
        })
    }
}

/// Whether the engine answered 404: the container does not exist (any more).
pub(crate) fn is_not_found(e: &DockerError) -> bool {
    matches!(
        e,
        DockerError::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

/// Exponential backoff between `min` and `max`.
pub(crate) struct Backoff {
    /// First pause, and the pause after a reset.
    min: Duration,
    /// Longest pause.
    max: Duration,
    /// The next pause.
    cur: Duration,
}

impl Backoff {
    /// Starts at `min`, doubling up to `max`.
    pub(crate) fn new(min: Duration, max: Duration) -> Self {
        Backoff { min, max, cur: min }
    }

    /// The pause to take now; the next one is twice as long (at most `max`).
    pub(crate) fn next(&mut self) -> Duration {
        let d = self.cur;
        self.cur = (self.cur * 2).min(self.max);
        d
    }

    /// Back to `min` (after a success).
    pub(crate) fn reset(&mut self) {
        self.cur = self.min;
    }
}

//! The request side of the web configuration, around the exporter's handler, for every path
//! (`/-/healthy` included, as the toolkit): `rate_limit` (429), `basic_auth_users` (401 with
//! `WWW-Authenticate: Basic`), then `http_server_config.headers` on every answer, those two
//! included. Each request uses the settings current when it arrives.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue, WWW_AUTHENTICATE};
use hyper::{Request, Response, StatusCode};

use super::WebConfigSource;
use super::auth::Verifier;
use crate::http_server::{Handler, Reply};

/// Wraps `inner` with the rate limit, basic auth and headers of `source`'s current settings.
pub(crate) fn protect(inner: Handler, source: Arc<WebConfigSource>) -> Handler {
    let guard = Arc::new(Guard {
        source,
        verifier: Verifier::new(),
        bucket: Mutex::new(None),
    });
    Arc::new(move |req: Request<Incoming>| {
        let guard = guard.clone();
        let inner = inner.clone();
        Box::pin(async move { guard.serve(req, &inner).await })
    })
}

struct Guard {
    source: Arc<WebConfigSource>,
    verifier: Verifier,
    bucket: Mutex<Option<Bucket>>,
}

impl Guard {
    async fn serve(&self, req: Request<Incoming>, inner: &Handler) -> Reply {
        let settings = self.source.current();
        let mut reply = if !self.allow(settings.rate_limit) {
            error(StatusCode::TOO_MANY_REQUESTS)
        } else {
            let authorized = match &settings.users {
                None => true,
                Some(users) => {
                    let header = req.headers().get(AUTHORIZATION).cloned();
                    self.verifier.check(users, header).await
                }
            };
            if authorized {
                inner(req).await
            } else {
                let mut r = error(StatusCode::UNAUTHORIZED);
                r.headers_mut()
                    .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Basic"));
                r
            }
        };
        for (name, value) in &settings.headers {
            reply.headers_mut().insert(name.clone(), value.clone());
        }
        reply
    }

    /// Takes a token of the `(interval, burst)` bucket; a changed setting starts a full one.
    fn allow(&self, limit: Option<(Duration, u64)>) -> bool {
        let Some((interval, burst)) = limit else {
            return true;
        };
        let mut b = self.bucket.lock().unwrap_or_else(|e| e.into_inner());
        let bucket = match &mut *b {
            Some(x) if x.interval == interval && x.burst == burst => x,
            slot => slot.insert(Bucket::new(interval, burst)),
        };
        bucket.take(Instant::now())
    }
}

/// A token bucket as Go's `rate.NewLimiter(rate.Every(interval), burst)`: starts full, one
/// token back per interval, at most `burst`.
struct Bucket {
    interval: Duration,
    burst: u64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn new(interval: Duration, burst: u64) -> Bucket {
        Bucket {
            interval,
            burst,
            tokens: burst as f64,
            at: Instant::now(),
        }
    }

    fn take(&mut self, now: Instant) -> bool {
        let refill =
            now.saturating_duration_since(self.at).as_secs_f64() / self.interval.as_secs_f64();
        self.tokens = (self.tokens + refill).min(self.burst as f64);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// An error answer as Go's `http.Error` writes it: the status text and a newline.
fn error(status: StatusCode) -> Reply {
    let text = format!("{}\n", status.canonical_reason().unwrap_or(""));
    let mut r = Response::new(Full::new(Bytes::from(text)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r.headers_mut().insert(
        hyper::header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_allows_a_burst_then_one_per_interval() {
        let mut b = Bucket::new(Duration::from_secs(1), 2);
        let t0 = b.at;
        assert!(b.take(t0));
        assert!(b.take(t0));
        assert!(!b.take(t0), "burst spent");
        assert!(!b.take(t0 + Duration::from_millis(500)), "half a token");
        assert!(
            b.take(t0 + Duration::from_millis(1000)),
            "one back after an interval"
        );
        assert!(!b.take(t0 + Duration::from_millis(1000)));
        assert!(b.take(t0 + Duration::from_secs(60)));
        assert!(
            b.take(t0 + Duration::from_secs(60)),
            "refilled to the burst"
        );
        assert!(!b.take(t0 + Duration::from_secs(60)), "never above it");
    }
}

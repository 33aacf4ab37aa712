//! The one HTTP client layer under the source clients (PD, Prometheus, and the next ones).
//!
//! It owns what every client needs: checking and normalising base URLs, building the reqwest
//! client (timeouts, user agent, optional proxy bypass, TLS from PEM files), installing the
//! rustls crypto provider, a bounded body read, a bound on the whole exchange, and the wording of
//! errors (one cause chain without reqwest's repeated URL, passwords redacted, error bodies
//! summarised). Callers keep their own typed errors and map [`HttpError`] onto them.
//!
//! A request is built with [`HttpClient::get`] or [`HttpClient::post_json`], completed with what
//! the endpoint needs (e.g. `Accept`, or PD's `PD-Allow-follower-handle` header), and run with
//! [`HttpClient::fetch`] (status and body, whatever the status) or [`HttpClient::fetch_ok`] (the
//! body of a 2xx answer; any other status becomes [`HttpError::Status`]), or, for a big text
//! body such as a `/metrics` page, [`HttpClient::fetch_ok_lines`] (one line at a time as it
//! arrives).

use std::path::PathBuf;
use std::sync::Once;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reqwest::header::CONTENT_TYPE;
use reqwest::{IntoUrl, RequestBuilder, StatusCode};

mod auth;
mod base_url;
mod messages;
mod tls;

pub(crate) use auth::RequestAuth;
pub(crate) use base_url::{join_below, normalize_endpoint, parse_base_url, redact};
pub(crate) use messages::{body_snippet, error_chain};
use messages::{describe_transport, summarize_error_body};
pub(crate) use tls::TlsFiles;

/// The `User-Agent` of every request.
const USER_AGENT: &str = concat!("tikv-health-exporter/", env!("CARGO_PKG_VERSION"));

/// [`HttpClient::fetch_ok`] reads at most this much of an error body (less if its limit is lower).
const ERROR_BODY_LIMIT: usize = 64 * 1024;

/// [`HttpClient::fetch_ok`] quotes at most this many characters of an error body.
const ERROR_MESSAGE_CHARS: usize = 300;

/// How to build an [`HttpClient`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct ClientConfig<'a> {
    /// Limit for one whole exchange (connect, headers and body); also the connect timeout.
    pub(crate) timeout: Duration,
    /// Connect directly, ignoring proxy environment variables (`HTTP_PROXY`, ...).
    pub(crate) no_proxy: bool,
    /// Trust roots and client identity for HTTPS.
    pub(crate) tls: Option<TlsFiles<'a>>,
    /// Follow HTTP 3xx redirects (reqwest's default policy: at most 10).
    pub(crate) follow_redirects: bool,
}

/// Why an [`HttpClient`] could not be built.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BuildError {
    /// The settings do not fit together (a certificate without its key, ...).
    #[error("{0}")]
    Config(String),
    /// A TLS file is missing, unreadable or does not hold what it should.
    #[error("TLS {kind} file {}: {reason}", path.display())]
    TlsFile {
        /// Which file: `CA`, `certificate` or `key`.
        kind: &'static str,
        /// The file's path as configured.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// reqwest refused the settings (its error chain).
    #[error("{0}")]
    Client(String),
}

/// rustls needs a process-wide crypto provider before reqwest can build a client (the crate
/// enables reqwest's `rustls-no-provider`); installs ring's once, unless one is set already.
fn ensure_crypto_provider() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            // Losing a race with another installer is fine: some provider is then installed.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
    });
}

// ---------------------------------------------------------------------------------------------
// The client

/// A reqwest client with the exporter's settings, a bounded body read and request counters.
#[derive(Debug)]
pub(crate) struct HttpClient {
    client: reqwest::Client,
    timeout: Duration,
    requests: AtomicU64,
    response_bytes: AtomicU64,
}

/// What [`HttpClient::fetch`] got back.
#[derive(Debug)]
pub(crate) struct Reply {
    /// The HTTP status.
    pub(crate) status: StatusCode,
    /// The whole body (within the limit).
    pub(crate) body: Vec<u8>,
}

/// Why one exchange failed; the message is short and names no URL (the caller names it).
#[derive(Debug, thiserror::Error)]
pub(crate) enum HttpError {
    /// No complete answer within the client's timeout.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The request could not be sent or no answer arrived (refused, TLS handshake, reset, ...).
    #[error("{}", describe_transport(.0))]
    Send(reqwest::Error),
    /// The body broke off before its end.
    #[error("reading body: {}", describe_transport(.0))]
    Body(reqwest::Error),
    /// reqwest's own timeout struck while the body was read.
    #[error("reading body: timed out after {0:?}")]
    BodyTimeout(Duration),
    /// The body is larger than the limit (announced or streamed).
    #[error("response larger than {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// A non-2xx answer ([`HttpClient::fetch_ok`] only).
    #[error("HTTP {status}{}", if detail.is_empty() { String::new() } else { format!(" ({detail})") })]
    Status {
        /// The HTTP status code.
        status: u16,
        /// A summary of the body, or why it could not be read; may be empty.
        detail: String,
    },
}

impl HttpError {
    /// Whether the client's timeout struck (before the answer or within its body).
    pub(crate) fn is_timeout(&self) -> bool {
        matches!(self, HttpError::Timeout(_) | HttpError::BodyTimeout(_))
    }

    /// The HTTP status of a [`HttpError::Status`].
    pub(crate) fn status(&self) -> Option<u16> {
        match self {
            HttpError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Every cause of a transport error (see [`error_chain`]); other errors as displayed.
    pub(crate) fn chain(&self) -> String {
        match self {
            HttpError::Send(e) | HttpError::Body(e) => error_chain(e),
            other => other.to_string(),
        }
    }
}

impl HttpClient {
    /// Builds the reqwest client (loading and checking the TLS files); no request is sent.
    pub(crate) fn new(cfg: &ClientConfig<'_>) -> Result<HttpClient, BuildError> {
        ensure_crypto_provider();
        let mut builder = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .connect_timeout(cfg.timeout)
            .user_agent(USER_AGENT);
        if cfg.no_proxy {
            builder = builder.no_proxy();
        }
        if !cfg.follow_redirects {
            builder = builder.redirect(reqwest::redirect::Policy::none());
        }
        if let Some(tls) = &cfg.tls {
            builder = tls.apply(builder)?;
        }
        let client = builder
            .build()
            .map_err(|e| BuildError::Client(error_chain(&e)))?;
        Ok(HttpClient {
            client,
            timeout: cfg.timeout,
            requests: AtomicU64::new(0),
            response_bytes: AtomicU64::new(0),
        })
    }

    /// The limit for one whole exchange.
    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Exchanges started so far (failed ones included).
    pub(crate) fn requests_total(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Response body bytes received so far (error bodies and aborted bodies included).
    pub(crate) fn response_bytes_total(&self) -> u64 {
        self.response_bytes.load(Ordering::Relaxed)
    }

    /// A GET of `url`, to complete (headers, ...) and pass to [`fetch`](Self::fetch) or
    /// [`fetch_ok`](Self::fetch_ok).
    pub(crate) fn get(&self, url: impl IntoUrl) -> RequestBuilder {
        self.client.get(url)
    }

    /// A POST of `body` as JSON (`Content-Type: application/json`) to `url`.
    pub(crate) fn post_json(
        &self,
        url: impl IntoUrl,
        body: &impl serde::Serialize,
    ) -> Result<RequestBuilder, serde_json::Error> {
        Ok(self
            .client
            .post(url)
            .header(CONTENT_TYPE, "application/json")
            .body(serde_json::to_vec(body)?))
    }

    /// Sends `req` and reads at most `limit` body bytes, whatever the status; the whole exchange
    /// takes at most the client's timeout.
    pub(crate) async fn fetch(
        &self,
        req: RequestBuilder,
        limit: usize,
    ) -> Result<Reply, HttpError> {
        let (status, body) = self.exchange(req, limit, limit).await?;
        Ok(Reply {
            status,
            body: body?,
        })
    }

    /// Like [`fetch`](Self::fetch) for a 2xx answer's body; any other status is a
    /// [`HttpError::Status`] summarising at most 64 KiB (and `limit`) of the error body.
    pub(crate) async fn fetch_ok(
        &self,
        req: RequestBuilder,
        limit: usize,
    ) -> Result<Vec<u8>, HttpError> {
        let (status, body) = self
            .exchange(req, limit, ERROR_BODY_LIMIT.min(limit))
            .await?;
        if status.is_success() {
            return body;
        }
        Err(status_error(status, body))
    }

    /// Like [`fetch_ok`](Self::fetch_ok) for a big text body read line by line: `on_line` gets
    /// each line (without its `\n`) as the body arrives, so at most one line of at most
    /// `max_line` bytes is held (longer lines are skipped whole); the body may be `limit` bytes
    /// in all, and the whole exchange takes at most the client's timeout.
    pub(crate) async fn fetch_ok_lines(
        &self,
        req: RequestBuilder,
        limit: usize,
        max_line: usize,
        mut on_line: impl FnMut(&[u8]) + Send,
    ) -> Result<(), HttpError> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let work = async {
            let mut resp = self.send(req).await?;
            let status = resp.status();
            if !status.is_success() {
                let body = self.read_body(resp, ERROR_BODY_LIMIT.min(limit)).await;
                return Err(status_error(status, body));
            }
            if resp.content_length().is_some_and(|n| n > limit as u64) {
                return Err(HttpError::TooLarge { limit });
            }
            let mut lines = LineSplitter::new(max_line);
            let mut total = 0usize;
            loop {
                match resp.chunk().await {
                    Ok(Some(chunk)) => {
                        self.response_bytes
                            .fetch_add(chunk.len() as u64, Ordering::Relaxed);
                        total += chunk.len();
                        if total > limit {
                            return Err(HttpError::TooLarge { limit });
                        }
                        lines.feed(&chunk, &mut on_line);
                    }
                    Ok(None) => {
                        lines.finish(&mut on_line);
                        return Ok(());
                    }
                    Err(e) if e.is_timeout() => return Err(HttpError::BodyTimeout(self.timeout)),
                    Err(e) => return Err(HttpError::Body(e)),
                }
            }
        };
        match tokio::time::timeout(self.timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(HttpError::Timeout(self.timeout)),
        }
    }

    /// Sends `req`, mapping reqwest's failures.
    async fn send(&self, req: RequestBuilder) -> Result<reqwest::Response, HttpError> {
        req.send().await.map_err(|e| {
            if e.is_timeout() {
                HttpError::Timeout(self.timeout)
            } else {
                HttpError::Send(e)
            }
        })
    }

    /// Sends `req` and reads its body (up to `ok_limit` bytes for 2xx, else `error_limit`), all
    /// within the timeout; the status is kept when only the body failed.
    async fn exchange(
        &self,
        req: RequestBuilder,
        ok_limit: usize,
        error_limit: usize,
    ) -> Result<(StatusCode, Result<Vec<u8>, HttpError>), HttpError> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let work = async {
            let resp = self.send(req).await?;
            let status = resp.status();
            let limit = if status.is_success() {
                ok_limit
            } else {
                error_limit
            };
            Ok((status, self.read_body(resp, limit).await))
        };
        // reqwest's own timeout also covers the body; this outer bound covers the whole exchange.
        match tokio::time::timeout(self.timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(HttpError::Timeout(self.timeout)),
        }
    }

    /// Streams a body, failing as soon as it exceeds `limit` bytes (or announces more).
    async fn read_body(
        &self,
        mut resp: reqwest::Response,
        limit: usize,
    ) -> Result<Vec<u8>, HttpError> {
        if resp.content_length().is_some_and(|n| n > limit as u64) {
            return Err(HttpError::TooLarge { limit });
        }
        let mut body = Vec::with_capacity(resp.content_length().unwrap_or(0) as usize);
        loop {
            match resp.chunk().await {
                Ok(Some(chunk)) => {
                    self.response_bytes
                        .fetch_add(chunk.len() as u64, Ordering::Relaxed);
                    if body.len() + chunk.len() > limit {
                        return Err(HttpError::TooLarge { limit });
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => return Ok(body),
                Err(e) if e.is_timeout() => return Err(HttpError::BodyTimeout(self.timeout)),
                Err(e) => return Err(HttpError::Body(e)),
            }
        }
    }
}

/// The [`HttpError::Status`] of a non-2xx answer, summarising its (bounded) body.
fn status_error(status: StatusCode, body: Result<Vec<u8>, HttpError>) -> HttpError {
    let detail = match body {
        Ok(body) => summarize_error_body(&body, ERROR_MESSAGE_CHARS),
        Err(e) => e.to_string(),
    };
    HttpError::Status {
        status: status.as_u16(),
        detail,
    }
}

/// Cuts a body arriving in chunks into lines, holding at most one line of at most `max` bytes.
struct LineSplitter {
    max: usize,
    partial: Vec<u8>,
    /// The line being read is longer than `max`: it is dropped up to its end.
    overlong: bool,
}

impl LineSplitter {
    fn new(max: usize) -> Self {
        LineSplitter {
            max,
            partial: Vec::new(),
            overlong: false,
        }
    }

    /// Hands every line completed by `chunk` to `on_line`.
    fn feed(&mut self, mut chunk: &[u8], on_line: &mut impl FnMut(&[u8])) {
        while let Some(i) = chunk.iter().position(|&b| b == b'\n') {
            let (head, rest) = (&chunk[..i], &chunk[i + 1..]);
            if !self.overlong && self.partial.len() + head.len() <= self.max {
                if self.partial.is_empty() {
                    on_line(head);
                } else {
                    self.partial.extend_from_slice(head);
                    on_line(&self.partial);
                }
            }
            self.partial.clear();
            self.overlong = false;
            chunk = rest;
        }
        if self.overlong {
            return;
        }
        if self.partial.len() + chunk.len() <= self.max {
            self.partial.extend_from_slice(chunk);
        } else {
            self.partial.clear();
            self.overlong = true;
        }
    }

    /// Hands a last line without `\n` to `on_line`.
    fn finish(&mut self, on_line: &mut impl FnMut(&[u8])) {
        if !self.overlong && !self.partial.is_empty() {
            on_line(&self.partial);
        }
        self.partial.clear();
        self.overlong = false;
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// Serves one connection with the raw HTTP `response`; the task returns the request it read.
    async fn serve_once(response: Vec<u8>) -> (String, tokio::task::JoinHandle<String>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            let mut req = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                let n = conn.read(&mut buf).await.unwrap();
                req.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&req).into_owned();
                let Some((head, body)) = text.split_once("\r\n\r\n") else {
                    assert!(n > 0, "connection closed before the request head");
                    continue;
                };
                let len = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse::<usize>().unwrap())
                    })
                    .unwrap_or(0);
                if n == 0 || body.len() >= len {
                    break;
                }
            }
            let _ = conn.write_all(&response).await;
            let _ = conn.shutdown().await;
            String::from_utf8_lossy(&req).into_owned()
        });
        (url, task)
    }

    fn client(timeout: Duration) -> HttpClient {
        HttpClient::new(&ClientConfig {
            timeout,
            no_proxy: true,
            tls: None,
            follow_redirects: true,
        })
        .unwrap()
    }

    fn response(status: &str, headers: &str, body: &str) -> Vec<u8> {
        format!("HTTP/1.1 {status}\r\nConnection: close\r\n{headers}\r\n{body}").into_bytes()
    }

    #[tokio::test]
    async fn fetch_returns_any_status_and_counts() {
        let (url, server) = serve_once(response(
            "503 Service Unavailable",
            "Content-Length: 4\r\n",
            "busy",
        ))
        .await;
        let http = client(Duration::from_secs(5));
        let req = http
            .get(format!("{url}/x"))
            .header("PD-Allow-follower-handle", "true");
        let reply = http.fetch(req, 100).await.unwrap();
        assert_eq!(
            (reply.status.as_u16(), &reply.body[..]),
            (503, &b"busy"[..])
        );
        assert_eq!((http.requests_total(), http.response_bytes_total()), (1, 4));
        let request = server.await.unwrap().to_ascii_lowercase();
        assert!(request.starts_with("get /x http/1.1\r\n"), "{request}");
        assert!(
            request.contains("\r\npd-allow-follower-handle: true\r\n"),
            "{request}"
        );
        assert!(
            request.contains(&format!("\r\nuser-agent: {USER_AGENT}\r\n")),
            "{request}"
        );
    }

    #[tokio::test]
    async fn post_json_sends_the_body() {
        let (url, server) = serve_once(response("200 OK", "Content-Length: 2\r\n", "ok")).await;
        let http = client(Duration::from_secs(5));
        let req = http
            .post_json(
                format!("{url}/api/v2/alerts"),
                &serde_json::json!([{"a": 1}]),
            )
            .unwrap();
        assert_eq!(http.fetch_ok(req, 100).await.unwrap(), b"ok");
        let request = server.await.unwrap();
        assert!(
            request.starts_with("POST /api/v2/alerts HTTP/1.1\r\n"),
            "{request}"
        );
        assert!(
            request
                .to_ascii_lowercase()
                .contains("\r\ncontent-type: application/json\r\n"),
            "{request}"
        );
        assert!(request.ends_with("\r\n\r\n[{\"a\":1}]"), "{request}");
    }

    #[tokio::test]
    async fn fetch_ok_turns_other_statuses_into_errors() {
        let body = r#""[PD:apiutil:ErrRedirectNoLeader]redirect finds no leader""#;
        let (url, _server) = serve_once(response("503 Service Unavailable", "", body)).await;
        let http = client(Duration::from_secs(5));
        let e = http.fetch_ok(http.get(url), 1000).await.unwrap_err();
        assert_eq!(e.status(), Some(503));
        assert_eq!(
            e.to_string(),
            "HTTP 503 ([PD:apiutil:ErrRedirectNoLeader]redirect finds no leader)"
        );
        // An error body above its limit keeps the status.
        let (url, _server) =
            serve_once(response("500 Internal Server Error", "", "0123456789")).await;
        let e = http.fetch_ok(http.get(url), 5).await.unwrap_err();
        assert_eq!(e.to_string(), "HTTP 500 (response larger than 5 bytes)");
        let (url, _server) =
            serve_once(response("404 Not Found", "Content-Length: 0\r\n", "")).await;
        let e = http.fetch_ok(http.get(url), 5).await.unwrap_err();
        assert_eq!(
            (e.status(), e.to_string()),
            (Some(404), "HTTP 404".to_owned())
        );
    }

    #[tokio::test]
    async fn bodies_are_bounded_announced_or_streamed() {
        let http = client(Duration::from_secs(5));
        let (url, _server) = serve_once(response(
            "200 OK",
            "Content-Length: 2000\r\n",
            &"x".repeat(2000),
        ))
        .await;
        let e = http.fetch(http.get(url), 1000).await.unwrap_err();
        assert!(matches!(e, HttpError::TooLarge { limit: 1000 }), "{e:?}");
        assert_eq!(http.response_bytes_total(), 0, "refused before reading");
        let (url, _server) = serve_once(response("200 OK", "", &"x".repeat(5000))).await;
        let e = http.fetch(http.get(url), 1000).await.unwrap_err();
        assert_eq!(e.to_string(), "response larger than 1000 bytes");
        assert!(http.response_bytes_total() > 1000);
        assert!(!e.is_timeout() && e.status().is_none());
    }

    #[test]
    fn lines_are_cut_across_chunks_and_overlong_ones_skipped() {
        let mut got: Vec<String> = Vec::new();
        let mut on = |l: &[u8]| got.push(String::from_utf8_lossy(l).into_owned());
        let mut s = LineSplitter::new(5);
        for chunk in ["ab", "c\nde", "\n\n12345", "6789\nxy\nlast"] {
            s.feed(chunk.as_bytes(), &mut on);
        }
        s.finish(&mut on);
        assert_eq!(got, ["abc", "de", "", "xy", "last"]);
    }

    #[tokio::test]
    async fn a_body_is_streamed_line_by_line_within_its_limit() {
        let body = "a 1\n# long comment line\nb 2\n";
        let (url, _server) = serve_once(response("200 OK", "", body)).await;
        let http = client(Duration::from_secs(5));
        let mut lines = Vec::new();
        http.fetch_ok_lines(http.get(url), 1000, 5, |l| lines.push(l.to_vec()))
            .await
            .unwrap();
        assert_eq!(lines, [b"a 1".to_vec(), b"b 2".to_vec()]);
        let (url, _server) = serve_once(response("200 OK", "", &"x 1\n".repeat(100))).await;
        let e = http
            .fetch_ok_lines(http.get(url), 100, 5, |_| {})
            .await
            .unwrap_err();
        assert_eq!(e.to_string(), "response larger than 100 bytes");
        let (url, _server) =
            serve_once(response("404 Not Found", "", "404 page not found\n")).await;
        let e = http
            .fetch_ok_lines(http.get(url), 100, 5, |_| panic!("no line of an error"))
            .await
            .unwrap_err();
        assert_eq!(e.to_string(), "HTTP 404 (404 page not found)");
    }

    #[tokio::test]
    async fn exchange_is_bounded_and_failures_are_described() {
        // Connections are accepted by the kernel but never answered.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let http = client(Duration::from_millis(200));
        let t0 = std::time::Instant::now();
        let e = http.fetch(http.get(&url), 100).await.unwrap_err();
        assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
        assert!(e.is_timeout(), "{e:?}");
        assert_eq!(e.to_string(), "timed out after 200ms");
        drop(listener);

        let e = http.fetch(http.get(&url), 100).await.unwrap_err();
        assert!(matches!(e, HttpError::Send(_)), "{e:?}");
        let (short, long) = (e.to_string(), e.chain());
        assert!(short.starts_with("connect error: "), "{short}");
        assert!(short.to_lowercase().contains("refused"), "{short}");
        assert!(long.starts_with("error sending request: "), "{long}");
        assert!(!long.contains(&url) && !short.contains(&url), "{long}");
    }
}

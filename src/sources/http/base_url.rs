//! Base URLs of the systems polled: http or https, a host, no query string or fragment.

use reqwest::Url;

/// Why a base URL was rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum UrlError {
    /// Nothing but white space.
    #[error("empty")]
    Empty,
    /// Not a URL at all (the parser's message).
    #[error("{0}")]
    Parse(String),
    /// A scheme other than http and https.
    #[error("scheme {0:?} is not http or https")]
    Scheme(String),
    /// No host name or address.
    #[error("no host")]
    NoHost,
    /// A base URL with `?...` or `#...`.
    #[error("query strings and fragments are not allowed")]
    QueryOrFragment,
}

/// Parses a base URL and checks it: http or https, a host, no query string or fragment.
pub(crate) fn parse_base_url(raw: &str) -> Result<Url, UrlError> {
    let url = Url::parse(raw).map_err(|e| UrlError::Parse(e.to_string()))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(UrlError::Scheme(url.scheme().to_owned()));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(UrlError::NoHost);
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(UrlError::QueryOrFragment);
    }
    Ok(url)
}

/// Like [`parse_base_url`] for a configured endpoint that may be a bare `host:port` (it gets
/// `https://` when `tls`, else `http://`); surrounding white space is ignored and the result has
/// no trailing slash.
pub(crate) fn normalize_endpoint(raw: &str, tls: bool) -> Result<String, UrlError> {
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Err(UrlError::Empty);
    }
    let with_scheme = if trimmed.contains("://") {
        trimmed.to_owned()
    } else if tls {
        format!("https://{trimmed}")
    } else {
        format!("http://{trimmed}")
    };
    let url = parse_base_url(&with_scheme)?;
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

/// `rel` resolved below `base`, keeping every segment of `base`'s path
/// (`http://h/prom` + `api/v1/query` = `http://h/prom/api/v1/query`).
pub(crate) fn join_below(base: &Url, rel: &str) -> Result<Url, UrlError> {
    let mut base = base.clone();
    // `Url::join` replaces the last path segment unless the path ends with '/'.
    if !base.path().ends_with('/') {
        let path = format!("{}/", base.path());
        base.set_path(&path);
    }
    base.join(rel).map_err(|e| UrlError::Parse(e.to_string()))
}

/// `url` as text for messages, with its password (if any) replaced by `***`.
pub(crate) fn redact(url: &Url) -> String {
    let mut shown = url.clone();
    if shown.password().is_some() {
        let _ = shown.set_password(Some("***"));
    }
    shown.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_normalized() {
        assert_eq!(
            normalize_endpoint("127.0.0.1:2379", false).unwrap(),
            "http://127.0.0.1:2379"
        );
        assert_eq!(
            normalize_endpoint("pd-0:2379", true).unwrap(),
            "https://pd-0:2379"
        );
        assert_eq!(
            normalize_endpoint(" http://pd:2379/ ", false).unwrap(),
            "http://pd:2379"
        );
        assert!(normalize_endpoint("ftp://pd:2379", false).is_err());
        assert!(normalize_endpoint("http://pd:2379/?x=1", false).is_err());
        assert!(normalize_endpoint("  ", false).is_err());
    }

    #[test]
    fn base_urls_are_checked_joined_and_redacted() {
        assert_eq!(
            parse_base_url("ftp://h/"),
            Err(UrlError::Scheme("ftp".into()))
        );
        assert_eq!(
            parse_base_url("http://h/#f"),
            Err(UrlError::QueryOrFragment)
        );
        assert!(matches!(parse_base_url("h:9090"), Err(UrlError::Scheme(_))));
        assert!(matches!(parse_base_url(""), Err(UrlError::Parse(_))));
        for (base, want) in [
            ("http://h", "http://h/x/y"),
            ("http://h/p", "http://h/p/x/y"),
            ("http://h/p/", "http://h/p/x/y"),
        ] {
            let url = join_below(&parse_base_url(base).unwrap(), "x/y").unwrap();
            assert_eq!(url.as_str(), want);
        }
        let url = parse_base_url("https://u:secret@h/p").unwrap();
        assert_eq!(redact(&url), "https://u:***@h/p");
        assert_eq!(
            redact(&parse_base_url("http://u@h").unwrap()),
            "http://u@h/"
        );
    }
}

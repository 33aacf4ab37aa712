//! The wording of HTTP errors: one cause chain, transport failures in short, error bodies
//! summarised.

/// `error: cause: root cause`, without reqwest's repeated ` for url (...)` and without a cause
/// whose text the part before it already says.
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur = Some(e);
    while let Some(err) = cur {
        let text = without_url(err.to_string());
        if !parts.last().is_some_and(|p| p.contains(&text)) {
            parts.push(text);
        }
        cur = err.source();
    }
    parts.join(": ")
}

/// reqwest's message without the ` for url (...)` it appends.
fn without_url(mut text: String) -> String {
    if let Some(i) = text.find(" for url (") {
        text.truncate(i);
    }
    text
}

/// A short description of a transport error: its kind and its root cause, without the URL.
pub(super) fn describe_transport(e: &reqwest::Error) -> String {
    let mut root = None;
    let mut cur = std::error::Error::source(e);
    while let Some(s) = cur {
        root = Some(s);
        cur = s.source();
    }
    let cause = match root {
        Some(r) => r.to_string(),
        None => without_url(e.to_string()),
    };
    if e.is_connect() {
        format!("connect error: {cause}")
    } else if e.is_body() || e.is_decode() {
        format!("body error: {cause}")
    } else {
        format!("request failed: {cause}")
    }
}

/// The message of an error body on one line, at most `max_chars` characters (then `…`): a JSON
/// string is unquoted (PD's `"[PD:...]message"`), a JSON object gives its `error`, `message` or
/// `msg`, anything else is quoted as it is; empty for an empty body.
pub(super) fn summarize_error_body(body: &[u8], max_chars: usize) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    let msg = match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(serde_json::Value::Object(o)) => ["error", "message", "msg"]
            .iter()
            .find_map(|k| o.get(*k).and_then(|v| v.as_str()).map(str::to_owned))
            .unwrap_or_else(|| text.to_owned()),
        _ => text.to_owned(),
    };
    let one_line = msg.split_whitespace().collect::<Vec<_>>().join(" ");
    cut_chars(&one_line, max_chars)
}

/// The start of a body as it is (trimmed), at most `max_chars` characters (then `…`);
/// `(empty body)` for an empty one.
pub(crate) fn body_snippet(body: &[u8], max_chars: usize) -> String {
    let text = String::from_utf8_lossy(body);
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return "(empty body)".into();
    }
    cut_chars(trimmed, max_chars)
}

/// `s`, or its first `max_chars` characters followed by `…`.
fn cut_chars(s: &str, max_chars: usize) -> String {
    match s.char_indices().nth(max_chars) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use std::fmt;

    use super::*;
    use crate::sources::http::ERROR_MESSAGE_CHARS;

    #[test]
    fn error_bodies_are_unquoted_and_bounded() {
        let summarize = |b: &[u8]| summarize_error_body(b, ERROR_MESSAGE_CHARS);
        assert_eq!(
            summarize(b"\"[PD:apiutil:ErrRedirectNoLeader]redirect finds no leader\"\n"),
            "[PD:apiutil:ErrRedirectNoLeader]redirect finds no leader"
        );
        assert_eq!(summarize(b"404 page not found\n"), "404 page not found");
        assert_eq!(
            summarize(br#"{"error":"scheduler already exists"}"#),
            "scheduler already exists"
        );
        let long = "x".repeat(1000);
        assert_eq!(summarize(long.as_bytes()).chars().count(), 301);
        assert_eq!(summarize(b" \n"), "");
        assert_eq!(body_snippet(b"a\n b ", 200), "a\n b");
        assert_eq!(body_snippet("éé".as_bytes(), 1), "é…");
        assert_eq!(body_snippet(b"", 200), "(empty body)");
    }

    #[test]
    fn error_chain_drops_urls_and_repeated_causes() {
        #[derive(Debug)]
        struct E(&'static str, Option<Box<E>>);
        impl fmt::Display for E {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.0)
            }
        }
        impl std::error::Error for E {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                self.1.as_deref().map(|e| e as _)
            }
        }
        let chain = |parts: &[&'static str]| {
            let e = parts
                .iter()
                .rev()
                .fold(None, |inner, p| Some(Box::new(E(p, inner))))
                .unwrap();
            error_chain(&*e)
        };
        assert_eq!(
            chain(&[
                "error sending request for url (http://h/x)",
                "client error (Connect)",
                "tcp connect error",
                "tcp connect error",
                "Connection refused (os error 111)",
            ]),
            "error sending request: client error (Connect): tcp connect error: \
             Connection refused (os error 111)"
        );
        // A wrapper that prints its cause does not make it appear twice.
        assert_eq!(
            chain(&["bad file: no key", "no key", "x"]),
            "bad file: no key: x"
        );
    }
}

//! The exporter's own log, through `tracing`: one line per event on stderr, in logfmt
//! (`ts=2026-01-02T03:04:05.678Z level=info msg="..."`, the keys Prometheus exporters use) or
//! JSON (`{"ts":"...","level":"info","msg":"..."}`), at or above `--log.level`.
//!
//! The crate logs through [`debug`], [`info`], [`warn`] and [`error`] (or `tracing`'s macros
//! directly); before [`init`] (and in unit tests) events go nowhere.

use std::fmt::Write as _;

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The least severe level that is logged (`--log.level`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogLevel {
    /// Everything, including per-poll details.
    Debug,
    /// Start, stop, reloads and every transition (the default).
    #[default]
    Info,
    /// Failures and deprecations only.
    Warn,
    /// Errors only.
    Error,
}

/// How each line is written (`--log.format`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// `key=value` pairs (the default).
    #[default]
    Logfmt,
    /// One JSON object per line.
    Json,
}

impl LogLevel {
    fn filter(self) -> tracing::level_filters::LevelFilter {
        use tracing::level_filters::LevelFilter;
        match self {
            LogLevel::Debug => LevelFilter::DEBUG,
            LogLevel::Info => LevelFilter::INFO,
            LogLevel::Warn => LevelFilter::WARN,
            LogLevel::Error => LevelFilter::ERROR,
        }
    }
}

/// Installs the process-wide subscriber; a second call changes nothing.
pub fn init(level: LogLevel, format: LogFormat) {
    let _ = tracing_subscriber::fmt()
        .with_max_level(level.filter())
        .with_writer(std::io::stderr)
        .event_format(Line(format))
        .try_init();
}

/// The fields of one event: `message` becomes `msg`, the others keep their names.
#[derive(Default)]
struct Fields(Vec<(&'static str, String)>);

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.push(field, value.to_owned());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.push(field, format!("{value:?}"));
    }
}

impl Fields {
    fn push(&mut self, field: &Field, value: String) {
        let name = match field.name() {
            "message" => "msg",
            n => n,
        };
        self.0.push((name, value));
    }
}

struct Line(LogFormat);

impl<S, N> FormatEvent<S, N> for Line
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let ts = chrono::Utc::now()
            .format("%Y-%m-%dT%H:%M:%S%.3fZ")
            .to_string();
        let level = event.metadata().level().as_str().to_ascii_lowercase();
        let mut fields = Fields::default();
        event.record(&mut fields);
        let mut pairs = vec![("ts", ts), ("level", level)];
        pairs.extend(fields.0);
        writeln!(w, "{}", render(self.0, &pairs))
    }
}

fn render(format: LogFormat, pairs: &[(&str, String)]) -> String {
    match format {
        LogFormat::Json => {
            // Written by hand to keep the keys in order (ts, level, msg, then the fields).
            let mut out = String::from("{");
            for (i, (k, v)) in pairs.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let _ = write!(
                    out,
                    "{}:{}",
                    serde_json::Value::from(*k),
                    serde_json::Value::from(v.as_str())
                );
            }
            out.push('}');
            out
        }
        LogFormat::Logfmt => {
            let mut out = String::new();
            for (i, (k, v)) in pairs.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                let _ = write!(out, "{k}={}", logfmt_value(v, *k == "msg"));
            }
            out
        }
    }
}

/// A logfmt value: quoted when it holds a space, `=`, `"` or a control character (and the
/// message always, as Prometheus' own logs do), with `\`, `"` and newlines escaped.
fn logfmt_value(v: &str, always_quote: bool) -> String {
    let plain = !always_quote
        && !v.is_empty()
        && !v
            .chars()
            .any(|c| c == ' ' || c == '=' || c == '"' || c.is_control());
    if plain {
        return v.to_owned();
    }
    let mut out = String::with_capacity(v.len() + 2);
    out.push('"');
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Logs at debug level.
pub fn debug(msg: &str) {
    tracing::debug!("{msg}");
}

/// Logs at info level.
pub fn info(msg: &str) {
    tracing::info!("{msg}");
}

/// Logs at warn level.
pub fn warn(msg: &str) {
    tracing::warn!("{msg}");
}

/// Logs at error level.
pub fn error(msg: &str) {
    tracing::error!("{msg}");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(msg: &str) -> Vec<(&'static str, String)> {
        vec![
            ("ts", "2026-01-02T03:04:05.678Z".to_owned()),
            ("level", "warn".to_owned()),
            ("msg", msg.to_owned()),
            ("path", "/var/log/a b.log".to_owned()),
        ]
    }

    #[test]
    fn logfmt_quotes_and_escapes() {
        assert_eq!(
            render(LogFormat::Logfmt, &pairs("pd down: \"x\"\nnext")),
            "ts=2026-01-02T03:04:05.678Z level=warn msg=\"pd down: \\\"x\\\"\\nnext\" \
             path=\"/var/log/a b.log\""
        );
    }

    #[test]
    fn json_is_one_object_per_line() {
        let line = render(LogFormat::Json, &pairs("a\nb"));
        assert!(!line.contains('\n'));
        assert!(line.starts_with("{\"ts\":"), "{line}");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["level"], "warn");
        assert_eq!(v["msg"], "a\nb");
        assert_eq!(v["ts"], "2026-01-02T03:04:05.678Z");
        assert_eq!(v["path"], "/var/log/a b.log");
    }
}

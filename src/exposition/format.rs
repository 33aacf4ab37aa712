//! Exposition formats on `/metrics`: which one a scraper gets, the Prometheus text format 0.0.4
//! made from prometheus-client's OpenMetrics text, and gzip.
//!
//! - [`negotiate`] reads `Accept` as prometheus/common's `expfmt` (v0.69) does in
//!   `Negotiate` and `NegotiateIncludingOpenMetrics` (what client_golang's promhttp calls,
//!   the latter with `EnableOpenMetrics`): clauses by descending `q` (a concrete type before a
//!   wildcard on a tie, header order otherwise), the first one naming a format served wins,
//!   and the text format 0.0.4 when none does (`*/*` and no header included). Two deviations,
//!   both from RFC 9110: a clause with `q=0` is never chosen (goautoneg would), and types and
//!   parameter names compare without case. No protobuf is offered.
//! - [`to_text`] converts in one pass, without regexes: counters' `# HELP`/`# TYPE` on the
//!   `_total` name their samples carry (in OpenMetrics they name the family without it, and
//!   Prometheus files a scrape's metadata under the names these lines give), `info` as a
//!   gauge on the `_info` name, `unknown` as `untyped`, `stateset` as a gauge and
//!   `gaugehistogram` as `untyped`; `# UNIT`, `# EOF`, `_created` samples and exemplars
//!   dropped; sample timestamps from seconds to milliseconds; `\"` in HELP unescaped. Every
//!   other byte of a sample line is kept, so a series is the same in both formats (`le`
//!   values included, which client_golang's two encoders write differently).
//! - [`negotiate_encoding`] reads `Accept-Encoding` (q-values, `gzip;q=0` refuses, `*`
//!   accepts) and [`gzip`] compresses at flate2's fast level (see `BENCHMARKS.md`).

use std::io::Write as _;

/// Content type of the Prometheus text format 0.0.4.
pub const TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
/// Content type of OpenMetrics 1.0.0.
pub const OPENMETRICS_1_0_0: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Content type of OpenMetrics 0.0.1 (same text; what a scraper naming no version gets).
pub const OPENMETRICS_0_0_1: &str = "application/openmetrics-text; version=0.0.1; charset=utf-8";

/// An exposition format a scrape can get.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text format 0.0.4.
    Text,
    /// OpenMetrics 1.0.0.
    OpenMetrics1,
    /// OpenMetrics 0.0.1.
    OpenMetrics001,
}

impl Format {
    /// The `Content-Type` to answer with.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => TEXT,
            Format::OpenMetrics1 => OPENMETRICS_1_0_0,
            Format::OpenMetrics001 => OPENMETRICS_0_0_1,
        }
    }

    /// Whether the body is OpenMetrics text.
    pub fn is_openmetrics(self) -> bool {
        self != Format::Text
    }
}

/// One clause of an `Accept` header.
struct Clause<'a> {
    kind: &'a str,
    sub: &'a str,
    q: f64,
    version: Option<&'a str>,
}

fn unquote(v: &str) -> &str {
    v.strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(v)
}

/// The parameter value `q` as goautoneg reads it: unparsable is 0.
fn parse_q(v: &str) -> f64 {
    v.trim().parse::<f64>().unwrap_or(0.0)
}

fn clause(part: &str) -> Option<Clause<'_>> {
    let mut params = part.split(';');
    let range = params.next()?.trim();
    let (kind, sub) = match range.split_once('/') {
        Some((k, s)) if !s.contains('/') => (k.trim(), s.trim()),
        None if range == "*" => ("*", "*"),
        _ => return None,
    };
    let mut c = Clause {
        kind,
        sub,
        q: 1.0,
        version: None,
    };
    for p in params {
        let Some((k, v)) = p.split_once('=') else {
            continue;
        };
        let (k, v) = (k.trim(), unquote(v.trim()));
        if k.eq_ignore_ascii_case("q") {
            c.q = parse_q(v);
        } else if k.eq_ignore_ascii_case("version") {
            c.version = Some(v);
        }
    }
    Some(c)
}

/// The format to serve for this `Accept` header (`None`: no header); OpenMetrics only when
/// `openmetrics` is on and the scraper prefers it (by `q`, then order) to the text format.
pub fn negotiate(accept: Option<&str>, openmetrics: bool) -> Format {
    let Some(accept) = accept else {
        return Format::Text;
    };
    let mut clauses: Vec<Clause> = accept.split(',').filter_map(clause).collect();
    // Stable: equal q and specificity keep the header's order (as goautoneg's insertion sort
    // does for the short headers scrapers send).
    clauses.sort_by(|a, b| {
        b.q.total_cmp(&a.q)
            .then((a.kind == "*").cmp(&(b.kind == "*")))
            .then((a.sub == "*").cmp(&(b.sub == "*")))
    });
    for c in clauses.iter().filter(|c| c.q > 0.0) {
        if c.kind.eq_ignore_ascii_case("text") && c.sub.eq_ignore_ascii_case("plain") {
            if matches!(c.version, None | Some("0.0.4")) {
                return Format::Text;
            }
        } else if openmetrics
            && c.kind.eq_ignore_ascii_case("application")
            && c.sub.eq_ignore_ascii_case("openmetrics-text")
        {
            match c.version {
                Some("1.0.0") => return Format::OpenMetrics1,
                None | Some("0.0.1") => return Format::OpenMetrics001,
                Some(_) => {}
            }
        }
    }
    Format::Text
}

/// A content coding of the response body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// As is.
    Identity,
    /// gzip (`Content-Encoding: gzip`).
    Gzip,
}

/// The coding for this `Accept-Encoding` header: gzip when it is accepted (`gzip`, `x-gzip` or
/// `*`, with `q` above 0) at least as much as `identity`; identity otherwise, also when the
/// header refuses identity (a body is always sent).
pub fn negotiate_encoding(accept_encoding: Option<&str>) -> Encoding {
    let (mut gzip, mut identity, mut any) = (None, None, None);
    for part in accept_encoding.unwrap_or("").split(',') {
        let mut it = part.split(';');
        let coding = it.next().unwrap_or("").trim();
        let q = it
            .filter_map(|p| p.split_once('='))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("q"))
            .map_or(1.0, |(_, v)| parse_q(v));
        let slot = if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
            &mut gzip
        } else if coding.eq_ignore_ascii_case("identity") {
            &mut identity
        } else if coding == "*" {
            &mut any
        } else {
            continue;
        };
        *slot = Some(q);
    }
    let gzip = gzip.or(any).unwrap_or(0.0);
    let identity = identity.or(any).unwrap_or(0.0);
    if gzip > 0.0 && gzip >= identity {
        Encoding::Gzip
    } else {
        Encoding::Identity
    }
}

/// `body` gzip-compressed at flate2's fast level (1).
pub fn gzip(body: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 8 + 64),
        flate2::Compression::fast(),
    );
    // Writing into a Vec cannot fail.
    enc.write_all(body)
        .and_then(|()| enc.finish())
        .unwrap_or_default()
}

/// What `# TYPE` declared for the family being read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Family {
    /// No `_created` samples (gauge, unknown, info, stateset, none yet).
    #[default]
    Plain,
    /// Counter, histogram, summary, gaugehistogram: `<family>_created` samples are dropped.
    WithCreated,
}

/// The 0.0.4 name and type for an OpenMetrics family `name` of `kind`.
fn text_family<'a>(name: &'a str, kind: &'a str) -> (&'a str, &'static str, &'a str, Family) {
    match kind {
        "counter" => (name, "_total", "counter", Family::WithCreated),
        "info" => (name, "_info", "gauge", Family::Plain),
        "stateset" => (name, "", "gauge", Family::Plain),
        "gauge" => (name, "", "gauge", Family::Plain),
        "histogram" | "summary" => (name, "", kind, Family::WithCreated),
        // unknown, gaugehistogram (0.0.4 has no type for its _gsum/_gcount), anything else.
        "gaugehistogram" => (name, "", "untyped", Family::WithCreated),
        _ => (name, "", "untyped", Family::Plain),
    }
}

fn push_help(out: &mut String, name: &str, suffix: &str, text: &str) {
    out.push_str("# HELP ");
    out.push_str(name);
    out.push_str(suffix);
    out.push(' ');
    // OpenMetrics escapes `"` in HELP; the text format escapes only `\` and newlines.
    if memchr::memchr(b'\\', text.as_bytes()).is_none() {
        out.push_str(text);
    } else {
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            if c != '\\' {
                out.push(c);
                continue;
            }
            match chars.next() {
                Some('"') => out.push('"'),
                Some(n) => {
                    out.push('\\');
                    out.push(n);
                }
                None => out.push('\\'),
            }
        }
    }
    out.push('\n');
}

/// The byte index just past a sample's series (name and label set) in `line`, reading label
/// values with their escapes (a value may hold `}`, `#` or spaces).
fn series_end(line: &str) -> usize {
    let b = line.as_bytes();
    let name_end = memchr::memchr2(b'{', b' ', b).unwrap_or(b.len());
    if b.get(name_end) != Some(&b'{') {
        return name_end;
    }
    let mut i = name_end + 1;
    let mut quoted = false;
    while i < b.len() {
        match (quoted, b[i]) {
            (true, b'\\') => i += 1,
            (_, b'"') => quoted = !quoted,
            (false, b'}') => return i + 1,
            _ => {}
        }
        i += 1;
    }
    b.len()
}

/// Pushes a sample line without its exemplar, its timestamp in milliseconds.
fn push_sample(out: &mut String, line: &str) {
    let b = line.as_bytes();
    // Fast path: no exemplar (`#`) and no timestamp (one token after the series).
    let has_hash = memchr::memchr(b'#', b).is_some();
    let end = if has_hash {
        series_end(line)
    } else {
        match memchr::memrchr(b'}', b) {
            Some(i) => i + 1,
            None => memchr::memchr(b' ', b).unwrap_or(b.len()),
        }
    };
    // The usual line, ` value` after the series: kept as it is.
    if let [b' ', value @ ..] = &b[end..]
        && !has_hash
        && !value.is_empty()
        && memchr::memchr(b' ', value).is_none()
    {
        out.push_str(line);
        out.push('\n');
        return;
    }
    let (series, rest) = line.split_at(end);
    let rest = match has_hash.then(|| rest.find('#')).flatten() {
        Some(i) => &rest[..i],
        None => rest,
    };
    let mut tokens = rest.split_ascii_whitespace();
    let (Some(value), ts) = (tokens.next(), tokens.next()) else {
        return; // No value: not a sample.
    };
    out.push_str(series);
    out.push(' ');
    out.push_str(value);
    if let Some(Ok(secs)) = ts.map(str::parse::<f64>) {
        let _ = std::fmt::Write::write_fmt(out, format_args!(" {}", (secs * 1000.0).round()));
    }
    out.push('\n');
}

/// The Prometheus text format 0.0.4 of an OpenMetrics exposition (see the module doc).
pub fn to_text(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len() + openmetrics.len() / 64);
    let mut conv = TextConverter::default();
    for line in openmetrics.lines() {
        conv.line(line, &mut out);
    }
    conv.finish(&mut out);
    out
}

/// [`to_text`] a line at a time, for an exposition that is never held whole (the gzipped
/// `/metrics` is compressed as it is rendered).
#[derive(Debug, Default)]
pub struct TextConverter {
    /// A HELP line waits for its TYPE, which names the family's 0.0.4 name.
    help: Option<(String, String)>,
    /// The current family's OpenMetrics name and kind.
    family: (String, Family),
    /// `# EOF` was read: nothing after it counts.
    done: bool,
}

impl TextConverter {
    /// Converts one OpenMetrics line (without its newline), appending the result to `out`.
    pub fn line(&mut self, line: &str, out: &mut String) {
        if self.done {
            return;
        }
        if let Some(meta) = line.strip_prefix("# ") {
            let (keyword, rest) = meta.split_once(' ').unwrap_or((meta, ""));
            let (name, arg) = rest.split_once(' ').unwrap_or((rest, ""));
            match keyword {
                "HELP" => {
                    if let Some((n, t)) = self.help.replace((name.to_owned(), arg.to_owned())) {
                        push_help(out, &n, "", &t);
                    }
                }
                "TYPE" => {
                    let (base, suffix, kind, f) = text_family(name, arg);
                    match self.help.take() {
                        Some((n, t)) if n == name => push_help(out, base, suffix, &t),
                        Some((n, t)) => push_help(out, &n, "", &t),
                        None => {}
                    }
                    out.push_str("# TYPE ");
                    out.push_str(base);
                    out.push_str(suffix);
                    out.push(' ');
                    out.push_str(kind);
                    out.push('\n');
                    self.family.0.clear();
                    self.family.0.push_str(name);
                    self.family.1 = f;
                }
                "EOF" => self.done = true,
                _ => {} // UNIT, and nothing else is allowed.
            }
            return;
        }
        if line.starts_with('#') || line.is_empty() {
            return;
        }
        if let Some((n, t)) = self.help.take() {
            push_help(out, &n, "", &t);
        }
        if self.family.1 == Family::WithCreated
            && let Some(after) = line
                .strip_prefix(self.family.0.as_str())
                .and_then(|r| r.strip_prefix("_created"))
            && matches!(after.as_bytes().first(), Some(b'{' | b' '))
        {
            return;
        }
        push_sample(out, line);
    }

    /// Ends the conversion: a HELP line still waiting for its TYPE is written as it is.
    pub fn finish(self, out: &mut String) {
        if let Some((n, t)) = self.help {
            push_help(out, &n, "", &t);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROMETHEUS_2_42: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    const PROMETHEUS_2_49: &str = "application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2";
    const PROMETHEUS_3: &str = "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,application/openmetrics-text;version=0.0.1;q=0.5,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2";
    const PROMETHEUS_NATIVE_HISTOGRAMS: &str = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited,application/openmetrics-text;version=1.0.0;q=0.8,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    const PROMETHEUS_TEXT_ONLY: &str = "text/plain;version=0.0.4;q=0.6,*/*;q=0.5";

    #[test]
    fn prometheus_accept_headers_get_openmetrics_only_when_it_is_offered() {
        for h in [
            PROMETHEUS_2_42,
            PROMETHEUS_2_49,
            PROMETHEUS_3,
            PROMETHEUS_NATIVE_HISTOGRAMS,
        ] {
            assert_eq!(negotiate(Some(h), true), Format::OpenMetrics1, "{h}");
            assert_eq!(negotiate(Some(h), false), Format::Text, "{h}");
        }
        // scrape_protocols: [PrometheusText0.0.4]
        assert_eq!(negotiate(Some(PROMETHEUS_TEXT_ONLY), true), Format::Text);
        // scrape_protocols: [PrometheusText1.0.0, OpenMetricsText0.0.1]: 1.0.0 text is not
        // served, so OpenMetrics 0.0.1.
        let h = "text/plain;version=1.0.0;escaping=allow-utf-8;q=0.6,application/openmetrics-text;version=0.0.1;q=0.5,*/*;q=0.4";
        assert_eq!(negotiate(Some(h), true), Format::OpenMetrics001);
        assert_eq!(negotiate(Some(h), false), Format::Text);
    }

    #[test]
    fn text_without_a_header_a_wildcard_or_anything_served() {
        for h in [
            None,
            Some(""),
            Some("*/*"),
            Some("text/*"),
            Some("application/json"),
            Some("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
            Some("application/openmetrics-text;version=2.0.0"),
            Some("application/openmetrics-text;q=0"),
            Some("garbage/with/slashes, ;;;, =,"),
        ] {
            assert_eq!(negotiate(h, true), Format::Text, "{h:?}");
        }
    }

    #[test]
    fn q_values_order_and_case() {
        let om_over_text =
            "text/plain;version=0.0.4;q=0.3,application/openmetrics-text;version=1.0.0;q=0.5";
        assert_eq!(negotiate(Some(om_over_text), true), Format::OpenMetrics1);
        let text_over_om = "application/openmetrics-text;version=1.0.0;q=0.3,text/plain;q=0.9";
        assert_eq!(negotiate(Some(text_over_om), true), Format::Text);
        // Equal q: the header's order.
        let tie = "text/plain;version=0.0.4;q=0.5,application/openmetrics-text;version=1.0.0;q=0.5";
        assert_eq!(negotiate(Some(tie), true), Format::Text);
        let tie = "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.5";
        assert_eq!(negotiate(Some(tie), true), Format::OpenMetrics1);
        // No version: OpenMetrics 0.0.1 (expfmt); unparsable q is 0 and never chosen.
        assert_eq!(
            negotiate(Some("application/openmetrics-text"), true),
            Format::OpenMetrics001
        );
        assert_eq!(
            negotiate(Some("application/openmetrics-text;q=abc"), true),
            Format::Text
        );
        assert_eq!(
            negotiate(
                Some(" Application/OpenMetrics-Text ; Version=\"1.0.0\" "),
                true
            ),
            Format::OpenMetrics1
        );
        // A refused text format does not make OpenMetrics appear when it is off.
        assert_eq!(
            negotiate(Some("application/openmetrics-text, text/plain;q=0"), false),
            Format::Text
        );
    }

    #[test]
    fn content_types() {
        assert_eq!(
            Format::Text.content_type(),
            "text/plain; version=0.0.4; charset=utf-8"
        );
        assert_eq!(
            Format::OpenMetrics1.content_type(),
            "application/openmetrics-text; version=1.0.0; charset=utf-8"
        );
        assert_eq!(
            Format::OpenMetrics001.content_type(),
            "application/openmetrics-text; version=0.0.1; charset=utf-8"
        );
    }

    #[test]
    fn accept_encoding() {
        use Encoding::*;
        for (h, want) in [
            (None, Identity),
            (Some(""), Identity),
            (Some("gzip"), Gzip),
            (Some("GZIP"), Gzip),
            (Some("x-gzip"), Gzip),
            (Some("gzip, deflate, br"), Gzip),
            (Some("br;q=1.0, gzip;q=0.8, *;q=0.1"), Gzip),
            (Some("gzip;q=0"), Identity),
            (Some("gzip;q=0.0, *"), Identity),
            (Some("*"), Gzip),
            (Some("*;q=0"), Identity),
            (Some("identity"), Identity),
            (Some("identity;q=1, gzip;q=0.5"), Identity),
            (Some("gzip;q=0.5"), Gzip),
            (Some("gzip, identity"), Gzip),
            (Some("deflate, br"), Identity),
            (Some("gzip;q=nope"), Identity),
        ] {
            assert_eq!(negotiate_encoding(h), want, "{h:?}");
        }
    }

    #[test]
    fn gzip_round_trip() {
        let body = "tikv_store_leaders{store=\"1\"} 1234\n".repeat(1000);
        let z = gzip(body.as_bytes());
        assert_eq!(&z[..2], &[0x1f, 0x8b]);
        assert!(z.len() < body.len() / 10, "{}", z.len());
        let mut back = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&z[..]), &mut back)
            .unwrap();
        assert_eq!(back, body);
    }

    #[test]
    fn converts_every_openmetrics_construct() {
        let om = "\
# HELP requests Requests.
# TYPE requests counter
# UNIT requests seconds
requests_total{code=\"200\"} 3 # {trace_id=\"a}b # c\"} 1.0 1700000000.5
requests_created{code=\"200\"} 1.7e9
# HELP build Build.
# TYPE build info
build_info{version=\"1\"} 1
# HELP mystery Unknown \\\"type\\\" \\\\ \\n.
# TYPE mystery unknown
mystery 5
# HELP lat Latency.
# TYPE lat histogram
lat_sum{am=\"x\"} 0.5
lat_count{am=\"x\"} 2
lat_bucket{le=\"0.005\",am=\"x\"} 1 # {id=\"1\"} 0.004
lat_bucket{le=\"+Inf\",am=\"x\"} 2
lat_created{am=\"x\"} 1.7e9
# TYPE gauge_created gauge
gauge_created 1
# HELP stamped With a timestamp.
# TYPE stamped gauge
stamped{v=\"has } and # and \\\" inside\"} 1.5 1700000000.123
stamped 2 1700000000
# TYPE st stateset
st{st=\"a\"} 1
# HELP orphan Help without a type.
orphan 1
# EOF
";
        let want = "\
# HELP requests_total Requests.
# TYPE requests_total counter
requests_total{code=\"200\"} 3
# HELP build_info Build.
# TYPE build_info gauge
build_info{version=\"1\"} 1
# HELP mystery Unknown \"type\" \\\\ \\n.
# TYPE mystery untyped
mystery 5
# HELP lat Latency.
# TYPE lat histogram
lat_sum{am=\"x\"} 0.5
lat_count{am=\"x\"} 2
lat_bucket{le=\"0.005\",am=\"x\"} 1
lat_bucket{le=\"+Inf\",am=\"x\"} 2
# TYPE gauge_created gauge
gauge_created 1
# HELP stamped With a timestamp.
# TYPE stamped gauge
stamped{v=\"has } and # and \\\" inside\"} 1.5 1700000000123
stamped 2 1700000000000
# TYPE st gauge
st{st=\"a\"} 1
# HELP orphan Help without a type.
orphan 1
";
        assert_eq!(to_text(om), want);
    }

    #[test]
    fn nothing_after_eof_and_no_trailing_help_lost() {
        assert_eq!(to_text("a 1\n# EOF\nb 2\n"), "a 1\n");
        assert_eq!(to_text("# HELP x The x.\n"), "# HELP x The x.\n");
        assert_eq!(to_text(""), "");
    }
}

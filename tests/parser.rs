//! Parser tests: every real fixture line, every grammar rule of `log-format.md`, and property
//! tests that strings encoded the way TiKV and PD encode them decode back to the original.

use chrono::{FixedOffset, TimeZone, Utc};
use proptest::prelude::*;
use tikv_health_exporter::logs::parse::{ErrorKind, Format, Level, LogLine, parse_line};

const FIXTURE: &str = include_str!("data/tikv-pd-real-lines.log");

/// TiKV's `write_escaped_str`: JSON-quote when any byte is <= 0x20 or one of `" = [ ]`.
fn tikv_encode(s: &str) -> String {
    if s.bytes()
        .any(|b| b <= 0x20 || matches!(b, b'"' | b'=' | b'[' | b']'))
    {
        serde_json::to_string(s).unwrap()
    } else {
        s.to_owned()
    }
}

/// pingcap/log's zap text encoder: also quotes on `\`; controls other than \n \r \t as \u00XX.
fn go_encode(s: &str) -> String {
    if !s
        .bytes()
        .any(|b| b <= 0x20 || matches!(b, b'"' | b'=' | b'[' | b']' | b'\\'))
    {
        return s.to_owned();
    }
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Line `n` (1-based, as `grep -n` shows it) of the real-lines fixture.
fn line(n: usize) -> &'static str {
    FIXTURE.lines().nth(n - 1).unwrap()
}

fn parse(s: &str) -> LogLine<'_> {
    parse_line(s.as_bytes()).unwrap_or_else(|e| panic!("{e}: {s}"))
}

fn err(s: &str) -> ErrorKind {
    match parse_line(s.as_bytes()) {
        Ok(l) => panic!("expected an error, parsed {l:?}"),
        Err(e) => e.kind,
    }
}

fn msg(l: &LogLine<'_>) -> Option<String> {
    l.message.map(|m| m.decode().into_owned())
}

fn fields(l: &LogLine<'_>) -> Vec<(String, String)> {
    l.fields()
        .map(|f| (f.key.decode().into_owned(), f.value.decode().into_owned()))
        .collect()
}

fn kv(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Re-encodes a parsed text line (TiKV rules, or Go rules for `.go` sources).
fn reencode(l: &LogLine<'_>) -> String {
    let source = l.source.map(|s| s.decode().into_owned());
    let go = source.as_deref().is_some_and(|s| s.contains(".go:"));
    let enc = |s: &str| if go { go_encode(s) } else { tikv_encode(s) };
    let mut out = String::new();
    if let Some(t) = l.time {
        out.push_str(&format!(
            "[{}] ",
            t.to_datetime().format("%Y/%m/%d %H:%M:%S%.3f %:z")
        ));
    }
    out.push_str(&format!("[{}]", l.level));
    if let Some(s) = &source {
        out.push_str(&format!(" [{s}]"));
    }
    if let Some(m) = msg(l) {
        out.push_str(&format!(" [{}]", enc(&m)));
    }
    for (k, v) in fields(l) {
        out.push_str(&format!(" [{}={}]", enc(&k), enc(&v)));
    }
    out
}

#[test]
fn every_real_fixture_line_decodes_exactly() {
    let mut parsed = 0;
    for (i, line) in FIXTURE.lines().enumerate() {
        let n = i + 1;
        if n == 48 || n == 49 {
            assert_eq!(err(line), ErrorKind::NoHeader, "line {n} is shell output");
            continue;
        }
        let l = parse(line);
        assert_eq!(l.format, Format::Text);
        // Re-encoding the decoded values must reproduce the line byte for byte, which pins
        // every decoded message, key and value (a trailing bare `[]` carries nothing).
        let expected = line.strip_suffix(" []").unwrap_or(line);
        assert_eq!(reencode(&l), expected, "line {n}");
        parsed += 1;
    }
    assert_eq!(parsed, 113);
}

#[test]
fn tikv_line_with_fields() {
    let l = parse(line(1));
    assert_eq!(
        l.time.unwrap().to_rfc3339(),
        "2024-07-12T09:26:09.997+00:00"
    );
    assert_eq!(l.level, Level::Info);
    assert_eq!(l.source.unwrap().decode(), "peer.rs:469");
    assert_eq!(msg(&l).as_deref(), Some("on split"));
    assert_eq!(
        fields(&l),
        kv(&[
            ("split_keys", "key 7480000000000000FF2F00000000000000F8"),
            ("peer_id", "3"),
            ("region_id", "2"),
        ])
    );
    assert_eq!(l.field(&["region_id"]).unwrap().to_u64(), Some(2));
}

#[test]
fn quoted_message_with_brackets_and_quoted_keys() {
    let line = line(33);
    let l = parse(line);
    assert_eq!(
        msg(&l).as_deref(),
        Some(
            "[logterm: 40, index: 75, vote: 0] ignored vote from 304593377 [logterm: 40, index: 75]: lease is not expired"
        )
    );
    let f = fields(&l);
    assert_eq!(f[0], ("msg type".into(), "MsgRequestPreVote".into()));
    assert_eq!(f[1], ("remaining ticks".into(), "10".into()));
    assert_eq!(f.last().unwrap(), &("thread_id".into(), "224".into()));
    assert_eq!(f.len(), 12);
}

#[test]
fn quoted_values_hold_brackets_quotes_and_equals() {
    let l = parse(line(34));
    assert_eq!(
        fields(&l),
        kv(&[
            (
                "error",
                "Grpc(RpcFailure(RpcStatus { code: 4-DEADLINE_EXCEEDED, message: \"Deadline Exceeded\", details: [] }))"
            ),
            ("endpoints", "http://25.57.50.4:2389"),
            ("thread_id", "12"),
        ])
    );
    let l = parse(line(75));
    assert_eq!(
        fields(&l),
        kv(&[(
            "error",
            "[PD:grpc:ErrGRPCRecv]receive response error: rpc error: code = Canceled desc = context canceled"
        )])
    );
}

#[test]
fn empty_values_and_trailing_empty_brackets() {
    // [to=]
    let l = parse(line(78));
    assert_eq!(fields(&l), kv(&[("from", "tc-pd-0"), ("to", "")]));
    // ["additional info"=]
    let l = parse(line(99));
    assert_eq!(
        fields(&l).last().unwrap(),
        &("additional info".into(), "".into())
    );
    // ["reset the timestamp in memory"] []
    let l = parse(line(83));
    assert_eq!(msg(&l).as_deref(), Some("reset the timestamp in memory"));
    assert!(fields(&l).is_empty());
    // [cost=2.764836133s] []
    let l = parse(line(91));
    assert_eq!(
        fields(&l).last().unwrap(),
        &("cost".into(), "2.764836133s".into())
    );
}

#[test]
fn unknown_source_bare_messages_and_thread_ids() {
    let l = parse(line(65));
    assert_eq!(l.source.unwrap().decode(), "<unknown>");
    assert_eq!(
        msg(&l).as_deref(),
        Some("TCP_USER_TIMEOUT is available. TCP_USER_TIMEOUT will be used thereafter")
    );
    let l = parse(line(10));
    assert_eq!(msg(&l).as_deref(), Some("newRaft"));
    assert_eq!(fields(&l)[1], ("last term".into(), "5".into()));
    let l = parse(line(94));
    assert_eq!(msg(&l).as_deref(), Some("error-response"));
    let l = parse(line(106));
    assert_eq!(msg(&l).as_deref(), Some("debug.SetMemoryLimit"));
    let l = parse(line(42));
    assert_eq!(fields(&l), kv(&[("thread_id", "0x5")]));
}

#[test]
fn escaped_quotes_and_backticks_in_fatal_messages() {
    let l = parse(line(47));
    assert_eq!(l.level, Level::Fatal);
    assert_eq!(
        msg(&l).as_deref(),
        Some(
            "called `Result::unwrap()` on an `Err` value: Other(\"[components/encryption/src/encrypted_file/header.rs:18]: unknown version 2\")"
        )
    );
}

#[test]
fn times_keep_their_own_offset() {
    let cases = [
        (
            42,
            "2024-01-10T11:27:07.280-08:00",
            -8 * 3600,
            "2024-01-10T19:27:07.280Z",
        ),
        (
            44,
            "2024-11-13T14:09:33.341+05:30",
            5 * 3600 + 1800,
            "2024-11-13T08:39:33.341Z",
        ),
        (
            54,
            "2023-06-22T22:49:47.423+07:00",
            7 * 3600,
            "2023-06-22T15:49:47.423Z",
        ),
    ];
    for (idx, rfc, off, utc) in cases {
        let t = parse(line(idx)).time.unwrap();
        assert_eq!(t.to_rfc3339(), rfc);
        let dt = t.to_datetime();
        assert_eq!(dt.offset(), &FixedOffset::east_opt(off).unwrap());
        assert_eq!(
            dt.with_timezone(&Utc)
                .format("%Y-%m-%dT%H:%M:%S%.3fZ")
                .to_string(),
            utc
        );
        assert_eq!(t.timestamp_millis(), dt.timestamp_millis());
    }
}

#[test]
fn lines_without_time() {
    // TiKV log.enable-timestamp = false keeps the separating space.
    let l = parse(" [INFO] [mod.rs:469] [Welcome] [a=1]");
    assert!(l.time.is_none());
    assert_eq!(msg(&l).as_deref(), Some("Welcome"));
    assert_eq!(fields(&l), kv(&[("a", "1")]));
    // PD disable-timestamp starts with the level (pingcap/log tests, verbatim).
    let l = parse(
        r#"[DEBUG] [zap_log_test.go:120] ["Slow query"] [sql="SELECT * FROM TABLE\n\tWHERE ID=\"abc\""] [duration=1.3s] ["process keys"=1500]"#,
    );
    assert!(l.time.is_none());
    assert_eq!(l.level, Level::Debug);
    assert_eq!(
        fields(&l),
        kv(&[
            ("sql", "SELECT * FROM TABLE\n\tWHERE ID=\"abc\""),
            ("duration", "1.3s"),
            ("process keys", "1500"),
        ])
    );
    let l = parse("[WARN] [zap_log_test.go:130] [Type] [Counter=NaN] [Score=+Inf]");
    assert_eq!(fields(&l), kv(&[("Counter", "NaN"), ("Score", "+Inf")]));
}

#[test]
fn every_level() {
    for lv in Level::ALL {
        let line = format!("[2019/01/15 13:40:39.619 +08:00] [{lv}] [mod.rs:1] [x]");
        assert_eq!(parse(&line).level, lv);
    }
    assert_eq!(
        err("[2019/01/15 13:40:39.619 +08:00] [NOTICE] [mod.rs:1] [x]"),
        ErrorKind::BadLevel
    );
    assert_eq!(
        err("[2019/01/15 13:40:39.619 +08:00] [info] [mod.rs:1] [x]"),
        ErrorKind::BadLevel
    );
    assert_eq!(err("[2019/01/15 13:40:39.619 +08:00]"), ErrorKind::BadLevel);
}

#[test]
fn pd_omits_source_or_message() {
    // Caller undefined: no source bracket at all.
    let l = parse(r#"[2024/05/29 19:11:43.075 +08:00] [INFO] ["raft cluster is stopped"] [a=b]"#);
    assert!(l.source.is_none());
    assert_eq!(msg(&l).as_deref(), Some("raft cluster is stopped"));
    assert_eq!(fields(&l), kv(&[("a", "b")]));
    // Empty message: the first bracket after the source is a field.
    let l = parse(
        r#"[2024/05/29 19:11:43.075 +08:00] [ERROR] [server.go:12] [err="boom [x]"] [errVerbose="a\nb"]"#,
    );
    assert_eq!(l.source.unwrap().decode(), "server.go:12");
    assert!(l.message.is_none());
    assert_eq!(
        fields(&l),
        kv(&[("err", "boom [x]"), ("errVerbose", "a\nb")])
    );
    // Both omitted, quoted key first.
    let l = parse(r#"[ERROR] ["a key"=v]"#);
    assert!(l.source.is_none() && l.message.is_none());
    assert_eq!(fields(&l), kv(&[("a key", "v")]));
    // Header only.
    let l = parse("[2018/12/15 14:20:11.015 +08:00] [INFO] [tikv-server.rs:13]");
    assert!(l.message.is_none() && fields(&l).is_empty());
}

#[test]
fn tikv_empty_message_is_an_empty_string() {
    let l = parse("[2019/01/15 13:40:39.619 +08:00] [INFO] [mod.rs:469] []");
    assert_eq!(msg(&l).as_deref(), Some(""));
    let l = parse("[2019/01/15 13:40:39.619 +08:00] [INFO] [mod.rs:469] [] [raft_id=1]");
    assert_eq!(msg(&l).as_deref(), Some(""));
    assert_eq!(fields(&l), kv(&[("raft_id", "1")]));
}

#[test]
fn tikv_logger_test_expectations() {
    // Verbatim from tikv_util/src/logger/mod.rs tests.
    let l = parse(
        r#"[2019/01/15 13:40:39.619 +08:00] [INFO] [mod.rs:460] ["failed to \"fetch\" [URL]: http://example.com"]"#,
    );
    assert_eq!(
        msg(&l).as_deref(),
        Some("failed to \"fetch\" [URL]: http://example.com")
    );
    let l = parse("[2019/01/15 13:40:39.619 +08:00] [INFO] [mod.rs:471] [欢迎]");
    assert_eq!(msg(&l).as_deref(), Some("欢迎"));
    let l = parse(r#"[2019/01/15 13:40:39.619 +08:00] [INFO] [mod.rs:472] ["欢迎 TiKV"]"#);
    assert_eq!(msg(&l).as_deref(), Some("欢迎 TiKV"));
    let l = parse(
        r#"[2019/01/16 16:56:04.854 +08:00] [INFO] [mod.rs:391] ["more type tests"] [str_array="[\"💖\", \"\\\\x80\"]"] [u8=34] [is_None=None] ["store ids"="[1, 2, 3]"] [url-peers="[\"peer1\", \"peer 2\"]"] [field1=no_quote]"#,
    );
    assert_eq!(
        fields(&l),
        kv(&[
            ("str_array", "[\"💖\", \"\\\\x80\"]"),
            ("u8", "34"),
            ("is_None", "None"),
            ("store ids", "[1, 2, 3]"),
            ("url-peers", "[\"peer1\", \"peer 2\"]"),
            ("field1", "no_quote"),
        ])
    );
}

#[test]
fn every_json_escape_including_surrogate_pairs() {
    let l = parse(
        r#"[2019/01/15 13:40:39.619 +08:00] [INFO] [a.rs:1] ["q\" b\\ s\/ \b\f\n\r\t \u00e9 \u263A \ud83d\ude00 lone\ud800x"]"#,
    );
    assert_eq!(
        msg(&l).as_deref(),
        Some("q\" b\\ s/ \u{8}\u{c}\n\r\t é ☺ 😀 lone\u{fffd}x")
    );
    assert_eq!(
        err(r#"[2019/01/15 13:40:39.619 +08:00] [INFO] [a.rs:1] ["bad \q escape"]"#),
        ErrorKind::BadEscape
    );
    assert_eq!(
        err(r#"[2019/01/15 13:40:39.619 +08:00] [INFO] [a.rs:1] ["bad \u12 escape"]"#),
        ErrorKind::BadEscape
    );
    assert_eq!(
        err(r#"[2019/01/15 13:40:39.619 +08:00] [INFO] [a.rs:1] ["never closed]"#),
        ErrorKind::UnterminatedString
    );
}

#[test]
fn crlf_and_invalid_utf8() {
    let l = parse("[2019/01/15 13:40:39.619 +08:00] [INFO] [a.rs:1] [hi] [k=v]\r\n");
    assert_eq!(fields(&l), kv(&[("k", "v")]));
    let mut raw =
        b"[2019/01/15 13:40:39.619 +08:00] [WARN] [a.rs:1] [bad\xff\xfebytes] [k=\xc3]".to_vec();
    let l = parse_line(&raw).unwrap();
    assert_eq!(msg(&l).as_deref(), Some("bad\u{fffd}\u{fffd}bytes"));
    assert_eq!(fields(&l), kv(&[("k", "\u{fffd}")]));
    raw.extend_from_slice(b" [\"q\xff\"=x]");
    let l = parse_line(&raw).unwrap();
    assert_eq!(fields(&l)[1], ("q\u{fffd}".into(), "x".into()));
}

#[test]
fn container_runtime_prefix_is_kept_as_written() {
    let line = "2023-01-07T08:49:18.857903341Z [2023/01/07 08:49:18.857 +00:00] [WARN] [snapshot.go:849] [\"this table is ineligible to replicate\"] [tableName=student] [tableID=82]";
    let l = parse(line);
    assert_eq!(l.docker_time, Some("2023-01-07T08:49:18.857903341Z"));
    assert_eq!(
        l.time.unwrap().to_rfc3339(),
        "2023-01-07T08:49:18.857+00:00"
    );
    assert_eq!(
        fields(&l),
        kv(&[("tableName", "student"), ("tableID", "82")])
    );
    // kubectl trims trailing zeros; other runtimes write an offset; no fraction at all.
    for prefix in [
        "2023-01-07T08:49:18.8579Z",
        "2023-01-07T08:49:18.857903341+02:00",
        "2023-01-07T08:49:18Z",
    ] {
        let line = format!("{prefix} [INFO] [a.rs:1] [x]");
        let l = parse(&line);
        assert_eq!(l.docker_time, Some(prefix));
        assert!(l.time.is_none());
    }
    assert_eq!(
        err("2023-01-07T08:49:18.Z [INFO] [a.rs:1] [x]"),
        ErrorKind::BadDockerTime
    );
    assert_eq!(
        err("2023-01-07T08:49:18.1234567890Z [INFO] [a.rs:1] [x]"),
        ErrorKind::BadDockerTime
    );
    // A prefix before a JSON-format line.
    let l = parse(r#"2023-01-07T08:49:18.857903341Z {"level":"INFO","message":"hi"}"#);
    assert_eq!(l.format, Format::Json);
    assert_eq!(l.docker_time, Some("2023-01-07T08:49:18.857903341Z"));
}

#[test]
fn json_format_lines() {
    let l = parse(
        r#"{"time":"2020/05/16 15:49:52.450 +08:00","level":"WARN","caller":"mod.rs:473","message":"Type","Other":null,"Score":null,"Counter":null,"thread_id":7}"#,
    );
    assert_eq!(l.format, Format::Json);
    assert_eq!(
        l.time.unwrap().to_rfc3339(),
        "2020-05-16T15:49:52.450+08:00"
    );
    assert_eq!(l.level, Level::Warn);
    assert_eq!(l.source.unwrap().decode(), "mod.rs:473");
    assert_eq!(msg(&l).as_deref(), Some("Type"));
    assert_eq!(
        fields(&l),
        kv(&[
            ("Other", "null"),
            ("Score", "null"),
            ("Counter", "null"),
            ("thread_id", "7")
        ])
    );
    // pingcap/log JSON fixture (no time), keys in another order, numbers and nested values.
    let l = parse(
        r#"{"level":"INFO","caller":"zap_log_test.go:286","message":"failed to \"fetch\" URL","url":"http://example.com","attempt":3,"backoff":"1s","obj":{"a":[1,"]"]},"neg":-1.5e3}"#,
    );
    assert!(l.time.is_none());
    assert_eq!(msg(&l).as_deref(), Some("failed to \"fetch\" URL"));
    assert_eq!(
        fields(&l),
        kv(&[
            ("url", "http://example.com"),
            ("attempt", "3"),
            ("backoff", "1s"),
            ("obj", r#"{"a":[1,"]"]}"#),
            ("neg", "-1.5e3"),
        ])
    );
    // zap's JSON encoder may write lower-case levels.
    assert_eq!(parse(r#"{"level":"info","msg":"x"}"#).level, Level::Info);
    assert_eq!(
        err(r#"{"time":"2020/05/16 15:49:52.450 +08:00","message":"x"}"#),
        ErrorKind::JsonWithoutLevel
    );
    assert_eq!(
        err(r#"{"level":"INFO","message":"x"} trailing"#),
        ErrorKind::BadJson
    );
    assert_eq!(err(r#"{"level":"INFO","message":"x""#), ErrorKind::BadJson);
    assert_eq!(
        err(r#"{"level":"INFO","time":"yesterday"}"#),
        ErrorKind::BadTime
    );
    assert_eq!(err(r#"{"level":"NOPE"}"#), ErrorKind::BadLevel);
}

#[test]
fn invalid_times() {
    for t in [
        "2019/13/15 13:40:39.619 +08:00",
        "2019/02/29 13:40:39.619 +08:00",
        "2019/04/31 13:40:39.619 +08:00",
        "2019/01/15 24:40:39.619 +08:00",
        "2019/01/15 13:60:39.619 +08:00",
        "2019/01/15 13:40:39.619 +24:00",
        "2019/01/15 13:40:39.619 Z",
        "2019/01/15 13:40:39 +08:00",
        "2019-01-15 13:40:39.619 +08:00",
    ] {
        assert_eq!(
            err(&format!("[{t}] [INFO] [a.rs:1] [x]")),
            ErrorKind::BadTime,
            "{t}"
        );
    }
    // Leap day in a leap year is fine.
    parse("[2024/02/29 13:40:39.619 +08:00] [INFO] [a.rs:1] [x]");
}

#[test]
fn structural_errors() {
    let h = "[2019/01/15 13:40:39.619 +08:00] [INFO] [a.rs:1]";
    assert_eq!(err(&format!("{h}  [x]")), ErrorKind::BadSeparator);
    assert_eq!(err(&format!("{h} [x][a=b]")), ErrorKind::BadSeparator);
    assert_eq!(
        err(&format!("{h} [x] [a=b] [oops]")),
        ErrorKind::FieldWithoutEquals
    );
    assert_eq!(err(&format!("{h} [x] [a=b")), ErrorKind::UnclosedBracket);
    assert_eq!(
        err(&format!("{h} [x] [\"k\"x=b]")),
        ErrorKind::BadQuotedToken
    );
    assert_eq!(
        err(&format!("{h} [x] [k=\"v\"x]")),
        ErrorKind::BadQuotedToken
    );
    assert_eq!(err(""), ErrorKind::Empty);
    assert_eq!(err("   \r\n"), ErrorKind::Empty);
    // Trailing blanks are harmless.
    assert_eq!(
        fields(&parse(&format!("{h} [x] [a=b]  "))),
        kv(&[("a", "b")])
    );
}

#[test]
fn not_unified_format_lines_are_malformed_not_panics() {
    for line in [
        "starting tikv-server ...",
        "2018/02/24 16:25:56.782 raft.rs:732: [INFO] [region 76] 77 became follower at term 7",
        "2018/11/07 12:05:02.658 <unknown>:795: [INFO] [region 96981] 96983 became follower at term 107",
        "2020/02/18 03:19:26.490 INFO raft_client.rs:54: server: new connection with tikv endpoint",
        "2018/12/10 08:26:38.959 raft.go:712: [info] b798afebf07ff3aa became leader at term 2",
        "Release Version:   2.1.11",
        "panic: parsing \"/debug/pprof/trace \": at offset 0: invalid method",
        "goroutine 190 [running]:",
        "        /usr/local/go/src/net/http/server.go:1801 +0x13a",
        "   0: backtrace::backtrace::trace",
    ] {
        assert_eq!(err(line), ErrorKind::NoHeader, "{line}");
    }
    let e = parse_line(b"goroutine 190 [running]:").unwrap_err();
    assert_eq!(
        e.to_string(),
        "not a unified log line: no [time] or [LEVEL] header at byte 0"
    );
}

#[test]
fn field_lookup_accepts_either_spelling() {
    let l = parse(line(93));
    assert_eq!(
        l.field(&["region_id", "region-id"]).unwrap().to_u64(),
        Some(1_232_323)
    );
    assert!(l.field(&["nope"]).is_none());
}

#[test]
fn datetime_matches_chrono_for_the_fixture() {
    let t = parse(line(20)).time.unwrap();
    let expect = FixedOffset::east_opt(8 * 3600)
        .unwrap()
        .with_ymd_and_hms(2022, 3, 1, 19, 9, 54)
        .unwrap()
        + chrono::Duration::milliseconds(620);
    assert_eq!(t.to_datetime(), expect);
}

/// Strings that exercise every quoting decision: controls, quotes, brackets, `=`, `\`,
/// non-ASCII and astral characters.
fn tricky_string() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            Just('"'),
            Just('='),
            Just('['),
            Just(']'),
            Just('\\'),
            Just(' '),
            Just('\n'),
            Just('\t'),
            Just('\u{1}'),
            Just('\u{1f}'),
            Just('é'),
            Just('欢'),
            Just('😀'),
            proptest::char::range('a', 'z'),
            any::<char>(),
        ],
        0..24,
    )
    .prop_map(|v| v.into_iter().collect())
}

fn non_empty(s: String) -> String {
    if s.is_empty() { "k".into() } else { s }
}

proptest! {
    #[test]
    fn tikv_encoded_strings_decode_back(m in tricky_string(), k in tricky_string().prop_map(non_empty), v in tricky_string()) {
        // A bare message cannot be empty or contain `=`-free text ending ambiguously; TiKV
        // writes `[]` for an empty one.
        let line = format!(
            "[2019/01/15 13:40:39.619 +08:00] [INFO] [mod.rs:1] [{}] [{}={}]",
            tikv_encode(&m), tikv_encode(&k), tikv_encode(&v)
        );
        let l = parse_line(line.as_bytes()).map_err(|e| TestCaseError::fail(format!("{e}: {line}")))?;
        prop_assert_eq!(msg(&l), Some(m));
        prop_assert_eq!(fields(&l), vec![(k, v)]);
    }

    #[test]
    fn go_encoded_strings_decode_back(m in tricky_string().prop_map(non_empty), k in tricky_string().prop_map(non_empty), v in tricky_string()) {
        let line = format!(
            "[2019/01/15 13:40:39.619 +00:00] [INFO] [server.go:1] [{}] [{}={}]",
            go_encode(&m), go_encode(&k), go_encode(&v)
        );
        let l = parse_line(line.as_bytes()).map_err(|e| TestCaseError::fail(format!("{e}: {line}")))?;
        prop_assert_eq!(msg(&l), Some(m));
        prop_assert_eq!(fields(&l), vec![(k, v)]);
    }

    #[test]
    fn any_valid_time_round_trips(
        y in 1970u32..2100, mo in 1u32..=12, d in 1u32..=28, h in 0u32..24, mi in 0u32..60,
        s in 0u32..60, ms in 0u32..1000, neg in any::<bool>(), oh in 0u32..=14, om in prop_oneof![Just(0u32), Just(30), Just(45)],
    ) {
        let sign = if neg && (oh, om) != (0, 0) { '-' } else { '+' };
        let text = format!("{y:04}/{mo:02}/{d:02} {h:02}:{mi:02}:{s:02}.{ms:03} {sign}{oh:02}:{om:02}");
        let line = format!("[{text}] [INFO] [a.rs:1] [x]");
        let l = parse(&line);
        let dt = l.time.unwrap().to_datetime();
        prop_assert_eq!(dt.format("%Y/%m/%d %H:%M:%S%.3f %:z").to_string(), text);
        prop_assert_eq!(chrono::DateTime::parse_from_rfc3339(&l.time.unwrap().to_rfc3339()).unwrap(), dt);
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..300)) {
        if let Ok(l) = parse_line(&data) {
            let _ = (msg(&l), fields(&l), l.time.map(|t| t.to_rfc3339()));
        }
    }
}

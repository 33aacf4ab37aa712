//! The command line as users run it: the real binary, its exact JSON output, exit codes and
//! `--follow` on real files.

use std::fs::{self, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_tikv-health-exporter");
const FIXTURE: &str = include_str!("data/tikv-pd-real-lines.log");

fn fixture_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/tikv-pd-real-lines.log")
}

/// Line `n` (1-based) of the fixture.
fn fixture_line(n: usize) -> &'static str {
    FIXTURE.lines().nth(n - 1).expect("fixture line")
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run binary")
}

fn run_stdin(args: &[&str], input: &str) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn binary");
    let mut stdin = child.stdin.take().expect("stdin");
    let input = input.to_owned();
    // Written from a thread so a full stdout pipe cannot deadlock the test.
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().expect("wait");
    writer.join().unwrap().expect("write stdin");
    out
}

/// Runs successfully with empty stderr; returns stdout parsed as one JSON value per line.
fn json_lines(out: &Output) -> Vec<Value> {
    assert!(
        out.status.success(),
        "exit {:?}, stderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    let stdout = std::str::from_utf8(&out.stdout).expect("UTF-8 stdout");
    assert!(stdout.is_empty() || stdout.ends_with('\n'));
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn write_file(dir: &Path, name: &str, lines: &[&str]) -> PathBuf {
    let p = dir.join(name);
    let mut s = lines.join("\n");
    s.push('\n');
    fs::write(&p, s).unwrap();
    p
}

fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

// ---------------------------------------------------------------------------------------------
// logs parse

const DOCKER_LINE: &str = "2023-01-07T08:49:18.857903341Z [2023/01/07 08:49:18.857 +00:00] [INFO] [raft.rs:874] [\"became leader at term 6\"] [term=6] [region_id=3]";
const JSON_LINE: &str = r#"{"level":"INFO","time":"2024/01/15 02:55:44.603 +00:00","caller":"server.go:1657","message":"start to campaign PD leader","campaign-leader-name":"tc-pd-0","lease":3,"ok":true}"#;
const PD_BARE_LINE: &str = "[INFO] [\"leader changed\"] [region-id=2641161] [from=1] [to=5]";
const NO_MESSAGE_LINE: &str = "[2024/07/12 09:26:10.005 +00:00] [INFO] [server.go:1706]";
const EMPTY_MESSAGE_LINE: &str = "[2024/07/12 09:26:10.005 +00:00] [INFO] [raft.rs:874] [] [a=b]";

fn parse_sample() -> Vec<&'static str> {
    vec![
        fixture_line(1),  // TiKV line with fields
        fixture_line(33), // quoted keys
        fixture_line(78), // empty value `[to=]`
        fixture_line(83), // trailing bare `[]`
        fixture_line(48), // shell line
        DOCKER_LINE,
        JSON_LINE,
        PD_BARE_LINE,
        fixture_line(42), // negative offset
        NO_MESSAGE_LINE,
        EMPTY_MESSAGE_LINE,
    ]
}

fn parse_sample_expected(first_line: u64) -> Vec<Value> {
    let mut v = vec![
        json!({"line":1,"time":"2024-07-12T09:26:09.997+00:00","level":"INFO","source":"peer.rs:469","message":"on split",
            "fields":[["split_keys","key 7480000000000000FF2F00000000000000F8"],["peer_id","3"],["region_id","2"]]}),
        json!({"line":2,"time":"2025-04-02T15:47:11.565+08:00","level":"INFO","source":"raft.rs:1354",
            "message":"[logterm: 40, index: 75, vote: 0] ignored vote from 304593377 [logterm: 40, index: 75]: lease is not expired",
            "fields":[["msg type","MsgRequestPreVote"],["remaining ticks","10"],["term","40"],["msg_index","75"],["msg_term","40"],
                ["from","304593377"],["vote","0"],["log_index","75"],["log_term","40"],["raft_id","312334238"],["region_id","94037"],["thread_id","224"]]}),
        json!({"line":3,"time":"2024-05-29T19:11:44.072+08:00","level":"INFO","source":"member.go:355",
            "message":"try to resign etcd leader to next pd-server","fields":[["from","tc-pd-0"],["to",""]]}),
        json!({"line":4,"time":"2024-05-29T19:11:43.075+08:00","level":"INFO","source":"tso.go:436",
            "message":"reset the timestamp in memory","fields":[]}),
        json!({"line":5,"error":"not a unified log line: no [time] or [LEVEL] header at byte 0"}),
        json!({"line":6,"time":"2023-01-07T08:49:18.857+00:00","level":"INFO","source":"raft.rs:874","message":"became leader at term 6",
            "fields":[["term","6"],["region_id","3"]],"docker_time":"2023-01-07T08:49:18.857903341Z"}),
        json!({"line":7,"time":"2024-01-15T02:55:44.603+00:00","level":"INFO","source":"server.go:1657","message":"start to campaign PD leader",
            "fields":[["campaign-leader-name","tc-pd-0"],["lease","3"],["ok","true"]]}),
        json!({"line":8,"time":null,"level":"INFO","source":null,"message":"leader changed",
            "fields":[["region-id","2641161"],["from","1"],["to","5"]]}),
        json!({"line":9,"time":"2024-01-10T11:27:07.280-08:00","level":"INFO","source":"compact.rs:236","message":"full compaction started",
            "fields":[["thread_id","0x5"]]}),
        json!({"line":10,"time":"2024-07-12T09:26:10.005+00:00","level":"INFO","source":"server.go:1706","message":null,"fields":[]}),
        json!({"line":11,"time":"2024-07-12T09:26:10.005+00:00","level":"INFO","source":"raft.rs:874","message":"","fields":[["a","b"]]}),
    ];
    for (i, o) in v.iter_mut().enumerate() {
        o["line"] = json!(first_line + i as u64);
    }
    v
}

#[test]
fn parse_prints_the_exact_object_for_each_kind_of_line() {
    let dir = tempfile::tempdir().unwrap();
    let p = write_file(dir.path(), "sample.log", &parse_sample());
    let got = json_lines(&run(&["logs", "parse", s(&p)]));
    let want = parse_sample_expected(1);
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g, w);
    }
    // Absent values are present as null, and "docker_time" only when there was a prefix.
    for o in &got {
        let keys: Vec<&str> = o.as_object().unwrap().keys().map(String::as_str).collect();
        if o.get("error").is_some() {
            assert_eq!(keys.len(), 2);
        } else if o.get("docker_time").is_some() {
            assert_eq!(keys.len(), 7);
        } else {
            assert_eq!(keys.len(), 6, "{o}");
        }
    }
}

#[test]
fn parse_reads_stdin_when_no_file_or_dash_is_given() {
    let input = parse_sample().join("\n") + "\n";
    let want = parse_sample_expected(1);
    assert_eq!(json_lines(&run_stdin(&["logs", "parse"], &input)), want);
    assert_eq!(
        json_lines(&run_stdin(&["logs", "parse", "-"], &input)),
        want
    );

    // A file, then stdin: numbering continues into stdin.
    let fixture = fixture_path();
    let got = json_lines(&run_stdin(&["logs", "parse", s(&fixture), "-"], &input));
    assert_eq!(got.len(), 115 + want.len());
    assert_eq!(&got[115..], &parse_sample_expected(116)[..]);

    // CRLF input and a last line without its newline give the same objects.
    let crlf = parse_sample().join("\r\n");
    assert_eq!(json_lines(&run_stdin(&["logs", "parse"], &crlf)), want);

    // Empty input: no objects, and an all-zero summary.
    assert_eq!(
        json_lines(&run_stdin(&["logs", "parse"], "")),
        Vec::<Value>::new()
    );
    assert_eq!(
        json_lines(&run_stdin(&["logs", "leadership", "--summary"], "")),
        vec![summary(0, 0, &[])]
    );
}

#[test]
fn parse_of_the_fixture_numbers_every_line_and_flags_exactly_the_shell_lines() {
    let got = json_lines(&run(&["logs", "parse", s(&fixture_path())]));
    assert_eq!(got.len(), 115);
    for (i, o) in got.iter().enumerate() {
        let n = i as u64 + 1;
        assert_eq!(o["line"], json!(n));
        if n == 48 || n == 49 {
            assert_eq!(
                o,
                &json!({"line":n,"error":"not a unified log line: no [time] or [LEVEL] header at byte 0"})
            );
        } else {
            assert!(o.get("error").is_none(), "line {n}: {o}");
            assert!(
                o["time"].is_string(),
                "line {n}: every fixture line has a time"
            );
        }
    }
    assert_eq!(
        got[82],
        json!({"line":83,"time":"2024-05-29T19:11:43.075+08:00","level":"INFO","source":"tso.go:436","message":"reset the timestamp in memory","fields":[]})
    );
    assert_eq!(
        got[64],
        json!({"line":65,"time":"2023-06-22T22:49:47.468+07:00","level":"INFO","source":"<unknown>","message":"TCP_USER_TIMEOUT is available. TCP_USER_TIMEOUT will be used thereafter","fields":[]})
    );
}

#[test]
fn parse_numbers_lines_across_files() {
    let dir = tempfile::tempdir().unwrap();
    let a = write_file(dir.path(), "a.log", &[fixture_line(1), fixture_line(48)]);
    let b = write_file(dir.path(), "b.log", &[PD_BARE_LINE]);
    let got = json_lines(&run(&["logs", "parse", s(&a), s(&b), s(&a)]));
    let lines: Vec<&Value> = got.iter().map(|o| &o["line"]).collect();
    assert_eq!(
        lines,
        [&json!(1), &json!(2), &json!(3), &json!(4), &json!(5)]
    );
    assert!(got[1]["error"].as_str().is_some());
    assert_eq!(got[2]["message"], json!("leader changed"));
    assert_eq!(got[3]["message"], json!("on split"));
    assert!(got[4]["error"].as_str().is_some());
}

#[test]
fn parse_reports_an_over_long_line_and_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let long = format!(
        "[2024/07/12 09:26:10.005 +00:00] [INFO] [raft.rs:874] [\"{}\"]",
        "x".repeat(100)
    );
    assert_eq!(long.len(), 158);
    let p = write_file(
        dir.path(),
        "long.log",
        &[PD_BARE_LINE, &long, NO_MESSAGE_LINE],
    );
    let got = json_lines(&run(&["logs", "parse", "--max-line-bytes", "100", s(&p)]));
    assert_eq!(
        got,
        vec![
            json!({"line":1,"time":null,"level":"INFO","source":null,"message":"leader changed","fields":[["region-id","2641161"],["from","1"],["to","5"]]}),
            json!({"line":2,"error":"line exceeds the maximum length (158 bytes > 100)"}),
            json!({"line":3,"time":"2024-07-12T09:26:10.005+00:00","level":"INFO","source":"server.go:1706","message":null,"fields":[]}),
        ]
    );

    // The same file through `leadership --summary`: the over-long line is malformed.
    let got = json_lines(&run(&[
        "logs",
        "leadership",
        "--summary",
        "--max-line-bytes",
        "100",
        s(&p),
    ]));
    assert_eq!(
        got,
        vec![summary(
            3,
            1,
            &[("leader_changed", 1)] // from PD_BARE_LINE
        )]
    );
}

// ---------------------------------------------------------------------------------------------
// logs leadership

#[allow(clippy::too_many_arguments)]
fn event(
    line: u64,
    time: &str,
    event: &str,
    region: Option<u64>,
    from: Option<u64>,
    to: Option<u64>,
    term: Option<u64>,
    message: &str,
) -> Value {
    json!({"line":line,"time":time,"event":event,"region_id":region,"from_store":from,"to_store":to,"term":term,"message":message})
}

/// Every event of the fixture, checked line by line against the file.
fn fixture_events() -> Vec<Value> {
    let n = None;
    vec![
        event(
            9,
            "2024-07-12T09:26:10.005+00:00",
            "became_follower",
            Some(44),
            n,
            n,
            Some(5),
            "became follower at term 5",
        ),
        event(
            13,
            "2024-07-12T09:26:10.005+00:00",
            "election_started",
            Some(44),
            n,
            n,
            Some(5),
            "starting a new election",
        ),
        event(
            19,
            "2024-07-12T09:26:10.005+00:00",
            "became_leader",
            Some(44),
            n,
            n,
            Some(6),
            "became leader at term 6",
        ),
        event(
            21,
            "2022-03-01T19:09:54.620+08:00",
            "election_started",
            Some(32832),
            n,
            n,
            Some(7),
            "starting a new election",
        ),
        event(
            25,
            "2022-03-01T19:09:54.629+08:00",
            "became_leader",
            Some(32832),
            n,
            n,
            Some(8),
            "became leader at term 8",
        ),
        event(
            27,
            "2023-07-30T23:37:09.829+08:00",
            "election_started",
            Some(319305),
            n,
            n,
            Some(8),
            "starting a new election",
        ),
        event(
            30,
            "2023-07-30T23:37:24.845+08:00",
            "election_started",
            Some(319305),
            n,
            n,
            Some(8),
            "starting a new election",
        ),
        event(
            74,
            "2024-05-29T19:11:43.071+08:00",
            "pd_leader_changed",
            n,
            n,
            n,
            n,
            "current leadership is deleted",
        ),
        event(
            76,
            "2024-05-29T19:11:44.072+08:00",
            "pd_leader_changed",
            n,
            n,
            n,
            n,
            "pd leader has changed, try to re-campaign a pd leader",
        ),
        event(
            77,
            "2024-05-29T19:11:44.072+08:00",
            "pd_leader_changed",
            n,
            n,
            n,
            n,
            "start to campaign PD leader",
        ),
        event(
            78,
            "2024-05-29T19:11:44.072+08:00",
            "pd_leader_changed",
            n,
            n,
            n,
            n,
            "try to resign etcd leader to next pd-server",
        ),
        event(
            87,
            "2021-07-09T01:18:42.336+08:00",
            "pd_leader_changed",
            n,
            n,
            n,
            n,
            "the pd leader has not changed, delete and campaign again",
        ),
        event(
            88,
            "2021-07-09T01:18:42.337+08:00",
            "pd_leader_changed",
            n,
            n,
            n,
            n,
            "start to campaign pd leader",
        ),
        event(
            89,
            "2024-01-15T02:55:44.603+00:00",
            "pd_leader_changed",
            n,
            n,
            n,
            n,
            "start to campaign PD leader",
        ),
        event(
            93,
            "2021-08-09T14:18:44.429+00:00",
            "leader_changed",
            Some(1232323),
            Some(1),
            Some(2),
            n,
            "leader changed",
        ),
        event(
            100,
            "2022-06-28T14:30:55.329+00:00",
            "transfer_leader",
            Some(2641161),
            Some(1),
            Some(5),
            n,
            "send schedule command",
        ),
        event(
            101,
            "2022-06-28T14:30:55.342+00:00",
            "leader_changed",
            Some(2641161),
            Some(1),
            Some(5),
            n,
            "leader changed",
        ),
    ]
}

const EVENT_NAMES: [&str; 7] = [
    "became_leader",
    "became_follower",
    "election_started",
    "leader_changed",
    "transfer_leader",
    "step_down",
    "pd_leader_changed",
];

fn summary(lines: u64, malformed: u64, counts: &[(&str, u64)]) -> Value {
    let mut events = serde_json::Map::new();
    for name in EVENT_NAMES {
        events.insert(name.to_owned(), json!(0));
    }
    for &(name, n) in counts {
        assert!(EVENT_NAMES.contains(&name), "{name}");
        events.insert(name.to_owned(), json!(n));
    }
    json!({"lines":lines,"malformed":malformed,"events":events})
}

fn fixture_summary() -> Value {
    summary(
        115,
        2,
        &[
            ("became_follower", 1),
            ("became_leader", 2),
            ("election_started", 4),
            ("leader_changed", 2),
            ("pd_leader_changed", 7),
            ("step_down", 0),
            ("transfer_leader", 1),
        ],
    )
}

#[test]
fn leadership_prints_every_fixture_event_exactly() {
    let got = json_lines(&run(&["logs", "leadership", s(&fixture_path())]));
    let want = fixture_events();
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g, w);
    }
    // The ones called out by line.
    let at = |line: u64| got.iter().find(|o| o["line"] == json!(line)).unwrap();
    assert_eq!(
        (at(101)["event"].as_str(), at(101)["region_id"].as_u64()),
        (Some("leader_changed"), Some(2641161))
    );
    assert_eq!(
        (at(101)["from_store"].as_u64(), at(101)["to_store"].as_u64()),
        (Some(1), Some(5))
    );
    assert_eq!(at(100)["event"], json!("transfer_leader"));
    assert_eq!(
        (
            at(100)["region_id"].as_u64(),
            at(100)["from_store"].as_u64(),
            at(100)["to_store"].as_u64()
        ),
        (Some(2641161), Some(1), Some(5))
    );
    assert_eq!(at(25)["event"], json!("became_leader"));
    assert_eq!(
        (at(25)["region_id"].as_u64(), at(25)["term"].as_u64()),
        (Some(32832), Some(8))
    );

    // The event list and the summary agree.
    let mut counts = std::collections::BTreeMap::new();
    for o in &got {
        *counts
            .entry(o["event"].as_str().unwrap().to_owned())
            .or_insert(0u64) += 1;
    }
    let summary = fixture_summary();
    for name in EVENT_NAMES {
        assert_eq!(
            summary["events"][name].as_u64().unwrap(),
            counts.get(name).copied().unwrap_or(0),
            "{name}"
        );
    }
}

#[test]
fn leadership_summary_of_the_fixture_is_exact_for_any_thread_count() {
    let p = fixture_path();
    let want = vec![fixture_summary()];
    assert_eq!(
        json_lines(&run(&["logs", "leadership", "--summary", s(&p)])),
        want
    );
    for threads in ["1", "2", "3"] {
        assert_eq!(
            json_lines(&run(&[
                "logs",
                "leadership",
                "--summary",
                "--threads",
                threads,
                s(&p)
            ])),
            want,
            "--threads {threads}"
        );
    }
    // Through stdin, and twice the file (counts add up).
    assert_eq!(
        json_lines(&run_stdin(
            &["logs", "leadership", "--summary", "-"],
            FIXTURE
        )),
        want
    );
    let doubled = summary(
        230,
        4,
        &[
            ("became_follower", 2),
            ("became_leader", 4),
            ("election_started", 8),
            ("leader_changed", 4),
            ("pd_leader_changed", 14),
            ("transfer_leader", 2),
        ],
    );
    for threads in ["1", "2"] {
        assert_eq!(
            json_lines(&run(&[
                "logs",
                "leadership",
                "--summary",
                "--threads",
                threads,
                s(&p),
                s(&p)
            ])),
            vec![doubled.clone()]
        );
    }
}

#[test]
fn leadership_reads_stdin_and_numbers_lines_across_files() {
    let got = json_lines(&run_stdin(&["logs", "leadership"], FIXTURE));
    assert_eq!(got, fixture_events());

    let dir = tempfile::tempdir().unwrap();
    let b = write_file(
        dir.path(),
        "b.log",
        &[fixture_line(48), JSON_LINE, PD_BARE_LINE],
    );
    let got = json_lines(&run(&["logs", "leadership", s(&fixture_path()), s(&b)]));
    let mut want = fixture_events();
    want.push(json!({"line":117,"time":"2024-01-15T02:55:44.603+00:00","event":"pd_leader_changed","region_id":null,"from_store":null,"to_store":null,"term":null,"message":"start to campaign PD leader"}));
    want.push(json!({"line":118,"time":null,"event":"leader_changed","region_id":2641161,"from_store":1,"to_store":5,"term":null,"message":"leader changed"}));
    assert_eq!(got, want);
}

// ---------------------------------------------------------------------------------------------
// Errors and help

fn assert_fails_naming(out: &Output, what: &str) {
    assert!(!out.status.success(), "must fail");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "",
        "nothing on stdout"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(what), "stderr {err:?} must name {what}");
    assert!(err.starts_with("tikv-health-exporter: error: "), "{err}");
}

#[test]
fn a_missing_file_fails_before_any_output() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such.log");
    let fixture = fixture_path();
    for args in [
        vec!["logs", "parse", s(&missing)],
        vec!["logs", "parse", s(&fixture), s(&missing)],
        vec!["logs", "leadership", s(&fixture), s(&missing)],
        vec!["logs", "leadership", "--summary", s(&missing)],
        vec![
            "logs",
            "leadership",
            "--summary",
            "--threads",
            "2",
            s(&fixture),
            s(&missing),
        ],
    ] {
        assert_fails_naming(&run(&args), s(&missing));
    }
}

#[test]
fn bad_arguments_fail_with_a_message() {
    let fixture = fixture_path();
    for (args, what) in [
        (
            vec![
                "logs",
                "leadership",
                "--follow",
                "--poll-interval",
                "10",
                s(&fixture),
            ],
            "missing unit",
        ),
        (
            vec![
                "logs",
                "leadership",
                "--summary",
                "--threads",
                "0",
                s(&fixture),
            ],
            "--threads",
        ),
        (
            vec!["logs", "leadership", "--from-start", s(&fixture)],
            "--follow",
        ),
        (
            vec!["logs", "parse", "--max-line-bytes", "lots"],
            "--max-line-bytes",
        ),
    ] {
        let out = run(&args);
        assert!(!out.status.success(), "{args:?} must fail");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "", "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(what), "{args:?}: {err}");
    }
}

#[test]
fn help_states_the_output_contract() {
    let out = run(&["logs", "parse", "--help"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for needle in [
        r#"{"line":N,"time":RFC3339|null,"level":..,"source":..|null,"message":..|null,"#,
        r#""fields":[[key,value],...]}"#,
        r#""docker_time""#,
        r#"{"line":N,"error":"reason"}"#,
        "standard input when none or `-`",
        "--max-line-bytes",
    ] {
        assert!(
            help.contains(needle),
            "parse help lacks {needle:?}:\n{help}"
        );
    }

    let out = run(&["logs", "leadership", "--help"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for needle in [
        r#"{"line","time","event","region_id","from_store","to_store","term","#,
        r#""message"}"#,
        "null",
        r#"{"lines":N,"malformed":M,"events":{"#,
        "--summary",
        "--follow",
        "--from-start",
        "--poll-interval",
        "--threads",
    ] {
        assert!(
            help.contains(needle),
            "leadership help lacks {needle:?}:\n{help}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// --follow

/// A running `--follow` process; killed and reaped on drop, also when a test fails.
struct Follower {
    child: Child,
    lines: Receiver<String>,
    reader: Option<JoinHandle<()>>,
}

impl Follower {
    fn spawn(args: &[&str]) -> Self {
        let mut child = Command::new(BIN)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn binary");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for l in BufReader::new(stdout).lines() {
                let Ok(l) = l else { return };
                if tx.send(l).is_err() {
                    return;
                }
            }
        });
        Follower {
            child,
            lines,
            reader: Some(reader),
        }
    }

    /// The next output line as JSON, waiting at most `timeout`.
    fn next(&self, timeout: Duration) -> Value {
        match self.lines.recv_timeout(timeout) {
            Ok(l) => serde_json::from_str(&l).unwrap_or_else(|e| panic!("{e}: {l}")),
            Err(RecvTimeoutError::Timeout) => panic!("no output within {timeout:?}"),
            Err(RecvTimeoutError::Disconnected) => panic!("the process closed its output"),
        }
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(r) = self.reader.take() {
            // The pipe is closed now that the child is gone, so this returns.
            let _ = r.join();
        }
    }
}

/// Bound of a wait for the follower's next line: only reached when it is broken.
const WAIT: Duration = Duration::from_secs(60);

/// A well-formed line that is no leadership event.
const NOISE: &str = "[2024/07/12 09:26:10.005 +00:00] [INFO] [peer.rs:159] [\"create peer\"] [peer_id=45] [region_id=44]\n";

fn raft_line(msg: &str, region: u64) -> String {
    format!(
        "[2024/07/12 09:26:10.005 +00:00] [INFO] [raft.rs:874] [\"{msg}\"] [term=9] [region_id={region}]\n"
    )
}

/// The event of a [`raft_line`] (all at term 9).
fn raft_event(line: u64, kind: &str, msg: &str, region: u64) -> Value {
    let term = 9;
    event(
        line,
        "2024-07-12T09:26:10.005+00:00",
        kind,
        Some(region),
        None,
        None,
        Some(term),
        msg,
    )
}

fn append(path: &Path, data: &str) {
    OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .unwrap()
        .write_all(data.as_bytes())
        .unwrap();
}

#[test]
fn follow_prints_events_as_they_arrive_across_a_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tikv.log");
    let noise = NOISE;
    fs::write(&path, raft_line("became leader at term 9", 1)).unwrap();
    let f = Follower::spawn(&[
        "logs",
        "leadership",
        "--follow",
        "--from-start",
        "--poll-interval",
        "50ms",
        s(&path),
    ]);
    // --from-start: the existing line is read; it also tells us the follower is running.
    assert_eq!(
        f.next(WAIT),
        raft_event(1, "became_leader", "became leader at term 9", 1)
    );

    append(
        &path,
        &format!("{noise}{}", raft_line("starting a new election", 2)),
    );
    assert_eq!(
        f.next(WAIT),
        raft_event(3, "election_started", "starting a new election", 2)
    );

    // A line lands in the old file just before the rename; the new file's lines follow.
    append(&path, &raft_line("became follower at term 9", 3));
    fs::rename(&path, dir.path().join("tikv.log.1")).unwrap();
    fs::write(
        &path,
        format!("{noise}{}", raft_line("became leader at term 9", 4)),
    )
    .unwrap();
    assert_eq!(
        f.next(WAIT),
        raft_event(4, "became_follower", "became follower at term 9", 3)
    );
    // Line numbers keep counting the lines this follower has read.
    assert_eq!(
        f.next(WAIT),
        raft_event(6, "became_leader", "became leader at term 9", 4)
    );

    append(&path, &raft_line("starting a new election", 5));
    assert_eq!(
        f.next(WAIT),
        raft_event(7, "election_started", "starting a new election", 5)
    );
    // Nothing else was printed (no line read twice): the next output is the event of a line
    // appended now.
    append(&path, &raft_line("became leader at term 9", 6));
    assert_eq!(
        f.next(WAIT),
        raft_event(8, "became_leader", "became leader at term 9", 6)
    );
}

#[test]
fn follow_summary_skips_existing_content_and_prints_each_change_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pd.log");
    fs::write(&path, FIXTURE).unwrap();
    let f = Follower::spawn(&[
        "logs",
        "leadership",
        "--follow",
        "--summary",
        "--poll-interval",
        "50ms",
        s(&path),
    ]);
    // Without --from-start the 115 existing lines are skipped; the first summary is all zero
    // and proves the file is open (at its end).
    assert_eq!(f.next(WAIT), summary(0, 0, &[]));
    // Nothing more until lines are appended: the loop below checks that every summary after
    // this one counts only appended lines, and more of them than the one before.

    append(
        &path,
        &format!(
            "{}\nstarting tikv-server ...\n{}\n",
            fixture_line(25),
            fixture_line(101)
        ),
    );
    let want = summary(3, 1, &[("became_leader", 1), ("leader_changed", 1)]);
    // The three lines may be seen over more than one poll; each change is printed once, and
    // the counts only grow.
    let deadline = Instant::now() + WAIT;
    let mut last_lines = 0;
    loop {
        let got = f.next(deadline.saturating_duration_since(Instant::now()));
        let lines = got["lines"].as_u64().unwrap();
        assert!(lines > last_lines && lines <= 3, "{got}");
        last_lines = lines;
        if got == want {
            break;
        }
    }
    // Printed once: the next summary is the one for a line appended now.
    append(&path, NOISE);
    assert_eq!(
        f.next(WAIT),
        summary(4, 1, &[("became_leader", 1), ("leader_changed", 1)])
    );

    // Truncation (`> file`) then new content: counted from the start of the new content.
    fs::write(&path, "").unwrap();
    append(&path, fixture_line(100));
    append(&path, "\n");
    let events = [
        ("became_leader", 1),
        ("leader_changed", 1),
        ("transfer_leader", 1),
    ];
    assert_eq!(f.next(WAIT), summary(5, 1, &events));
    append(&path, NOISE);
    assert_eq!(f.next(WAIT), summary(6, 1, &events));
}

// ---------------------------------------------------------------------------------------------
// Generator truth

#[test]
fn summary_matches_the_corpus_generator_truth() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("c.log");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/gen_corpus.py");
    let out = Command::new("python3")
        .arg(&script)
        .arg(&corpus)
        .args(["50000", "20"])
        .output()
        .expect("python3 must be installed to run this test");
    assert!(
        out.status.success(),
        "generator failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let truth: Value = serde_json::from_slice(&out.stdout).expect("generator prints JSON");
    assert_eq!(truth["lines"], json!(50000));
    let lead = truth["leadership"].as_object().expect("leadership counts");
    let mut keys: Vec<&str> = lead.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "became_follower",
            "became_leader",
            "election_started",
            "leader_changed"
        ]
    );
    let counts: Vec<(&str, u64)> = lead
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_u64().unwrap()))
        .collect();
    // ~2% of 50 000 lines are events; guard against a generator that produced none.
    assert!(counts.iter().map(|c| c.1).sum::<u64>() > 500, "{truth}");
    let want = summary(50000, 0, &counts);
    for threads in ["1", "2", "4"] {
        let got = json_lines(&run(&[
            "logs",
            "leadership",
            "--summary",
            "--threads",
            threads,
            s(&corpus),
        ]));
        assert_eq!(got, vec![want.clone()], "--threads {threads}");
    }
    // The event list agrees with the summary.
    let events = json_lines(&run(&["logs", "leadership", s(&corpus)]));
    assert_eq!(events.len() as u64, counts.iter().map(|c| c.1).sum::<u64>());
}

//! Kubernetes CRI log files (`/var/log/pods/<ns>_<pod>_<uid>/<container>/<n>.log`) as kubelet's
//! runtimes write them: every line `<RFC3339Nano> <stdout|stderr> <P|F> <content>`, long or
//! piecewise-written lines split into `P` records ended by an `F` record of the same stream,
//! stdout and stderr records interleaved (reference `kubernetes.md` §1.1–1.3: kubelet's
//! `parseCRILog`, containerd's `internal/cri/io/logger.go`, conmon's `write_k8s_log`).
//!
//! The real fixture of TiKV/PD lines, written as a CRI file, gives exactly what the plain
//! fixture gives: the same parsed lines (plus `cri_time` and `stream`), the same counts in the
//! CLI (one thread or several) and in the running exporter following the file while it grows.

mod support;

use std::io::Write;
use std::process::Command;

use serde_json::Value;
use support::exporter::{Exporter, sample};
use support::fake_pd::{FakePd, cluster};
use support::wait::PATIENCE;

const FIXTURE: &str = include_str!("data/tikv-pd-real-lines.log");

/// A receive time as containerd writes it (RFC3339Nano: trailing fraction zeros trimmed).
fn ts(i: usize) -> String {
    let nanos = format!("{:09}", 100_000_000 + i * 1_234_567);
    format!(
        "2026-08-01T10:00:{:02}.{}Z",
        i % 60,
        nanos.trim_end_matches('0')
    )
}

/// The fixture as a CRI file: TiKV's lines on stderr, every third line split into `P` pieces
/// of at most 37 bytes (as a runtime with a small line limit, or CRI-O reading in pieces,
/// does), with a start-script line on stdout interleaved between the pieces of a split line.
/// Also returns the number of stdout lines added.
fn cri_file() -> (String, usize) {
    let mut out = String::new();
    let mut stdout_lines = 0;
    for (i, line) in FIXTURE.lines().enumerate() {
        if i % 3 != 0 || line.len() < 40 {
            out += &format!("{} stderr F {line}\n", ts(i));
            continue;
        }
        let bytes = line.as_bytes();
        let pieces: Vec<&[u8]> = bytes.chunks(37).collect();
        for (k, piece) in pieces.iter().enumerate() {
            let tag = if k + 1 == pieces.len() { "F" } else { "P" };
            out += &format!(
                "{} stderr {tag} {}\n",
                ts(i),
                std::str::from_utf8(piece).unwrap()
            );
            if k == 0 {
                out += &format!(
                    "{} stdout F + exec /tikv-server --pd=basic-pd:2379\n",
                    ts(i)
                );
                stdout_lines += 1;
            }
        }
    }
    (out, stdout_lines)
}

fn run(args: &[&str], file: &std::path::Path) -> Vec<Value> {
    let mut cmd = Command::new(support::exporter::binary());
    cmd.args(args).arg(file);
    let out = support::cmd::run_ok(cmd, "tikv-health-exporter logs");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn logs_parse_decodes_a_cri_file_exactly_as_the_plain_lines() {
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("plain.log");
    std::fs::write(&plain, FIXTURE).unwrap();
    let (text, stdout_lines) = cri_file();
    assert!(
        stdout_lines > 20 && text.contains(" stderr P "),
        "the file exercises joining"
    );
    let cri = dir.path().join("0.log");
    std::fs::write(&cri, &text).unwrap();

    let want = run(&["logs", "parse"], &plain);
    let got = run(&["logs", "parse"], &cri);
    assert_eq!(got.len(), want.len() + stdout_lines);
    let mut want = want.into_iter();
    let mut line = 0;
    for g in got {
        let mut g = g.as_object().unwrap().clone();
        assert!(!g.contains_key("docker_time"), "{g:?}");
        let stream = g.remove("stream");
        if stream == Some(Value::from("stdout")) {
            // The start script's echo is not a log line.
            assert!(
                g["error"]
                    .as_str()
                    .unwrap()
                    .contains("not a unified log line"),
                "{g:?}"
            );
            continue;
        }
        line += 1;
        let w = want.next().unwrap();
        let mut w = w.as_object().unwrap().clone();
        // Line numbers count joined lines, stdout ones included.
        g.remove("line");
        w.remove("line");
        match g.remove("cri_time") {
            Some(t) => {
                assert_eq!(stream, Some(Value::from("stderr")), "{g:?}");
                assert_eq!(t, Value::from(ts(line - 1)), "the time of the first piece");
            }
            None => panic!("no cri_time: {g:?}"),
        }
        // A fixture line that is not a log line (two shell lines) fails to parse alike; the
        // byte offset counts from the start of the physical line, the CRI prefix included.
        for o in [&mut g, &mut w] {
            if let Some(Value::String(e)) = o.get_mut("error") {
                e.truncate(e.find(" at byte ").unwrap());
            }
        }
        assert_eq!(g, w, "fixture line {line}");
    }
    assert!(want.next().is_none());
}

#[test]
fn logs_leadership_counts_a_cri_file_as_the_plain_lines_on_any_thread_count() {
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("plain.log");
    std::fs::write(&plain, FIXTURE).unwrap();
    let (text, stdout_lines) = cri_file();
    let cri = dir.path().join("0.log");
    // Large enough for several chunks.
    std::fs::write(&cri, text.repeat(300)).unwrap();
    std::fs::write(&plain, FIXTURE.repeat(300)).unwrap();
    let want = run(&["logs", "leadership", "--summary"], &plain);
    for threads in ["1", "4"] {
        let got = run(
            &["logs", "leadership", "--summary", "--threads", threads],
            &cri,
        );
        assert_eq!(got[0]["events"], want[0]["events"], "threads {threads}");
        assert_eq!(
            got[0]["lines"].as_u64().unwrap(),
            want[0]["lines"].as_u64().unwrap() + 300 * stdout_lines as u64,
            "threads {threads}"
        );
        assert_eq!(
            got[0]["malformed"].as_u64().unwrap(),
            want[0]["malformed"].as_u64().unwrap() + 300 * stdout_lines as u64,
            "the stdout lines are not log lines; threads {threads}"
        );
    }
    assert_eq!(want[0]["events"]["became_leader"], 600);
}

/// The running exporter follows a CRI file while the runtime appends to it, a `P` piece
/// arriving in one write and the rest of its line in a later one.
#[test]
fn the_exporter_counts_a_growing_cri_file_like_the_plain_lines() {
    let pd = FakePd::with_live_stores(&cluster(2));
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("0.log");
    std::fs::write(&log, "").unwrap();
    let cfg = dir.path().join("config.yml");
    std::fs::write(
        &cfg,
        format!(
            "logs:\n  poll_interval: 100ms\n  files:\n    - path: {}\n      name: tikv-2\n      store: \"2\"\n",
            log.display()
        ),
    )
    .unwrap();
    let e = Exporter::start(&[
        "--pd.endpoints".into(),
        pd.url(),
        "--config.file".into(),
        cfg.display().to_string(),
    ]);
    e.wait_source_up("file:tikv-2", 1.0);
    let (text, stdout_lines) = cri_file();
    let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    // Cut the file in the middle of a P record's line: the exporter sees the piece first.
    let cut = text[2000..].find(" stderr P ").unwrap() + 2000 + 20;
    let cut = text[cut..].find('\n').unwrap() + cut + 1;
    f.write_all(&text.as_bytes()[..cut]).unwrap();
    f.flush().unwrap();
    let labels = |event| [("source", "file:tikv-2"), ("store", "2"), ("event", event)];
    e.wait_metrics("the first lines", PATIENCE, |m| {
        sample(
            m,
            "tikv_log_lines_total",
            &[("source", "file:tikv-2"), ("store", "2"), ("level", "INFO")],
        )
        .is_some_and(|v| v > 0.0)
    });
    f.write_all(&text.as_bytes()[cut..]).unwrap();
    f.flush().unwrap();
    let m = e.wait_metrics("every event", PATIENCE, |m| {
        sample(
            m,
            "tikv_leadership_changes_total",
            &labels("pd_leader_changed"),
        ) == Some(7.0)
            && sample(
                m,
                "tikv_leadership_changes_total",
                &labels("election_started"),
            ) == Some(4.0)
    });
    // Beyond the fixture's two shell lines, the start script's stdout lines are not log lines.
    support::exporter::assert_fixture_counted(&m, "file:tikv-2", "2", stdout_lines as f64);
}

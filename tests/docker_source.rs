//! The Docker log source against the real Docker engine (no mock): the exporter binary follows
//! containers of a tiny busybox image built here, and its `/metrics` must match, line for
//! line, what the engine recorded (`docker logs`, parsed by the file path) across restarts,
//! stop + start, re-creation, TTY output, lines over 16 KiB, an engine that goes away and
//! comes back, and a flood (with bounded memory).
//!
//! Every container has a unique name and is removed on drop, also when a test fails.

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use support::docker::{self as dk, Container, Counts, EngineProxy};
use support::exporter::{Exporter, sample};
use support::fake_pd::{FakePd, StoreSpec};

fn start_exporter(pd: &FakePd, extra: &[&str]) -> Exporter {
    dk::require_engine();
    let mut a: Vec<String> = [
        "--pd.endpoints",
        &pd.url(),
        "--poll-interval",
        "200ms",
        "--pd.timeout",
        "1s",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    a.extend(extra.iter().map(|s| s.to_string()));
    let e = Exporter::start(&a);
    e.wait_ready();
    e
}

fn up(metrics: &str, source: &str) -> Option<f64> {
    sample(
        metrics,
        "tikv_health_exporter_source_up",
        &[("source", source)],
    )
}

fn counted(e: &Exporter, source: &str) -> Counts {
    dk::exported(&e.metrics(), source).0
}

/// Waits (bounded) until the exported counts of `source` equal `want`, never exceeding it on
/// the way; then writes a marker line into `c`'s log and waits until exactly that line is
/// added: everything the source read before the marker was counted once (a late double count
/// would show before the marker's count does, or as a count above it). Returns the counts
/// including the marker, for the next expectation.
fn assert_exact(e: &Exporter, c: &Container, source: &str, want: &Counts) -> Counts {
    wait_exact(e, source, want, "");
    static MARKERS: AtomicU64 = AtomicU64::new(900_000);
    let region = MARKERS.fetch_add(1, Ordering::Relaxed);
    c.write_leader_lines(region, 1, "marker");
    let mut with_marker = want.clone();
    with_marker.add(&dk::expected(
        format!("{}\n", dk::leader_line(region, " [tag=marker]")).as_bytes(),
        MAX_LINE,
    ));
    wait_exact(e, source, &with_marker, " after a marker line");
    with_marker
}

/// Waits (bounded) until the exported counts of `source` equal `want`, never exceeding it.
fn wait_exact(e: &Exporter, source: &str, want: &Counts, what: &str) {
    support::wait::until(&format!("{source}: exact counts{what}"), T, || {
        let got = counted(e, source);
        assert!(
            got.lines() <= want.lines()
                && got.event("became_leader") <= want.event("became_leader"),
            "{source}: counted more than the container wrote{what}:\n got {got:?}\nwant {want:?}\n{}",
            e.stderr()
        );
        if got == *want {
            Ok(())
        } else {
            Err(format!(" got {got:?}\nwant {want:?}\n{}", e.stderr()))
        }
    });
}

/// Waits (bounded) until at least `n` lines of `source` are counted.
fn wait_lines(e: &Exporter, source: &str, n: u64) {
    support::wait::until(
        &format!("{source}: {n} lines counted"),
        T,
        || match counted(e, source).lines() {
            have if have >= n => Ok(()),
            have => Err(format!("{have} lines\n{}", e.stderr())),
        },
    )
}

fn wait_up(e: &Exporter, source: &str, want: f64, timeout: Duration) {
    e.wait_metrics(&format!("source_up{{{source}}} == {want}"), timeout, |m| {
        up(m, source) == Some(want)
    });
}

const FIXTURE_LINES: usize = 115;
const MAX_LINE: usize = 1 << 20;
const T: Duration = support::wait::PATIENCE;

#[test]
fn metrics_match_what_the_container_wrote() {
    let name = dk::unique("count");
    let source = format!("docker:{name}");
    let pd = FakePd::with_stores(&[
        StoreSpec {
            address: format!("{name}:20160"),
            status_address: format!("{name}:20180"),
            ..StoreSpec::tikv(7)
        },
        StoreSpec::tikv(8),
    ]);
    let e = start_exporter(&pd, &["--logs.docker.container", &name]);
    // Known by its exact name before the container exists: down.
    wait_up(&e, &source, 0.0, T);

    // Started after the exporter: read from its first line. Stdout and stderr both count.
    let c = Container::run(
        &name,
        &[
            "-e",
            "FIXTURE=1",
            "-e",
            "N=3000",
            "-e",
            "OUT_EVERY=7",
            "-e",
            "BATCH=100",
            "-e",
            "PAUSE=0.05",
        ],
    );
    c.wait_logged(FIXTURE_LINES + 3000, T);
    let want = dk::expected(&c.logs(), MAX_LINE);
    assert_eq!(want.event("became_leader"), 3000 + 2);
    assert_eq!(want.malformed, 2);
    assert_eq!(want.lines(), (FIXTURE_LINES + 3000) as u64);
    let want = assert_exact(&e, &c, &source, &want);

    let m = e.metrics();
    assert_eq!(up(&m, &source), Some(1.0));
    let (_, store) = dk::exported(&m, &source);
    assert_eq!(
        store.as_deref(),
        Some("7"),
        "mapped through PD's store address"
    );
    let last = sample(
        &m,
        "tikv_log_last_line_timestamp_seconds",
        &[("source", &source), ("store", "7")],
    );
    assert_eq!(
        last,
        dk::newest_line_time(&c.logs()),
        "newest TiKV line time"
    );
    let events: serde_json::Value = serde_json::from_str(&e.get("/api/v1/leadership").2).unwrap();
    let ours: Vec<_> = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|ev| ev["source"] == source.as_str())
        .collect();
    assert!(!ours.is_empty());
    assert!(ours.iter().all(|ev| ev["store"] == "7"));
    assert!(ours.iter().any(|ev| ev["region_id"] == 3000));

    c.stop();
    wait_up(&e, &source, 0.0, T);
    assert_eq!(counted(&e, &source), want, "stopping adds nothing");
}

#[test]
fn selection_is_exact_by_name_glob_and_label() {
    let p = dk::unique("sel");
    let opts = ["-e", "N=5", "-e", "BATCH=5"];
    let labelled = |v: &str| -> Vec<String> {
        [
            "-e",
            "N=5",
            "-e",
            "BATCH=5",
            "--label",
            &format!("thx.role={v}"),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let pd = FakePd::start();
    let by_name = start_exporter(
        &pd,
        &[
            "--logs.docker.container",
            &format!("{p}-tikv"),
            "--logs.docker.container",
            &format!("{p}-tikv-?"),
        ],
    );
    let by_label = start_exporter(
        &pd,
        &[
            "--logs.docker.label",
            "thx.role=tikv",
            "--logs.docker.container",
            &format!("{p}-*"),
        ],
    );
    // The last two containers are followed by one exporter each: once it has counted its
    // last one, it has seen every container created before (so a wrong match would show).
    let mut cs = Vec::new();
    for (n, o) in [
        (format!("{p}-tikv"), labelled("tikv")),
        (format!("{p}-tikv-1"), labelled("pd")),
        (format!("x{p}-tikv"), labelled("tikv")),
        (
            format!("{p}-tikv-10"),
            opts.iter().map(|s| s.to_string()).collect(),
        ),
        (format!("{p}-lab"), labelled("tikv")),
        (format!("{p}-tikv-2"), labelled("pd")),
        (format!("{p}-lab-2"), labelled("tikv")),
    ] {
        let o: Vec<&str> = o.iter().map(String::as_str).collect();
        cs.push(Container::run(&n, &o));
    }
    for c in &cs {
        c.wait_logged(5, T);
    }
    let want = dk::expected(&cs[0].logs(), MAX_LINE);
    assert_eq!(want.event("became_leader"), 5);
    let mut wants: Vec<Counts> = cs.iter().map(|_| want.clone()).collect();
    for (e, followed) in [(&by_name, [0, 1, 5]), (&by_label, [0, 4, 6])] {
        for i in followed {
            let c = &cs[i];
            wants[i] = assert_exact(e, c, &format!("docker:{}", c.name), &wants[i]);
        }
    }
    let followed = |e: &Exporter| -> Vec<String> {
        let mut v: Vec<String> = support::exporter::samples(&e.metrics())
            .into_iter()
            .filter(|(n, _, _)| n == "tikv_health_exporter_source_up")
            .filter_map(|(_, l, _)| l.into_iter().find(|(k, _)| k == "source").map(|(_, v)| v))
            .filter(|s| s.starts_with("docker:"))
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        followed(&by_name),
        [
            format!("docker:{p}-tikv"),
            format!("docker:{p}-tikv-1"),
            format!("docker:{p}-tikv-2")
        ],
        "substring and longer names are not followed"
    );
    assert_eq!(
        followed(&by_label),
        [
            format!("docker:{p}-lab"),
            format!("docker:{p}-lab-2"),
            format!("docker:{p}-tikv")
        ],
        "only containers carrying the label"
    );
}

#[test]
fn restart_stop_start_and_late_start_count_every_line_once() {
    let name = dk::unique("restart");
    let source = format!("docker:{name}");
    let pd = FakePd::start();
    let e = start_exporter(&pd, &["--logs.docker.container", &name]);
    // Started after the exporter; about 2 s of lines per start, spread over seconds.
    let c = Container::run(
        &name,
        &[
            "-e",
            "FIXTURE=1",
            "-e",
            "N=3000",
            "-e",
            "BATCH=50",
            "-e",
            "PAUSE=0.03",
        ],
    );
    wait_lines(&e, &source, 800);
    // Killed while writing (lines cut mid-way included), then runs again.
    let run = FIXTURE_LINES + 3000;
    dk::docker(&["restart", "-t", "0", &name]);
    c.wait_run_complete(run, T);
    let want = dk::expected(&c.logs(), MAX_LINE);
    assert!(want.event("became_leader") > 3000, "{want:?}");
    assert_exact(&e, &c, &source, &want);

    // A graceful restart once everything was read: the resumed second is replayed by the
    // engine and dropped.
    c.restart();
    c.wait_run_complete(run, T);
    let want = dk::expected(&c.logs(), MAX_LINE);
    let want = assert_exact(&e, &c, &source, &want);

    // Stop (down while stopped), then start again.
    c.stop();
    wait_up(&e, &source, 0.0, T);
    assert_eq!(counted(&e, &source), want);
    c.start();
    wait_up(&e, &source, 1.0, T);
    c.wait_run_complete(run, T);
    let want = dk::expected(&c.logs(), MAX_LINE);
    assert_exact(&e, &c, &source, &want);
    assert_eq!(up(&e.metrics(), &source), Some(1.0));
}

#[test]
fn recreated_container_is_read_from_its_beginning() {
    let name = dk::unique("recreate");
    let source = format!("docker:{name}");
    let pd = FakePd::start();
    let e = start_exporter(&pd, &["--logs.docker.container", &name]);
    let c = Container::run(
        &name,
        &[
            "-e",
            "FIXTURE=1",
            "-e",
            "N=1000",
            "-e",
            "BATCH=100",
            "-e",
            "PAUSE=0.05",
        ],
    );
    c.wait_logged(FIXTURE_LINES + 1000, T);
    let first = dk::expected(&c.logs(), MAX_LINE);
    assert_eq!(first.event("became_leader"), 1002);
    let mut want = assert_exact(&e, &c, &source, &first);
    let old_id = c.id();

    // `docker rm` + `docker run` with the same name: a new container, all of its lines count.
    c.recreate();
    assert_ne!(c.id(), old_id);
    c.wait_logged(FIXTURE_LINES + 1000, T);
    let second = dk::expected(&c.logs(), MAX_LINE);
    assert_eq!(second, first, "the same lines again");
    want.add(&second);
    assert_exact(&e, &c, &source, &want);
}

#[test]
fn running_before_the_exporter_counts_new_lines_unless_from_start() {
    let name = dk::unique("before");
    let source = format!("docker:{name}");
    let c = Container::run(&name, &["-e", "N=200", "-e", "BATCH=200"]);
    c.wait_logged(200, T);
    let before = c.logs();
    let pd = FakePd::start();
    let new_only = start_exporter(&pd, &["--logs.docker.container", &name]);
    let everything = start_exporter(
        &pd,
        &["--logs.docker.container", &name, "--logs.docker.from-start"],
    );
    wait_up(&new_only, &source, 1.0, T);
    wait_up(&everything, &source, 1.0, T);

    c.write_leader_lines(1000, 300, "after");
    c.wait_logged(500, T);
    let all = c.logs();
    assert!(all.starts_with(&before));
    let want_new = dk::expected(&all[before.len()..], MAX_LINE);
    assert_eq!(want_new.event("became_leader"), 300);
    let want_all = dk::expected(&all, MAX_LINE);
    assert_eq!(want_all.event("became_leader"), 500);
    // Each marker line is new to both exporters.
    let marker = assert_exact(&new_only, &c, &source, &want_new);
    let mut want_all_marked = want_all.clone();
    want_all_marked.add(&dk::expected(&c.logs()[all.len()..], MAX_LINE));
    assert_eq!(marker.lines(), want_new.lines() + 1);
    assert_exact(&everything, &c, &source, &want_all_marked);
}

/// A `became leader` line for `region` with a field of `size` bytes.
fn big_line_script(region: u64, size: usize) -> String {
    format!(
        r#"awk 'BEGIN {{ s = sprintf("%{size}s", ""); gsub(/ /, "x", s); printf "[2024/07/12 09:26:10.005 +00:00] [INFO] [raft.rs:874] [\"became leader at term 6\"] [term=6] [region_id={region}] [blob=%s]\n", s }}' >&2"#
    )
}

#[test]
fn tty_container_and_lines_over_16_kib() {
    let p = dk::unique("tty");
    let (tty_name, plain_name) = (format!("{p}-t"), format!("{p}-p"));
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.yml");
    std::fs::write(&cfg, "logs:\n  max_line_bytes: 65536\n").unwrap();
    let pd = FakePd::start();
    let e = start_exporter(
        &pd,
        &[
            "--config.file",
            cfg.to_str().unwrap(),
            "--logs.docker.container",
            &format!("{p}-?"),
        ],
    );
    let tty = Container::run(
        &tty_name,
        &["-t", "-e", "FIXTURE=1", "-e", "N=300", "-e", "BATCH=100"],
    );
    let plain = Container::run(
        &plain_name,
        &["-e", "FIXTURE=1", "-e", "N=300", "-e", "BATCH=100"],
    );
    for c in [&tty, &plain] {
        c.wait_logged(FIXTURE_LINES + 300, T);
        // 20 KiB field: one logical line, split by the engine into 16 KiB messages.
        c.write(&big_line_script(777, 20 * 1024));
        // Over logs.max_line_bytes: counted as malformed, never buffered.
        c.write(&big_line_script(778, 100 * 1024));
        c.write_leader_lines(5000, 3, "tail");
        c.wait_logged(FIXTURE_LINES + 305, T);
    }
    let tty_log = tty.logs();
    assert!(
        tty_log.windows(2).any(|w| w == b"\r\n"),
        "a TTY container's output has CRLF line ends"
    );
    for (c, log) in [(&tty, tty_log), (&plain, plain.logs())] {
        let want = dk::expected(&log, 65536);
        assert_eq!(want.event("became_leader"), 2 + 300 + 1 + 3);
        assert_eq!(want.malformed, 2 + 1);
        assert_exact(&e, c, &format!("docker:{}", c.name), &want);
    }
    let events: serde_json::Value = serde_json::from_str(&e.get("/api/v1/leadership").2).unwrap();
    for c in [&tty, &plain] {
        let regions: Vec<u64> = events
            .as_array()
            .unwrap()
            .iter()
            .filter(|ev| ev["source"] == format!("docker:{}", c.name).as_str())
            .filter_map(|ev| ev["region_id"].as_u64())
            .collect();
        assert_eq!(
            regions.iter().filter(|&&r| r == 777).count(),
            1,
            "{}",
            c.name
        );
        assert!(!regions.contains(&778));
    }
}

#[test]
fn engine_unreachable_then_back_resumes_exactly() {
    let name = dk::unique("proxy");
    let late_name = format!("{name}-late");
    let (source, late_source) = (format!("docker:{name}"), format!("docker:{late_name}"));
    let dir = tempfile::tempdir().unwrap();
    let mut proxy = EngineProxy::start_at(&dir.path().join("engine.sock"));
    let pd = FakePd::start();
    let e = start_exporter(
        &pd,
        &[
            "--logs.docker.host",
            &proxy.url(),
            "--logs.docker.container",
            &name,
            "--logs.docker.container",
            &late_name,
        ],
    );
    // About 5 s of steady output.
    let c = Container::run(
        &name,
        &[
            "-e",
            "FIXTURE=1",
            "-e",
            "N=4000",
            "-e",
            "BATCH=20",
            "-e",
            "PAUSE=0.02",
        ],
    );
    wait_lines(&e, &source, 400);
    assert_eq!(up(&e.metrics(), &source), Some(1.0));

    proxy.stop();
    // The exporter can only have received what the engine had logged by now.
    let cut = c.logged_lines() as u64;
    wait_up(&e, &source, 0.0, T);
    // Started while the engine is unreachable: its start event is never seen.
    let late = Container::run(&late_name, &["-e", "N=100", "-e", "BATCH=100"]);
    late.wait_logged(100, T);
    // Nothing read while cut off: the container goes on writing (if it has not finished), and
    // what was read before the cut may still drain from the parser's queue, but the count
    // never passes what was logged at the cut.
    let total = FIXTURE_LINES + 4000;
    c.wait_logged((cut as usize + 400).min(total), T);
    let during = counted(&e, &source).lines();
    assert!(
        during <= cut,
        "nothing read while cut off: {during} lines counted, {cut} logged at the cut"
    );
    assert_eq!(up(&e.metrics(), &late_source), Some(0.0), "late: not seen");

    proxy.start();
    wait_up(&e, &source, 1.0, T);
    wait_up(&e, &late_source, 1.0, T);
    c.wait_logged(total, T);
    let want = dk::expected(&c.logs(), MAX_LINE);
    assert_eq!(want.event("became_leader"), 4002);
    assert_exact(&e, &c, &source, &want);
    let want_late = dk::expected(&late.logs(), MAX_LINE);
    assert_eq!(want_late.event("became_leader"), 100);
    assert_exact(&e, &late, &late_source, &want_late);
    assert!(e.stderr().contains("docker source:"), "{}", e.stderr());
}

#[test]
fn flood_is_counted_exactly_with_bounded_memory() {
    let n: u64 = std::env::var("THX_DOCKER_FLOOD_LINES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let name = dk::unique("flood");
    let source = format!("docker:{name}");
    let pd = FakePd::start();
    let e = start_exporter(&pd, &["--logs.docker.container", &name]);
    let line = "[2024/07/12 09:26:10.005 +00:00] [WARN] [raft.rs:1000] [\"became follower at term 7\"] [term=7] [raft_id=45] [region_id=9]";
    let t0 = Instant::now();
    // A larger json-file limit than the daemon's default (10m x 3 files here): Docker drops
    // rotated files a slow reader has not reached yet, which no reader can get back.
    let c = Container::run(
        &name,
        &[
            "--log-opt",
            "max-size=1g",
            "-e",
            &format!("FLOOD={n}"),
            "-e",
            &format!("FLOOD_LINE={line}"),
        ],
    );
    let mut want = Counts::default();
    want.levels.insert("WARN".into(), n);
    want.events.insert("became_follower".into(), n);
    let deadline = t0 + Duration::from_secs(600);
    loop {
        let got = counted(&e, &source);
        if got.lines() >= n {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "flood: {} of {n} lines",
            got.lines()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let took = t0.elapsed();
    assert_exact(&e, &c, &source, &want);
    let rss = dk::peak_rss_kib(e.pid());
    let span = c.logged_span_secs();
    eprintln!(
        "flood: {n} lines counted {:.2}s after `docker run` = {:.0} lines/s end to end; the container wrote them in {span:.2}s ({:.0} lines/s); exporter peak RSS (VmHWM) {:.1} MiB",
        took.as_secs_f64(),
        n as f64 / took.as_secs_f64(),
        n as f64 / span.max(1e-3),
        rss as f64 / 1024.0
    );
    assert!(rss < 64 * 1024, "exporter peak RSS {rss} KiB under a flood");
}

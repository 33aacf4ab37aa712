//! On-disk behaviour of `FileFollower`: every test drives `poll()` directly, so what each poll
//! returns is deterministic (no background thread inside the follower, no timing assumptions
//! except where a test is explicitly about `rotate_wait`). The tests at the end run the real
//! exporter, woken by inotify, against files rotated on disk while a writer appends.

mod support;

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tikv_health_exporter::logs::events::EventKind;
use tikv_health_exporter::logs::file::{
    FileFollower, FileStatus, FollowCounters, FollowOptions, GapReason,
};
use tikv_health_exporter::logs::ingest::{EventHistory, Ingestor, SourceStats, StatsSnapshot};
use tikv_health_exporter::logs::parse::{Level, parse_line};
use tikv_health_exporter::logs::reader::RawLine;

/// An owned copy of a [`RawLine`].
#[derive(Clone, Debug, PartialEq, Eq)]
enum Got {
    Line(String),
    TooLong(u64),
}

fn line(s: &str) -> Got {
    Got::Line(s.to_owned())
}

fn own(raw: RawLine<'_>) -> Got {
    match raw {
        RawLine::Line(b) => Got::Line(String::from_utf8(b.to_vec()).expect("test data is UTF-8")),
        RawLine::TooLong(n) => Got::TooLong(n),
    }
}

/// Polls once; returns what was emitted and the status.
fn poll(f: &mut FileFollower) -> (Vec<Got>, FileStatus) {
    let mut out = Vec::new();
    let status = f.poll(|raw| out.push(own(raw))).expect("poll");
    (out, status)
}

/// Polls once and returns only the lines (the status must be `Open`).
fn poll_open(f: &mut FileFollower) -> Vec<Got> {
    let (out, status) = poll(f);
    assert_eq!(status, FileStatus::Open);
    out
}

fn finish(f: &mut FileFollower) -> Vec<Got> {
    let mut out = Vec::new();
    f.finish(|raw| out.push(own(raw)));
    out
}

fn opts(from_start: bool, rotate_wait: Duration) -> FollowOptions {
    FollowOptions {
        from_start,
        max_line_bytes: 1 << 20,
        rotate_wait,
    }
}

/// An append-mode handle, like a logger's.
fn appender(path: &Path) -> File {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open for append")
}

fn append(path: &Path, data: &str) {
    appender(path).write_all(data.as_bytes()).expect("append");
}

fn counters(rotations: u64, truncations: u64) -> FollowCounters {
    FollowCounters {
        rotations,
        truncations,
        ..FollowCounters::default()
    }
}

/// `counters` plus truncations whose cut-off end no rotated copy held.
fn with_truncated_gaps(mut c: FollowCounters, gaps: u64) -> FollowCounters {
    c.gaps[GapReason::Truncated.index()] = gaps;
    c
}

/// Runs a scenario that only proves something when the machine keeps up with its time window:
/// `scenario` returns `false` when it missed the window (nothing asserted yet that depends on
/// it), and is then run again, at most five times.
fn within_its_window(mut scenario: impl FnMut() -> bool) {
    for attempt in 1..=5 {
        if scenario() {
            return;
        }
        eprintln!("attempt {attempt}: missed the time window, retrying");
    }
    panic!("could not run the scenario within its time window in 5 attempts");
}

struct Fixture {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("tikv.log");
        Fixture { _dir: dir, path }
    }

    fn sibling(&self, name: &str) -> PathBuf {
        self.path.with_file_name(name)
    }
}

#[test]
fn starts_at_the_end_by_default_and_at_the_start_with_from_start() {
    let fx = Fixture::new();
    fs::write(&fx.path, "old 1\nold 2\n").unwrap();

    let mut at_end = FileFollower::new(&fx.path, opts(false, Duration::ZERO));
    let mut from_start = FileFollower::new(&fx.path, opts(true, Duration::ZERO));
    assert_eq!(at_end.path(), fx.path.as_path());

    assert_eq!(
        poll_open(&mut at_end),
        vec![],
        "existing content is skipped"
    );
    assert_eq!(
        poll_open(&mut from_start),
        vec![line("old 1"), line("old 2")]
    );

    append(&fx.path, "new 1\n");
    assert_eq!(poll_open(&mut at_end), vec![line("new 1")]);
    assert_eq!(poll_open(&mut from_start), vec![line("new 1")]);

    // Nothing new: nothing emitted, nothing re-read.
    assert_eq!(poll_open(&mut at_end), vec![]);
    assert_eq!(poll_open(&mut from_start), vec![]);
    assert_eq!(at_end.counters(), counters(0, 0));
    assert_eq!(from_start.counters(), counters(0, 0));
    assert_eq!(finish(&mut at_end), vec![]);
}

#[test]
fn a_partial_last_line_is_held_until_its_newline_arrives() {
    let fx = Fixture::new();
    fs::write(&fx.path, "").unwrap();
    let mut f = FileFollower::new(&fx.path, opts(false, Duration::ZERO));
    assert_eq!(poll_open(&mut f), vec![]);

    let mut w = appender(&fx.path);
    w.write_all(b"[2024/07/12 09:26:10.005 +00:00] [INFO] [raft.rs:874] [\"became l")
        .unwrap();
    assert_eq!(poll_open(&mut f), vec![], "half a line is not a line");
    assert_eq!(poll_open(&mut f), vec![], "still held");
    w.write_all(b"eader at term 6\"] [term=6]\nsecond ")
        .unwrap();
    assert_eq!(
        poll_open(&mut f),
        vec![line(
            "[2024/07/12 09:26:10.005 +00:00] [INFO] [raft.rs:874] [\"became leader at term 6\"] [term=6]"
        )]
    );
    w.write_all(b"line\n").unwrap();
    assert_eq!(poll_open(&mut f), vec![line("second line")]);
    assert_eq!(finish(&mut f), vec![]);
}

#[test]
fn rename_and_create_rotation_reads_the_old_tail_then_the_new_file() {
    let fx = Fixture::new();
    let mut old = appender(&fx.path);
    old.write_all(b"a1\n").unwrap();
    let mut f = FileFollower::new(&fx.path, opts(true, Duration::ZERO));
    assert_eq!(poll_open(&mut f), vec![line("a1")]);

    // Written to the old file but not yet polled when the rotation happens.
    old.write_all(b"a2\na3\n").unwrap();
    fs::rename(&fx.path, fx.sibling("tikv.log.1")).unwrap();
    let mut new = appender(&fx.path);
    new.write_all(b"b1\nb2\n").unwrap();

    assert_eq!(
        poll_open(&mut f),
        vec![line("a2"), line("a3"), line("b1"), line("b2")]
    );
    assert_eq!(f.counters(), counters(1, 0));

    // With rotate_wait = 0 the old file is closed at once: late writes to it are not read.
    old.write_all(b"a4 late\n").unwrap();
    new.write_all(b"b3\n").unwrap();
    assert_eq!(poll_open(&mut f), vec![line("b3")]);
    assert_eq!(f.counters(), counters(1, 0));
    assert_eq!(finish(&mut f), vec![]);
}

#[test]
fn rotate_wait_keeps_reading_late_writes_to_the_renamed_file_exactly_once() {
    let rotate_wait = Duration::from_secs(1);
    // The late rounds must run before the old file's deadline; on a machine too loaded to
    // poll three times within `rotate_wait`, try again (bounded).
    within_its_window(|| {
        let fx = Fixture::new();
        let mut old = appender(&fx.path);
        old.write_all(b"a1\n").unwrap();
        let mut f = FileFollower::new(&fx.path, opts(true, rotate_wait));
        assert_eq!(poll_open(&mut f), vec![line("a1")]);

        old.write_all(b"a2\n").unwrap();
        fs::rename(&fx.path, fx.sibling("tikv.log.1")).unwrap();
        let mut new = appender(&fx.path);
        new.write_all(b"b1\n").unwrap();
        // The old file's deadline is set during this poll: at least `earliest`, at most
        // `deadline`.
        let earliest = Instant::now() + rotate_wait;
        assert_eq!(poll_open(&mut f), vec![line("a2"), line("b1")]);
        let deadline = Instant::now() + rotate_wait;
        assert_eq!(f.counters(), counters(1, 0));

        // The writer has not reopened yet: it keeps appending to the renamed file. A poll
        // always reads a draining file before checking its deadline, so each late line written
        // before a poll is read by that poll; the next round needs that poll to have started
        // before the deadline (it did if it ended before `earliest`).
        for i in 1..=3 {
            old.write_all(format!("late {i}\n").as_bytes()).unwrap();
            new.write_all(format!("b{}\n", i + 1).as_bytes()).unwrap();
            assert_eq!(
                poll_open(&mut f),
                vec![
                    Got::Line(format!("late {i}")),
                    Got::Line(format!("b{}", i + 1))
                ],
                "round {i}: old file's late line first, then the new file"
            );
            if i < 3 && Instant::now() >= earliest {
                return false;
            }
        }

        // Poll until past the deadline (bounded): no line may come back a second time.
        let give_up = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            assert!(Instant::now() < give_up, "clock went wrong");
            assert_eq!(poll_open(&mut f), vec![], "nothing is emitted twice");
            std::thread::sleep(Duration::from_millis(10));
        }
        // This poll is past the deadline: it closes the old file.
        assert_eq!(poll_open(&mut f), vec![]);
        old.write_all(b"after the deadline\n").unwrap();
        new.write_all(b"b5\n").unwrap();
        assert_eq!(poll_open(&mut f), vec![line("b5")]);
        assert_eq!(f.counters(), counters(1, 0));
        assert_eq!(finish(&mut f), vec![]);
        true
    });
}

#[test]
fn copytruncate_reads_the_new_content_from_offset_zero() {
    let fx = Fixture::new();
    let mut w = appender(&fx.path);
    w.write_all(b"one\ntwo\nthree\n").unwrap();
    let mut f = FileFollower::new(&fx.path, opts(true, Duration::ZERO));
    assert_eq!(
        poll_open(&mut f),
        vec![line("one"), line("two"), line("three")]
    );

    // logrotate copytruncate: copy, truncate in place, and the writer (O_APPEND) goes on.
    // Lines written between the copy and the truncation would be in the copy only; this test,
    // like logrotate's documentation, accepts that loss and writes nothing in between.
    fs::copy(&fx.path, fx.sibling("tikv.log.1")).unwrap();
    w.set_len(0).unwrap();
    w.write_all(b"four\n").unwrap();
    assert_eq!(poll_open(&mut f), vec![line("four")]);
    assert_eq!(f.counters(), counters(0, 1));

    w.write_all(b"five\n").unwrap();
    assert_eq!(poll_open(&mut f), vec![line("five")]);
    assert_eq!(f.counters(), counters(0, 1));
    assert_eq!(
        fs::read_to_string(fx.sibling("tikv.log.1")).unwrap(),
        "one\ntwo\nthree\n"
    );
}

#[test]
fn truncation_to_empty_is_detected_and_following_continues() {
    let fx = Fixture::new();
    fs::write(&fx.path, "x\ny\n").unwrap();
    let mut f = FileFollower::new(&fx.path, opts(true, Duration::ZERO));
    assert_eq!(poll_open(&mut f), vec![line("x"), line("y")]);

    // `> file`: same inode, size 0.
    File::create(&fx.path).unwrap();
    assert_eq!(poll_open(&mut f), vec![]);
    assert_eq!(f.counters(), with_truncated_gaps(counters(0, 1), 1));
    assert_eq!(poll_open(&mut f), vec![]);
    assert_eq!(
        f.counters(),
        with_truncated_gaps(counters(0, 1), 1),
        "counted once"
    );

    append(&fx.path, "z\n");
    assert_eq!(poll_open(&mut f), vec![line("z")]);
    assert_eq!(f.counters(), with_truncated_gaps(counters(0, 1), 1));
}

/// A file rotated in (read from its start) and copytruncated before any of it was read: its
/// lines are in the copy, found as the one born since the last look, and read once; an empty
/// file only touched is no truncation and no gap.
#[test]
fn a_file_emptied_before_any_of_it_was_read_is_read_from_its_copy() {
    let fx = Fixture::new();
    fs::write(&fx.path, "").unwrap();
    let mut f = FileFollower::new(&fx.path, opts(false, Duration::ZERO));
    assert_eq!(poll_open(&mut f), vec![]);
    // Past the file clock's tick, so that the writes below carry a later time.
    std::thread::sleep(Duration::from_millis(30));
    let mut w = appender(&fx.path);
    w.write_all(b"one\ntwo\n").unwrap();
    fs::copy(&fx.path, fx.sibling("tikv.log.1")).unwrap();
    w.set_len(0).unwrap();
    assert_eq!(poll_open(&mut f), vec![line("one"), line("two")]);
    assert_eq!(f.counters(), counters(0, 1));
    w.write_all(b"three\n").unwrap();
    assert_eq!(poll_open(&mut f), vec![line("three")]);
    assert_eq!(f.counters(), counters(0, 1));

    // Emptied again after it was read (offset > 0): the copy of that truncation is found by
    // its first bytes; then an old copy is never taken for a new one.
    fs::copy(&fx.path, fx.sibling("tikv.log.2")).unwrap();
    w.set_len(0).unwrap();
    assert_eq!(poll_open(&mut f), vec![]);
    assert_eq!(f.counters(), counters(0, 2));
    assert_eq!(poll_open(&mut f), vec![]);
    std::thread::sleep(Duration::from_millis(30));
    File::options()
        .write(true)
        .open(&fx.path)
        .unwrap()
        .set_modified(std::time::SystemTime::now())
        .unwrap();
    assert_eq!(poll_open(&mut f), vec![]);
    assert_eq!(poll_open(&mut f), vec![]);
    assert_eq!(f.counters(), counters(0, 2), "a touch is not a truncation");
}

#[test]
fn a_file_that_appears_later_is_read_from_its_start() {
    let fx = Fixture::new();
    // Not from_start: the "start at the end" rule is only for a file that exists at first.
    let mut f = FileFollower::new(&fx.path, opts(false, Duration::ZERO));
    assert_eq!(poll(&mut f), (vec![], FileStatus::Missing));
    assert_eq!(poll(&mut f), (vec![], FileStatus::Missing));

    fs::write(&fx.path, "first\nsecond\n").unwrap();
    assert_eq!(
        poll(&mut f),
        (vec![line("first"), line("second")], FileStatus::Open)
    );
    append(&fx.path, "third\n");
    assert_eq!(poll(&mut f), (vec![line("third")], FileStatus::Open));
    assert_eq!(f.counters(), counters(0, 0));
}

#[test]
fn a_deleted_file_is_read_and_said_deleted_until_a_new_one_appears() {
    let fx = Fixture::new();
    let mut old = appender(&fx.path);
    old.write_all(b"o1\n").unwrap();
    let mut f = FileFollower::new(&fx.path, opts(true, Duration::ZERO));
    assert_eq!(poll_open(&mut f), vec![line("o1")]);

    // Unread when the file is deleted: still readable through the open handle.
    old.write_all(b"o2\n").unwrap();
    fs::remove_file(&fx.path).unwrap();
    assert_eq!(
        poll(&mut f),
        (vec![line("o2")], FileStatus::Deleted),
        "the deleted file is still open and read, and said to be deleted"
    );
    // Its writer may go on appending to it: still read, still deleted.
    old.write_all(b"o3\n").unwrap();
    assert_eq!(poll(&mut f), (vec![line("o3")], FileStatus::Deleted));
    assert_eq!(f.counters(), counters(0, 0));

    fs::write(&fx.path, "n1\n").unwrap();
    assert_eq!(poll_open(&mut f), vec![line("n1")]);
    assert_eq!(f.counters(), counters(1, 0));
    append(&fx.path, "n2\n");
    assert_eq!(poll_open(&mut f), vec![line("n2")]);
    assert_eq!(f.counters(), counters(1, 0));
}

#[test]
fn a_trailing_partial_line_is_emitted_when_the_old_file_is_finished() {
    // rotate_wait = 0: the old file is finished at the rotation itself.
    let fx = Fixture::new();
    let mut old = appender(&fx.path);
    old.write_all(b"whole\npart").unwrap();
    let mut f = FileFollower::new(&fx.path, opts(true, Duration::ZERO));
    assert_eq!(poll_open(&mut f), vec![line("whole")]);
    old.write_all(b"ial").unwrap();
    assert_eq!(poll_open(&mut f), vec![]);
    fs::rename(&fx.path, fx.sibling("tikv.log.1")).unwrap();
    fs::write(&fx.path, "new\n").unwrap();
    assert_eq!(poll_open(&mut f), vec![line("partial"), line("new")]);
    assert_eq!(f.counters(), counters(1, 0));

    // rotate_wait > 0: the partial line waits (its newline may still come), and
    // `finish` emits it.
    let fx = Fixture::new();
    let mut old = appender(&fx.path);
    old.write_all(b"whole\npart").unwrap();
    let mut f = FileFollower::new(&fx.path, opts(true, Duration::from_secs(3600)));
    assert_eq!(poll_open(&mut f), vec![line("whole")]);
    fs::rename(&fx.path, fx.sibling("tikv.log.1")).unwrap();
    fs::write(&fx.path, "new\nnew part").unwrap();
    assert_eq!(poll_open(&mut f), vec![line("new")]);
    assert_eq!(f.counters(), counters(1, 0));
    assert_eq!(finish(&mut f), vec![line("part"), line("new part")]);
}

#[test]
fn a_partial_line_of_a_rotated_file_is_emitted_once_its_rotate_wait_expires() {
    let rotate_wait = Duration::from_millis(500);
    // The poll that must not emit the partial line has to start before the deadline; on a
    // machine too loaded for that, try again (bounded).
    within_its_window(|| {
        let fx = Fixture::new();
        let mut old = appender(&fx.path);
        old.write_all(b"whole\n").unwrap();
        let mut f = FileFollower::new(&fx.path, opts(true, rotate_wait));
        assert_eq!(poll_open(&mut f), vec![line("whole")]);
        old.write_all(b"part").unwrap();
        fs::rename(&fx.path, fx.sibling("tikv.log.1")).unwrap();
        fs::write(&fx.path, "new\n").unwrap();
        let earliest = Instant::now() + rotate_wait;
        assert_eq!(poll_open(&mut f), vec![line("new")]);
        let deadline = Instant::now() + rotate_wait;
        old.write_all(b"ial").unwrap();
        let got = poll_open(&mut f);
        if Instant::now() >= earliest {
            return false;
        }
        assert_eq!(got, vec![], "the newline may still come");

        // Poll (bounded) until past the deadline; the partial line comes out exactly once,
        // from `poll` itself, not only from `finish`.
        let give_up = Instant::now() + Duration::from_secs(30);
        let mut got = Vec::new();
        while Instant::now() < deadline || got.is_empty() {
            assert!(
                Instant::now() < give_up,
                "the partial line never came: {got:?}"
            );
            got.extend(poll_open(&mut f));
            std::thread::sleep(Duration::from_millis(5));
        }
        got.extend(poll_open(&mut f));
        assert_eq!(got, vec![line("partial")]);
        assert_eq!(finish(&mut f), vec![]);
        true
    });
}

/// Three rotations inside one `rotate_wait`; the first rotated file expires while the other
/// two are still read for late writes. Their late lines must come out oldest file first.
#[test]
fn late_lines_of_several_rotated_files_come_out_oldest_file_first() {
    let rotate_wait = Duration::from_millis(1500);
    let gap = Duration::from_millis(700);
    // The scenario needs one poll between the first file's deadline and the second's; on a
    // machine too loaded to hit that 700 ms window, try again (bounded).
    within_its_window(|| {
        let fx = Fixture::new();
        let mut old1 = appender(&fx.path);
        old1.write_all(b"f1\n").unwrap();
        let mut f = FileFollower::new(&fx.path, opts(true, rotate_wait));
        assert_eq!(poll_open(&mut f), vec![line("f1")]);

        fs::rename(&fx.path, fx.sibling("tikv.log.1")).unwrap();
        let mut old2 = appender(&fx.path);
        old2.write_all(b"f2\n").unwrap();
        assert_eq!(poll_open(&mut f), vec![line("f2")]);
        let deadline1 = Instant::now() + rotate_wait; // at or after the first file's deadline

        std::thread::sleep(gap);
        let before_second = Instant::now();
        fs::rename(&fx.path, fx.sibling("tikv.log.2")).unwrap();
        let mut old3 = appender(&fx.path);
        old3.write_all(b"f3\n").unwrap();
        assert_eq!(poll_open(&mut f), vec![line("f3")]);
        fs::rename(&fx.path, fx.sibling("tikv.log.3")).unwrap();
        fs::write(&fx.path, "f4\n").unwrap();
        assert_eq!(poll_open(&mut f), vec![line("f4")]);
        assert_eq!(f.counters(), counters(3, 0));
        let deadline2 = before_second + rotate_wait; // at or before the second file's deadline

        while Instant::now() < deadline1 {
            assert_eq!(poll_open(&mut f), vec![]);
            std::thread::sleep(Duration::from_millis(10));
        }
        // This poll closes the first rotated file only.
        assert_eq!(poll_open(&mut f), vec![]);
        if Instant::now() >= deadline2 {
            return false;
        }
        old1.write_all(b"too late 1\n").unwrap();
        old2.write_all(b"late 2\n").unwrap();
        old3.write_all(b"late 3\n").unwrap();
        let got = poll_open(&mut f);
        if Instant::now() >= deadline2 {
            return false;
        }
        assert_eq!(got, vec![line("late 2"), line("late 3")]);
        true
    });
}

#[test]
fn a_partial_line_cut_by_truncation_is_kept_as_a_line() {
    let fx = Fixture::new();
    let mut w = appender(&fx.path);
    w.write_all(b"whole\ncut off").unwrap();
    let mut f = FileFollower::new(&fx.path, opts(true, Duration::ZERO));
    assert_eq!(poll_open(&mut f), vec![line("whole")]);
    w.set_len(0).unwrap();
    w.write_all(b"fresh\n").unwrap();
    assert_eq!(poll_open(&mut f), vec![line("cut off"), line("fresh")]);
    assert_eq!(f.counters(), with_truncated_gaps(counters(0, 1), 1));
}

#[test]
fn an_over_long_line_is_reported_with_its_length_and_the_next_lines_are_intact() {
    let fx = Fixture::new();
    let mut w = appender(&fx.path);
    let mut f = FileFollower::new(
        &fx.path,
        FollowOptions {
            from_start: true,
            max_line_bytes: 64,
            rotate_wait: Duration::ZERO,
        },
    );
    let long = "x".repeat(200);
    let exactly_max = "m".repeat(64);
    w.write_all(format!("short\n{long}\n{exactly_max}\nafter\n").as_bytes())
        .unwrap();
    assert_eq!(
        poll_open(&mut f),
        vec![
            line("short"),
            Got::TooLong(200),
            Got::Line(exactly_max.clone()),
            line("after")
        ]
    );

    // An over-long line arriving across several polls: nothing until its newline, then its
    // full length, and the line after it is whole.
    w.write_all("y".repeat(5000).as_bytes()).unwrap();
    assert_eq!(poll_open(&mut f), vec![]);
    w.write_all("y".repeat(3000).as_bytes()).unwrap();
    assert_eq!(poll_open(&mut f), vec![]);
    w.write_all(b"yy\nnext ").unwrap();
    assert_eq!(poll_open(&mut f), vec![Got::TooLong(8002)]);
    w.write_all(b"line\n").unwrap();
    assert_eq!(poll_open(&mut f), vec![line("next line")]);
}

#[test]
fn crlf_lines_keep_their_cr_and_still_parse() {
    let fx = Fixture::new();
    let tikv = "[2024/07/12 09:26:10.005 +00:00] [INFO] [raft.rs:874] [\"became leader at term 6\"] [term=6] [region_id=44]";
    fs::write(&fx.path, format!("{tikv}\r\nplain\r\n\r\n")).unwrap();
    let mut f = FileFollower::new(&fx.path, opts(true, Duration::ZERO));
    let got = poll_open(&mut f);
    assert_eq!(
        got,
        vec![Got::Line(format!("{tikv}\r")), line("plain\r"), line("\r")]
    );

    let stats = Arc::new(SourceStats::new("file:crlf", ""));
    let mut ing = Ingestor::new(stats.clone(), None);
    let mut events = Vec::new();
    fs::write(fx.sibling("other.log"), format!("{tikv}\r\n")).unwrap();
    let mut g = FileFollower::new(fx.sibling("other.log"), opts(true, Duration::ZERO));
    g.poll(|raw| events.extend(ing.ingest(raw))).unwrap();
    ing.flush();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].kind, EventKind::BecameLeader);
    assert_eq!(events[0].region_id, Some(44));
    assert_eq!(events[0].term, Some(6));
    let snap = stats.snapshot();
    assert_eq!(snap.lines_by_level, levels(&[(Level::Info, 1)]));
    assert_eq!(snap.malformed, 0);
}

// ---------------------------------------------------------------------------------------------
// Never lose or double count, with a concurrent writer.

enum Cmd {
    /// Append this many numbered lines, each in two `write` calls (so polls see partial lines).
    Write(u64),
    /// Rename the file away and create a new one (the writer switches to it at once).
    Rotate,
    /// Copy the file, then truncate it in place (the writer's O_APPEND handle goes on).
    CopyTruncate,
}

/// A deterministic xorshift generator.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn writer_thread(path: PathBuf, cmds: mpsc::Receiver<Cmd>, acks: mpsc::Sender<()>) {
    let mut file = appender(&path);
    let mut seq = 0u64;
    let mut rotated = 0;
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for cmd in cmds {
        match cmd {
            Cmd::Write(n) => {
                for _ in 0..n {
                    seq += 1;
                    let l = format!(
                        "[2024/07/12 09:26:10.005 +00:00] [INFO] [raft.rs:874] [\"became leader at term 6\"] [seq={seq}]\n"
                    );
                    let cut = 1 + rng.below(l.len() as u64 - 1) as usize;
                    file.write_all(&l.as_bytes()[..cut]).unwrap();
                    file.write_all(&l.as_bytes()[cut..]).unwrap();
                }
            }
            Cmd::Rotate => {
                rotated += 1;
                fs::rename(&path, path.with_extension(format!("log.{rotated}"))).unwrap();
                file = appender(&path);
            }
            Cmd::CopyTruncate => {
                rotated += 1;
                fs::copy(&path, path.with_extension(format!("log.{rotated}"))).unwrap();
                file.set_len(0).unwrap();
            }
        }
        if acks.send(()).is_err() {
            return;
        }
    }
}

fn seq_of(b: &[u8]) -> u64 {
    let l = parse_line(b).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(b)));
    l.field(&["seq"])
        .and_then(|t| t.to_u64())
        .unwrap_or_else(|| panic!("no seq: {}", String::from_utf8_lossy(b)))
}

fn never_lose_or_double_count(rotate_wait: Duration) {
    const N: u64 = 5000;
    let fx = Fixture::new();
    fs::write(&fx.path, "").unwrap();
    let mut f = FileFollower::new(&fx.path, opts(false, rotate_wait));
    let mut seen: Vec<u64> = Vec::new();
    let do_poll = |f: &mut FileFollower, seen: &mut Vec<u64>| {
        f.poll(|raw| match raw {
            RawLine::Line(b) => seen.push(seq_of(b)),
            RawLine::TooLong(n) => panic!("unexpected over-long line of {n} bytes"),
        })
        .expect("poll");
    };
    do_poll(&mut f, &mut seen);

    let (cmd_tx, cmd_rx) = mpsc::channel();
    let (ack_tx, ack_rx) = mpsc::channel();
    let path = fx.path.clone();
    // Dropping `cmd_tx` (also on a panic here) ends the writer.
    let writer = std::thread::spawn(move || writer_thread(path, cmd_rx, ack_tx));
    let give_up = Instant::now() + Duration::from_secs(120);

    // Sends a command and polls concurrently until the writer has carried it out.
    let run = |cmd: Cmd, f: &mut FileFollower, seen: &mut Vec<u64>| {
        cmd_tx.send(cmd).expect("writer alive");
        loop {
            do_poll(f, seen);
            match ack_rx.recv_timeout(Duration::from_millis(1)) {
                Ok(()) => return,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    assert!(Instant::now() < give_up, "writer too slow");
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => panic!("writer thread died"),
            }
        }
    };

    // (lines to write, what to do next). Renames and copytruncates happen with lines not yet
    // read: the follower reads a renamed file's tail through its open handle, and a truncated
    // file's unread end from the copy (found by its first bytes), also when the file was
    // refilled past the old offset before the follower looked. Only lines written between
    // the copy and the truncation would be lost, and this writer writes none there.
    #[derive(Clone, Copy)]
    enum Then {
        Nothing,
        Rotate,
        CopyTruncate,
    }
    let schedule = [
        (700, Then::Rotate),
        (300, Then::Nothing),
        (450, Then::CopyTruncate),
        (1, Then::Rotate),
        (600, Then::Nothing),
        (250, Then::CopyTruncate),
        (900, Then::Rotate),
        (333, Then::CopyTruncate),
        (466, Then::Rotate),
        (1000, Then::Nothing),
    ];
    assert_eq!(schedule.iter().map(|s| s.0).sum::<u64>(), N);
    for (n, then) in schedule {
        run(Cmd::Write(n), &mut f, &mut seen);
        match then {
            Then::Nothing => {}
            Then::Rotate => run(Cmd::Rotate, &mut f, &mut seen),
            Then::CopyTruncate => run(Cmd::CopyTruncate, &mut f, &mut seen),
        }
    }
    drop(cmd_tx);
    writer.join().expect("writer thread");
    do_poll(&mut f, &mut seen);
    f.finish(|raw| panic!("nothing may be pending: {:?}", own(raw)));

    let expected: Vec<u64> = (1..=N).collect();
    if seen != expected {
        let first_bad = seen
            .iter()
            .zip(&expected)
            .position(|(a, b)| a != b)
            .unwrap_or(seen.len().min(expected.len()));
        panic!(
            "saw {} lines; first difference at index {first_bad}: {:?} vs {:?}",
            seen.len(),
            &seen[first_bad.saturating_sub(2)..(first_bad + 3).min(seen.len())],
            &expected[first_bad.saturating_sub(2)..(first_bad + 3).min(expected.len())],
        );
    }
    assert_eq!(f.counters().rotations, 4);
    assert_eq!(f.counters().truncations, 3);
    assert_eq!(f.counters().gaps, [0, 0], "nothing lost");
}

#[test]
fn never_loses_or_double_counts_with_immediate_close_of_rotated_files() {
    never_lose_or_double_count(Duration::ZERO);
}

#[test]
fn never_loses_or_double_counts_with_rotate_wait() {
    never_lose_or_double_count(Duration::from_millis(20));
}

// ---------------------------------------------------------------------------------------------
// Follower → Ingestor → SourceStats / EventHistory.

fn levels(counts: &[(Level, u64)]) -> [u64; Level::ALL.len()] {
    let mut a = [0; Level::ALL.len()];
    for &(l, n) in counts {
        a[l.index()] = n;
    }
    a
}

fn events(counts: &[(EventKind, u64)]) -> [u64; EventKind::ALL.len()] {
    let mut a = [0; EventKind::ALL.len()];
    for &(k, n) in counts {
        a[k.index()] = n;
    }
    a
}

#[test]
fn follower_feeds_per_source_counters_and_a_bounded_history() {
    let dir = tempfile::tempdir().unwrap();
    let a_path = dir.path().join("a.log");
    let b_path = dir.path().join("b.log");
    let follow = FollowOptions {
        from_start: true,
        max_line_bytes: 200,
        rotate_wait: Duration::ZERO,
    };
    let long = format!(
        "[2024/07/12 09:26:10.006 +00:00] [INFO] [raft.rs:874] [\"{}\"]",
        "z".repeat(300)
    );
    fs::write(
        &a_path,
        [
            "[2024/07/12 09:26:10.005 +00:00] [INFO] [raft.rs:874] [\"became leader at term 6\"] [term=6] [raft_id=45] [region_id=44]",
            "[2024/07/12 09:26:10.006 +00:00] [WARN] [endpoint.rs:537] [error-response] [err=\"peer is not leader for region 44\"]",
            "starting tikv-server ...",
            &long,
            "[2024/07/12 09:26:10.007 +00:00] [INFO] [raft.rs:1177] [\"starting a new election\"] [term=6] [raft_id=46] [region_id=45]",
            "",
        ]
        .join("\n"),
    )
    .unwrap();
    fs::write(
        &b_path,
        [
            "[2021/08/09 14:18:44.429 +00:00] [INFO] [cluster.go:625] [\"leader changed\"] [region-id=1232323] [from=1] [to=2]",
            "[2022/06/28 14:31:15.389 +00:00] [ERROR] [kv.rs:931] [\"KvService response batch commands fail\"]",
            "[2022/06/28 14:30:55.329 +00:00] [INFO] [operator_controller.go:620] [\"send schedule command\"] [region-id=2641161] [step=\"transfer leader from store 1 to store 5\"] [source=create]",
            "[DEBUG] [\"start to campaign PD leader\"] [campaign-leader-name=pd-0]",
            "",
        ]
        .join("\n"),
    )
    .unwrap();

    let history = Arc::new(EventHistory::new(3));
    let a_stats = Arc::new(SourceStats::new("file:a", "1"));
    let b_stats = Arc::new(SourceStats::new("file:b", "2"));
    let mut a_ing = Ingestor::new(a_stats.clone(), Some(history.clone()));
    let mut b_ing = Ingestor::new(b_stats.clone(), Some(history.clone()));
    let mut a = FileFollower::new(&a_path, follow.clone());
    let mut b = FileFollower::new(&b_path, follow);

    let mut a_events = Vec::new();
    let mut b_events = Vec::new();
    a.poll(|raw| a_events.extend(ing_kind(&mut a_ing, raw)))
        .unwrap();
    b.poll(|raw| b_events.extend(ing_kind(&mut b_ing, raw)))
        .unwrap();
    assert_eq!(
        a_events,
        vec![
            (EventKind::BecameLeader, Some(44)),
            (EventKind::ElectionStarted, Some(45))
        ]
    );
    assert_eq!(
        b_events,
        vec![
            (EventKind::LeaderChanged, Some(1232323)),
            (EventKind::TransferLeader, Some(2641161)),
            (EventKind::PdLeaderChanged, None),
        ]
    );

    // Counters are published on flush only.
    assert_eq!(a_stats.snapshot(), StatsSnapshot::default());
    assert_eq!(b_stats.snapshot(), StatsSnapshot::default());
    a_ing.flush();
    b_ing.flush();

    let a_snap = a_stats.snapshot();
    assert_eq!(
        a_snap,
        StatsSnapshot {
            lines_by_level: levels(&[(Level::Info, 2), (Level::Warn, 1)]),
            malformed: 2,
            events: events(&[
                (EventKind::BecameLeader, 1),
                (EventKind::ElectionStarted, 1)
            ]),
            // 2024-07-12T09:26:10.007Z; the over-long line's time is never parsed.
            last_line_millis: Some(1_720_776_370_007),
        }
    );
    assert_eq!(a_snap.lines(), 5);
    let b_snap = b_stats.snapshot();
    assert_eq!(
        b_snap,
        StatsSnapshot {
            lines_by_level: levels(&[(Level::Info, 2), (Level::Error, 1), (Level::Debug, 1)]),
            malformed: 0,
            events: events(&[
                (EventKind::LeaderChanged, 1),
                (EventKind::TransferLeader, 1),
                (EventKind::PdLeaderChanged, 1),
            ]),
            // 2022-06-28T14:31:15.389Z, the newest line even though it is not the last.
            last_line_millis: Some(1_656_426_675_389),
        }
    );
    assert_eq!(b_snap.lines(), 4);

    // A second round on source a only.
    append(
        &a_path,
        "[2024/07/12 09:26:10.009 +00:00] [INFO] [raft.rs:783] [\"became follower at term 7\"] [term=7] [raft_id=47] [region_id=46]\n[2024/07/12 09:26:10.009 +00:00] [TRACE] [raft.rs:1] [\"tick\"]\n",
    );
    a.poll(|raw| a_events.extend(ing_kind(&mut a_ing, raw)))
        .unwrap();
    a_ing.flush();
    assert_eq!(
        a_stats.snapshot(),
        StatsSnapshot {
            lines_by_level: levels(&[(Level::Info, 3), (Level::Warn, 1), (Level::Trace, 1)]),
            malformed: 2,
            events: events(&[
                (EventKind::BecameLeader, 1),
                (EventKind::ElectionStarted, 1),
                (EventKind::BecameFollower, 1),
            ]),
            last_line_millis: Some(1_720_776_370_009),
        }
    );
    assert_eq!(b_stats.snapshot(), b_snap, "source b untouched");

    // Five events went into a history of three: the three newest remain, oldest first.
    let recent = history.recent();
    let summary: Vec<_> = recent
        .iter()
        .map(|e| {
            (
                e.source.as_str(),
                e.store.as_str(),
                e.event.kind,
                e.event.region_id,
                e.time.as_deref(),
                e.message.as_str(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (
                "file:b",
                "2",
                EventKind::TransferLeader,
                Some(2641161),
                Some("2022-06-28T14:30:55.329+00:00"),
                "send schedule command"
            ),
            (
                "file:b",
                "2",
                EventKind::PdLeaderChanged,
                None,
                None,
                "start to campaign PD leader"
            ),
            (
                "file:a",
                "1",
                EventKind::BecameFollower,
                Some(46),
                Some("2024-07-12T09:26:10.009+00:00"),
                "became follower at term 7"
            ),
        ]
    );
    assert_eq!(recent[0].event.from_store, Some(1));
    assert_eq!(recent[0].event.to_store, Some(5));
    assert_eq!(recent[2].event.term, Some(7));
}

fn ing_kind(ing: &mut Ingestor, raw: RawLine<'_>) -> Option<(EventKind, Option<u64>)> {
    ing.ingest(raw).map(|e| (e.kind, e.region_id))
}

// ---------------------------------------------------------------------------------------------
// Files known by device and inode: symlinks swapped, files rotated faster than polled,
// copytruncate with lines not yet read, deletion.

/// A numbered TiKV leadership line (raft-rs `became leader at term N`, as in
/// `/work/shared/fixtures/tikv-pd-real-lines.log`), counted as `became_leader`.
fn leader_line(seq: u64) -> String {
    format!(
        "[2024/07/12 09:26:10.005 +00:00] [INFO] [raft.rs:874] [\"became leader at term 6\"] [term=6] [region_id=44] [seq={seq}]\n"
    )
}

fn leader_lines(seqs: std::ops::RangeInclusive<u64>) -> String {
    seqs.map(leader_line).collect()
}

/// Polls once and returns the `seq` of every line.
fn poll_seqs(f: &mut FileFollower) -> Vec<u64> {
    let mut seen = Vec::new();
    f.poll(|raw| match raw {
        RawLine::Line(b) => seen.push(seq_of(b)),
        RawLine::TooLong(n) => panic!("unexpected over-long line of {n} bytes"),
    })
    .expect("poll");
    seen
}

/// Points `link` at `target` atomically (a new symlink renamed over the old one, as kubelet
/// and `ln -sfn` do).
fn point(link: &Path, target: &Path) {
    let tmp = link.with_extension("tmp-link");
    let _ = fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp).unwrap();
    fs::rename(&tmp, link).unwrap();
}

/// Waits (bounded) until the files were born long enough ago that the follower takes them for
/// files that existed before it looked, whatever the granularity of the file clock.
fn let_age(paths: &[&Path]) {
    let born = paths
        .iter()
        .map(|p| fs::metadata(p).unwrap().created().unwrap())
        .max()
        .unwrap();
    let old_enough = born + Duration::from_millis(200);
    let give_up = Instant::now() + Duration::from_secs(30);
    while std::time::SystemTime::now() < old_enough {
        assert!(Instant::now() < give_up, "clock went wrong");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn gaps(f: &FileFollower) -> [u64; 2] {
    f.counters().gaps
}

#[test]
fn a_symlink_swapped_to_another_file_and_back_never_rereads_what_was_counted() {
    // Issue 10 item 11: 5 new lines were counted as 510. Kubernetes' /var/log/containers/*.log
    // are symlinks to /var/log/pods/<pod>/<container>/<n>.log, pointed at a new file when the
    // container restarts (reference kubernetes.md §1.4, §1.6).
    for rotate_wait in [Duration::ZERO, Duration::from_secs(3600)] {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, link) = (
            dir.path().join("a.log"),
            dir.path().join("b.log"),
            dir.path().join("tikv.log"),
        );
        fs::write(&a, leader_lines(1..=500)).unwrap();
        fs::write(&b, leader_lines(1001..=1500)).unwrap();
        point(&link, &a);
        let_age(&[&a, &b]);
        let mut f = FileFollower::new(&link, opts(false, rotate_wait));
        assert_eq!(poll_seqs(&mut f), Vec::<u64>::new(), "starts at the end");
        assert_eq!(f.current_file(), Some(a.as_path()));

        append(&a, &leader_lines(501..=505));
        assert_eq!(poll_seqs(&mut f), (501..=505).collect::<Vec<_>>());

        // Swapped to another file that was there before: its old content is not news.
        point(&link, &b);
        assert_eq!(poll_seqs(&mut f), Vec::<u64>::new(), "{rotate_wait:?}");
        assert_eq!(f.current_file(), Some(b.as_path()));
        append(&b, &leader_lines(1501..=1505));
        assert_eq!(poll_seqs(&mut f), (1501..=1505).collect::<Vec<_>>());

        // Swapped back: resumed where it was left (still open with a rotate_wait, closed and
        // remembered by inode without).
        point(&link, &a);
        append(&a, &leader_lines(506..=510));
        assert_eq!(
            poll_seqs(&mut f),
            (506..=510).collect::<Vec<_>>(),
            "{rotate_wait:?}: only the 5 new lines, not 510"
        );

        // A container restart: a new file, already holding its first lines, then the link.
        let c = dir.path().join("c.log");
        fs::write(&c, leader_lines(2001..=2003)).unwrap();
        point(&link, &c);
        assert_eq!(poll_seqs(&mut f), vec![2001, 2002, 2003]);
        assert_eq!(f.counters().rotations, 3);
        assert_eq!(gaps(&f), [0, 0]);
        assert_eq!(finish(&mut f), vec![]);
    }
}

#[test]
fn files_created_and_rotated_away_between_two_polls_are_read_from_the_rotated_siblings() {
    let fx = Fixture::new();
    // Rotated before the follower starts: history, never read.
    let history = fx.sibling("tikv.log.20240711-000000");
    fs::write(&history, leader_lines(90..=99)).unwrap();
    let_age(&[&history]);
    let mut first = appender(&fx.path);
    first.write_all(leader_line(1).as_bytes()).unwrap();
    let mut f = FileFollower::new(&fx.path, opts(true, Duration::ZERO));
    assert_eq!(poll_seqs(&mut f), vec![1]);

    // Three rotations before the next poll, named as kubelet does (`<log>.<YYYYMMDD-HHMMSS>`,
    // reference kubernetes.md §1.5), one of them compressed already (gone as text).
    first.write_all(leader_line(2).as_bytes()).unwrap();
    fs::rename(&fx.path, fx.sibling("tikv.log.20240712-092610")).unwrap();
    fs::write(&fx.path, leader_lines(3..=4)).unwrap();
    fs::rename(&fx.path, fx.sibling("tikv.log.20240712-092611")).unwrap();
    fs::write(&fx.path, leader_lines(5..=7)).unwrap();
    fs::rename(&fx.path, fx.sibling("tikv.log.20240712-092612")).unwrap();
    fs::write(fx.sibling("tikv.log.20240712-092609.gz"), "compressed").unwrap();
    fs::write(&fx.path, leader_lines(8..=9)).unwrap();
    assert_eq!(
        poll_seqs(&mut f),
        (2..=9).collect::<Vec<_>>(),
        "the open file's tail, then the missed files oldest first, then the newest"
    );
    assert_eq!(f.counters().rotations, 1);
    assert_eq!(f.counters().caught_up, 2);

    // logrotate's numbered scheme shifts names (`.1` → `.2`) and keeps inodes.
    append(&fx.path, &leader_line(10));
    fs::rename(&fx.path, fx.sibling("tikv.log.1")).unwrap();
    fs::write(&fx.path, leader_lines(11..=12)).unwrap();
    fs::rename(fx.sibling("tikv.log.1"), fx.sibling("tikv.log.2")).unwrap();
    fs::rename(&fx.path, fx.sibling("tikv.log.1")).unwrap();
    fs::write(&fx.path, leader_line(13)).unwrap();
    assert_eq!(poll_seqs(&mut f), vec![10, 11, 12, 13]);
    assert_eq!(f.counters().caught_up, 3);

    // Nothing is read twice when the next rotation lists the same siblings again.
    append(&fx.path, &leader_line(14));
    fs::rename(&fx.path, fx.sibling("tikv.log.3")).unwrap();
    fs::write(&fx.path, leader_line(15)).unwrap();
    assert_eq!(poll_seqs(&mut f), vec![14, 15]);
    assert_eq!(f.counters().caught_up, 3);
    assert_eq!(gaps(&f), [0, 0]);
}

#[test]
fn copytruncate_reads_the_lines_not_yet_read_from_the_copy() {
    let fx = Fixture::new();
    let mut w = appender(&fx.path);
    w.write_all(leader_lines(1..=3).as_bytes()).unwrap();
    let mut f = FileFollower::new(&fx.path, opts(true, Duration::ZERO));
    assert_eq!(poll_seqs(&mut f), vec![1, 2, 3]);

    // Written after the last poll, then copied and truncated before the next one: the lines
    // are only in the copy now. Half a line is pending too.
    w.write_all(leader_lines(4..=6).as_bytes()).unwrap();
    let seven = leader_line(7);
    w.write_all(&seven.as_bytes()[..20]).unwrap();
    assert_eq!(poll_seqs(&mut f), vec![4, 5, 6]);
    w.write_all(&seven.as_bytes()[20..]).unwrap();
    w.write_all(leader_line(8).as_bytes()).unwrap();
    fs::copy(&fx.path, fx.sibling("tikv.log.1")).unwrap();
    w.set_len(0).unwrap();
    w.write_all(leader_lines(9..=10).as_bytes()).unwrap();
    assert_eq!(
        poll_seqs(&mut f),
        vec![7, 8, 9, 10],
        "the half line completed from the copy"
    );
    assert_eq!(f.counters().truncations, 1);
    assert_eq!(gaps(&f), [0, 0], "nothing lost");

    // Truncated and refilled past the old offset before the next poll: the first bytes tell.
    let before = fs::metadata(&fx.path).unwrap().len();
    w.write_all(leader_line(11).as_bytes()).unwrap();
    fs::copy(&fx.path, fx.sibling("tikv.log.2")).unwrap();
    w.set_len(0).unwrap();
    w.write_all(leader_lines(12..=20).as_bytes()).unwrap();
    assert!(fs::metadata(&fx.path).unwrap().len() > before + 100);
    assert_eq!(poll_seqs(&mut f), (11..=20).collect::<Vec<_>>());
    assert_eq!(f.counters().truncations, 2);
    assert_eq!(gaps(&f), [0, 0]);

    // The copy compressed at once (`compress` without `delaycompress`): the unread lines are
    // gone, and that is counted, not silent.
    w.write_all(leader_lines(21..=22).as_bytes()).unwrap();
    fs::write(fx.sibling("tikv.log.3.gz"), "compressed").unwrap();
    w.set_len(0).unwrap();
    w.write_all(leader_line(23).as_bytes()).unwrap();
    assert_eq!(poll_seqs(&mut f), vec![23]);
    assert_eq!(f.counters().truncations, 3);
    assert_eq!(gaps(&f)[GapReason::Truncated.index()], 1);
    assert_eq!(GapReason::Truncated.as_str(), "truncated");
}

/// Compares the sequence numbers read with `1..=written`: the ranges missing, the numbers read
/// more than once, and the first place where the order differs (short enough to print).
fn compare_seqs(seen: &[u64], written: u64) -> (Vec<(u64, u64)>, Vec<u64>, Option<usize>) {
    let mut times = vec![0u32; written as usize + 1];
    for &s in seen {
        times[s as usize] += 1;
    }
    let mut missing: Vec<(u64, u64)> = Vec::new();
    for s in 1..=written {
        if times[s as usize] == 0 {
            match missing.last_mut() {
                Some((_, to)) if *to + 1 == s => *to = s,
                _ => missing.push((s, s)),
            }
        }
    }
    let doubled = (1..=written)
        .filter(|&s| times[s as usize] > 1)
        .take(20)
        .collect();
    let out_of_order = seen.windows(2).position(|w| w[0] >= w[1]);
    (missing, doubled, out_of_order)
}

/// How a writer rotates its file.
#[derive(Clone, Copy, Debug)]
enum Scheme {
    /// Renamed to `<log>.<timestamp>` (kubelet), a new name each time.
    Timestamped,
    /// logrotate's numbered scheme: `.N` → `.N+1` …, `.1` → `.2`, the file → `.1`.
    Numbered,
}

/// Appends numbered leadership lines (each in two writes, so readers see partial lines) and
/// rotates by rename-and-create every `every`, for `run`. Returns how many lines it wrote.
fn rotating_writer(path: &Path, scheme: Scheme, every: Duration, run: Duration) -> u64 {
    let mut file = appender(path);
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let (mut seq, mut rotations) = (0u64, 0u64);
    let start = Instant::now();
    let mut next_rotation = start + every;
    while start.elapsed() < run {
        for _ in 0..1 + rng.below(20) {
            seq += 1;
            let l = leader_line(seq);
            let cut = 1 + rng.below(l.len() as u64 - 1) as usize;
            file.write_all(&l.as_bytes()[..cut]).unwrap();
            file.write_all(&l.as_bytes()[cut..]).unwrap();
        }
        if Instant::now() >= next_rotation {
            rotations += 1;
            match scheme {
                Scheme::Timestamped => {
                    let to = path.with_extension(format!("log.20240712-{rotations:06}"));
                    fs::rename(path, to).unwrap();
                }
                Scheme::Numbered => {
                    for n in (1..rotations).rev() {
                        let from = path.with_extension(format!("log.{n}"));
                        fs::rename(&from, path.with_extension(format!("log.{}", n + 1))).unwrap();
                    }
                    fs::rename(path, path.with_extension("log.1")).unwrap();
                }
            }
            file = appender(path);
            next_rotation += every;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    seq
}

/// Issue 10 item 12: with rotation every 40 ms and a follower that looks only every 250 ms
/// (the poll interval, no change notification), every line is read exactly once.
#[test]
fn rotation_every_40ms_polled_every_250ms_loses_and_doubles_nothing() {
    for scheme in [Scheme::Timestamped, Scheme::Numbered] {
        let fx = Fixture::new();
        fs::write(&fx.path, "").unwrap();
        let mut f = FileFollower::new(&fx.path, FollowOptions::default());
        assert_eq!(poll_seqs(&mut f), Vec::<u64>::new());
        let path = fx.path.clone();
        let writer = std::thread::spawn(move || {
            rotating_writer(
                &path,
                scheme,
                Duration::from_millis(40),
                Duration::from_millis(1500),
            )
        });
        let mut seen = Vec::new();
        while !writer.is_finished() {
            seen.extend(poll_seqs(&mut f));
            std::thread::sleep(Duration::from_millis(250));
        }
        let written = writer.join().expect("writer");
        // Everything is on disk now: one more poll reads the rest.
        seen.extend(poll_seqs(&mut f));
        f.finish(|raw| panic!("nothing may be pending: {:?}", own(raw)));
        let c = f.counters();
        assert!(c.rotations >= 3, "{scheme:?}: {c:?}");
        assert!(
            c.caught_up >= 1,
            "{scheme:?}: files missed between polls: {c:?}"
        );
        assert_eq!(c.gaps, [0, 0], "{scheme:?}");
        let (missing, doubled, out_of_order) = compare_seqs(&seen, written);
        assert!(
            missing.is_empty() && doubled.is_empty(),
            "{scheme:?}: {written} written, {} read; missing {missing:?}, read twice {doubled:?} ({c:?})",
            seen.len()
        );
        // Lines come in the order written unless a listing raced with the renames (a file
        // found by a later listing is read after newer ones): counted once all the same.
        if let Some(i) = out_of_order {
            eprintln!("{scheme:?}: out of order at {i}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The real exporter: inotify-driven file source → counters on /metrics.

fn became_leader(m: &str, source: &str) -> Option<f64> {
    support::exporter::sample(
        m,
        "tikv_leadership_changes_total",
        &[
            ("source", source),
            ("store", "1"),
            ("event", "became_leader"),
        ],
    )
}

fn file_gauge(m: &str, name: &str, source: &str) -> Option<f64> {
    support::exporter::sample(m, name, &[("source", source), ("store", "1")])
}

fn gap_total(m: &str, source: &str) -> f64 {
    GapReason::ALL
        .iter()
        .map(|r| {
            support::exporter::sample(
                m,
                "tikv_log_gaps_total",
                &[("source", source), ("store", "1"), ("reason", r.as_str())],
            )
            .expect("every gap reason is exposed")
        })
        .sum()
}

/// Kubernetes' layout (reference kubernetes.md §1.4-1.6): the configured path is
/// `/var/log/containers/<name>.log`, a symlink to `/var/log/pods/…/<n>.log`, which kubelet
/// rotates to `<n>.log.<YYYYMMDD-HHMMSS>`; a container restart points the link at `<n+1>.log`;
/// removing the container deletes the file.
#[test]
fn the_exporter_counts_every_line_of_a_symlinked_file_rotated_every_40ms_and_says_when_it_is_deleted()
 {
    use support::exporter::Exporter;
    use support::wait::PATIENCE;

    let pd = support::fake_pd::FakePd::with_live_stores(&support::fake_pd::cluster(1));
    let dir = tempfile::tempdir().unwrap();
    let pods = dir.path().join("pods");
    let containers = dir.path().join("containers");
    fs::create_dir_all(&pods).unwrap();
    fs::create_dir_all(&containers).unwrap();
    let first = pods.join("0.log");
    fs::write(&first, "").unwrap();
    let link = containers.join("tikv.log");
    point(&link, &first);
    let config = dir.path().join("config.yml");
    fs::write(
        &config,
        format!(
            "pd:\n  endpoints: [\"{}\"]\nlogs:\n  files:\n    - path: {}\n      name: tikv\n      store: \"1\"\n",
            pd.url(),
            link.display()
        ),
    )
    .unwrap();
    let e = Exporter::start(&["--config.file".to_owned(), config.display().to_string()]);
    let src = "file:tikv";
    e.wait_source_up(src, 1.0);

    let written = rotating_writer(
        &first,
        Scheme::Timestamped,
        Duration::from_millis(40),
        Duration::from_millis(1500),
    );
    assert!(written > 100, "{written}");
    let rotated = fs::read_dir(&pods).unwrap().count() - 1;
    assert!(rotated >= 20, "rotated {rotated} times");
    let m = e.wait_metrics("every line written counted", PATIENCE, |m| {
        became_leader(m, src) == Some(written as f64)
    });
    assert_eq!(gap_total(&m, src), 0.0, "nothing reported lost");
    assert_eq!(file_gauge(&m, "tikv_log_file_deleted", src), Some(0.0));

    // One more line: counted once, so the total can only be exact, never doubled.
    append(&first, &leader_line(written + 1));
    e.wait_metrics("the next line counted once", PATIENCE, |m| {
        became_leader(m, src) == Some(written as f64 + 1.0)
    });

    // Container restart: the link now points at a new file that already has its first lines.
    let second = pods.join("1.log");
    fs::write(&second, leader_lines(1..=5)).unwrap();
    point(&link, &second);
    e.wait_metrics("the new container's lines", PATIENCE, |m| {
        became_leader(m, src) == Some(written as f64 + 6.0)
    });

    // The container is removed: its file is deleted, the link dangles.
    fs::remove_file(&second).unwrap();
    let m = e.wait_metrics("the file said deleted", PATIENCE, |m| {
        file_gauge(m, "tikv_log_file_deleted", src) == Some(1.0)
    });
    assert_eq!(
        support::exporter::sample(&m, "tikv_health_exporter_source_up", &[("source", src)]),
        Some(1.0),
        "the open file is still read"
    );
    // A new file at the path: followed from its start, no longer deleted.
    fs::write(&second, leader_lines(6..=7)).unwrap();
    let m = e.wait_metrics("the re-created file followed", PATIENCE, |m| {
        became_leader(m, src) == Some(written as f64 + 8.0)
            && file_gauge(m, "tikv_log_file_deleted", src) == Some(0.0)
    });
    assert_eq!(gap_total(&m, src), 0.0);
    let log = e.stderr();
    assert_eq!(log.matches("was deleted").count(), 1, "{log}");
    assert_eq!(log.matches("is back").count(), 1, "{log}");
    assert!(
        !log.contains("no change notifications"),
        "inotify is used: {log}"
    );
}

/// With `logs.poll_interval: 1h` only a change notification can make the source look again:
/// appended lines, copytruncate with lines not yet read and rename-and-create rotation are all
/// counted exactly, and SIGTERM still stops the source at once (it does not sleep an hour).
#[test]
fn the_exporter_is_woken_by_inotify_through_copytruncate_and_rotation() {
    use support::exporter::Exporter;
    use support::wait::PATIENCE;

    let pd = support::fake_pd::FakePd::with_live_stores(&support::fake_pd::cluster(1));
    let fx = Fixture::new();
    fs::write(&fx.path, "").unwrap();
    let config = fx.sibling("config.yml");
    fs::write(
        &config,
        format!(
            "pd:\n  endpoints: [\"{}\"]\nlogs:\n  poll_interval: 1h\n  files:\n    - path: {}\n      name: woken\n      store: \"1\"\n",
            pd.url(),
            fx.path.display()
        ),
    )
    .unwrap();
    let mut e = Exporter::start(&["--config.file".to_owned(), config.display().to_string()]);
    let src = "file:woken";
    e.wait_source_up(src, 1.0);
    let counted = |n: u64| move |m: &str| became_leader(m, src) == Some(n as f64);

    let mut w = appender(&fx.path);
    w.write_all(leader_lines(1..=3).as_bytes()).unwrap();
    e.wait_metrics("appended lines", PATIENCE, counted(3));

    // copytruncate, the lines before the copy possibly not read yet: read from the copy.
    w.write_all(leader_lines(4..=6).as_bytes()).unwrap();
    fs::copy(&fx.path, fx.sibling("tikv.log.1")).unwrap();
    w.set_len(0).unwrap();
    w.write_all(leader_lines(7..=8).as_bytes()).unwrap();
    let m = e.wait_metrics("copytruncate", PATIENCE, counted(8));
    assert_eq!(gap_total(&m, src), 0.0);

    // Rename-and-create.
    w.write_all(leader_line(9).as_bytes()).unwrap();
    fs::rename(&fx.path, fx.sibling("tikv.log.2")).unwrap();
    let mut w = appender(&fx.path);
    w.write_all(leader_lines(10..=11).as_bytes()).unwrap();
    let m = e.wait_metrics("rotation", PATIENCE, counted(11));
    assert_eq!(gap_total(&m, src), 0.0);

    let stop = Instant::now();
    assert_eq!(e.terminate(), Some(0), "{}", e.stderr());
    assert!(
        stop.elapsed() < Duration::from_secs(30),
        "stopped in {:?}",
        stop.elapsed()
    );
}

//! `logs parse` and `logs leadership`: JSON-lines views of the log pipeline.

use std::borrow::Cow;
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use serde::Serialize;

use super::{LeadershipArgs, ParseArgs};
use crate::logs::batch::ingest_all;
use crate::logs::cri::{CriJoiner, split_record};
use crate::logs::events::{Classifier, EventKind, LeadershipEvent};
use crate::logs::file::{FileFollower, FollowOptions};
use crate::logs::ingest::{Ingestor, SourceStats, StatsSnapshot};
use crate::logs::parse::{LogLine, ParseError, parse_line};
use crate::logs::reader::{LineReader, RawLine};

/// Opens every input (`-` or no file = stdin) up front, so a missing file fails before output.
fn open_inputs(files: &[PathBuf]) -> Result<Vec<(String, Box<dyn Read>)>> {
    let stdin = Path::new("-");
    let inputs: Vec<&Path> = if files.is_empty() {
        vec![stdin]
    } else {
        files.iter().map(PathBuf::as_path).collect()
    };
    inputs
        .into_iter()
        .map(|p| {
            let reader: Box<dyn Read> = if p == stdin {
                Box::new(io::stdin())
            } else {
                Box::new(File::open(p).with_context(|| format!("cannot open {}", p.display()))?)
            };
            Ok((p.display().to_string(), reader))
        })
        .collect()
}

/// Calls `f` for every line of every input in order, numbering lines across inputs from 1.
fn for_each_line(
    files: &[PathBuf],
    max_line: usize,
    mut f: impl FnMut(u64, RawLine<'_>) -> io::Result<()>,
) -> Result<()> {
    let mut n = 0u64;
    for (name, reader) in open_inputs(files)? {
        let mut result = Ok(());
        let mut lines = LineReader::new(reader, max_line);
        // Kubernetes CRI files: pieces of one line are joined (other lines pass unchanged).
        let mut joiner = CriJoiner::new(max_line);
        let mut emit = |l: RawLine<'_>| {
            if result.is_ok() {
                n += 1;
                result = f(n, l);
            }
        };
        lines
            .read_available(|l| joiner.push(l, &mut emit))
            .with_context(|| format!("cannot read {name}"))?;
        lines.finish(|l| joiner.push(l, &mut emit));
        joiner.finish(&mut emit);
        result?;
    }
    Ok(())
}

#[derive(Serialize)]
struct ParsedJson<'a> {
    line: u64,
    time: Option<String>,
    level: &'static str,
    source: Option<Cow<'a, str>>,
    message: Option<Cow<'a, str>>,
    fields: Vec<[Cow<'a, str>; 2]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    docker_time: Option<&'a str>,
    /// The receive time of a Kubernetes CRI record (instead of `docker_time`).
    #[serde(skip_serializing_if = "Option::is_none")]
    cri_time: Option<&'a str>,
    /// The stream of a Kubernetes CRI record.
    #[serde(skip_serializing_if = "Option::is_none")]
    stream: Option<&'static str>,
}

#[derive(Serialize)]
struct ErrorJson<'a> {
    line: u64,
    error: String,
    /// The receive time of a Kubernetes CRI record whose content is malformed.
    #[serde(skip_serializing_if = "Option::is_none")]
    cri_time: Option<Cow<'a, str>>,
    /// Its stream.
    #[serde(skip_serializing_if = "Option::is_none")]
    stream: Option<&'static str>,
}

fn error_reason(raw: &RawLine<'_>, err: Option<ParseError>, max_line: usize) -> String {
    match (raw, err) {
        (RawLine::TooLong(len), _) => {
            format!("line exceeds the maximum length ({len} bytes > {max_line})")
        }
        (_, Some(e)) => e.to_string(),
        (_, None) => "unparsed".to_owned(),
    }
}

fn write_json(out: &mut impl Write, v: &impl Serialize) -> io::Result<()> {
    serde_json::to_writer(&mut *out, v)?;
    out.write_all(b"\n")
}

/// `logs parse`.
pub fn parse(args: &ParseArgs) -> Result<()> {
    let max = args.input.max_line_bytes;
    let mut out = BufWriter::with_capacity(1 << 16, io::stdout().lock());
    for_each_line(&args.input.files, max, |n, raw| {
        let parsed = match raw {
            RawLine::Line(b) => parse_line(b),
            RawLine::TooLong(_) => {
                return write_json(&mut out, &error_json(n, &raw, None, max));
            }
        };
        match parsed {
            Ok(l) => write_json(&mut out, &parsed_json(n, &l)),
            Err(e) => write_json(&mut out, &error_json(n, &raw, Some(e), max)),
        }
    })?;
    out.flush()?;
    Ok(())
}

fn error_json<'a>(n: u64, raw: &RawLine<'a>, e: Option<ParseError>, max: usize) -> ErrorJson<'a> {
    let record = match raw {
        RawLine::Line(b) => split_record(b),
        RawLine::TooLong(_) => None,
    };
    ErrorJson {
        line: n,
        error: error_reason(raw, e, max),
        cri_time: record.map(|r| String::from_utf8_lossy(r.time)),
        stream: record.map(|r| r.stream.as_str()),
    }
}

fn parsed_json<'a>(n: u64, l: &LogLine<'a>) -> ParsedJson<'a> {
    ParsedJson {
        line: n,
        time: l.time.map(|t| t.to_rfc3339()),
        level: l.level.as_str(),
        source: l.source.map(|s| s.decode()),
        message: l.message.map(|m| m.decode()),
        fields: l
            .fields()
            .map(|f| [f.key.decode(), f.value.decode()])
            .collect(),
        docker_time: l.docker_time.filter(|_| l.stream.is_none()),
        cri_time: l.docker_time.filter(|_| l.stream.is_some()),
        stream: l.stream.map(|s| s.as_str()),
    }
}

#[derive(Serialize)]
struct EventJson<'a> {
    line: u64,
    time: Option<String>,
    #[serde(flatten)]
    event: LeadershipEvent,
    message: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    file: Option<&'a str>,
}

fn event_json<'a>(
    n: u64,
    l: &LogLine<'a>,
    ev: &LeadershipEvent,
    file: Option<&'a str>,
) -> EventJson<'a> {
    EventJson {
        line: n,
        time: l.time.map(|t| t.to_rfc3339()),
        event: *ev,
        message: l.message.map(|m| m.decode()),
        file,
    }
}

#[derive(Serialize)]
struct SummaryJson {
    lines: u64,
    malformed: u64,
    events: serde_json::Map<String, serde_json::Value>,
}

fn summary_json(s: &StatsSnapshot) -> SummaryJson {
    SummaryJson {
        lines: s.lines(),
        malformed: s.malformed,
        events: EventKind::ALL
            .iter()
            .map(|k| (k.as_str().to_owned(), s.events[k.index()].into()))
            .collect(),
    }
}

/// One worker per core, at most four (beyond that reading is the bottleneck).
fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(4))
}

/// `logs leadership`.
pub fn leadership(args: &LeadershipArgs) -> Result<()> {
    if args.follow && !args.input.files.is_empty() {
        return follow(args);
    }
    let mut out = BufWriter::with_capacity(1 << 16, io::stdout().lock());
    if args.summary {
        let stats = Arc::new(SourceStats::new("cli", ""));
        let threads = args.threads.map_or_else(default_threads, usize::from);
        for (name, reader) in open_inputs(&args.input.files)? {
            ingest_all(reader, args.input.max_line_bytes, threads, &stats)
                .with_context(|| format!("cannot read {name}"))?;
        }
        write_json(&mut out, &summary_json(&stats.snapshot()))?;
    } else {
        let classifier = Classifier::new();
        for_each_line(&args.input.files, args.input.max_line_bytes, |n, raw| {
            let RawLine::Line(b) = raw else { return Ok(()) };
            let Ok(l) = parse_line(b) else { return Ok(()) };
            match classifier.classify(&l) {
                Some(ev) => write_json(&mut out, &event_json(n, &l, &ev, None)),
                None => Ok(()),
            }
        })?;
    }
    out.flush()?;
    Ok(())
}

/// `logs leadership --follow FILE...`: tails every file; prints events as they arrive, or with
/// `--summary` the running totals whenever they change.
fn follow(args: &LeadershipArgs) -> Result<()> {
    let opts = FollowOptions {
        from_start: args.from_start,
        max_line_bytes: args.input.max_line_bytes,
        ..FollowOptions::default()
    };
    let many = args.input.files.len() > 1;
    let names: Vec<String> = args
        .input
        .files
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let mut followers: Vec<(FileFollower, CriJoiner, u64)> = args
        .input
        .files
        .iter()
        .map(|p| {
            let joiner = CriJoiner::new(args.input.max_line_bytes);
            (FileFollower::new(p, opts.clone()), joiner, 0)
        })
        .collect();
    let stats = Arc::new(SourceStats::new("cli", ""));
    let mut ing = Ingestor::new(stats.clone(), None);
    let classifier = Classifier::new();
    let mut out = io::stdout().lock();
    let mut last_summary = None;
    loop {
        for ((follower, joiner, count), name) in followers.iter_mut().zip(&names) {
            let mut result = Ok(());
            let file = many.then_some(name.as_str());
            let mut handle = |raw: RawLine<'_>| {
                *count += 1;
                if args.summary {
                    ing.ingest(raw);
                    return;
                }
                let RawLine::Line(b) = raw else { return };
                let Ok(l) = parse_line(b) else { return };
                if let Some(ev) = classifier.classify(&l)
                    && result.is_ok()
                {
                    result = write_json(&mut out, &event_json(*count, &l, &ev, file));
                }
            };
            let polled = follower.poll(|raw| joiner.push(raw, &mut handle));
            result?;
            if let Err(e) = polled {
                eprintln!("tikv-health-exporter: {name}: {e}");
            }
        }
        if args.summary {
            ing.flush();
            let snap = stats.snapshot();
            if last_summary.as_ref() != Some(&snap) {
                write_json(&mut out, &summary_json(&snap))?;
                last_summary = Some(snap);
            }
        }
        out.flush()?;
        std::thread::sleep(args.poll_interval);
    }
}

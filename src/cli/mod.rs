//! Command-line interface: argument definitions and dispatch to the subcommands.

mod logs;

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::logs::parse::DEFAULT_MAX_LINE_BYTES;

/// Prometheus exporter and alert sidecar for TiKV clusters.
#[derive(Parser, Debug)]
#[command(name = "tikv-health-exporter", version, about, long_about = None)]
pub struct Cli {
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Work with TiKV/PD logs in the TiDB unified log format.
    #[command(subcommand)]
    Logs(LogsCommand),
}

/// `logs` subcommands.
#[derive(Subcommand, Debug)]
pub enum LogsCommand {
    /// Parse log lines; print one JSON object per input line, in order.
    ///
    /// Output: {"line":N,"time":RFC3339|null,"level":..,"source":..|null,"message":..|null,
    /// "fields":[[key,value],...]} plus "docker_time" when a container-runtime prefix was
    /// present; {"line":N,"error":"reason"} for a malformed line. Line numbers run across
    /// all inputs as if they were concatenated.
    Parse(ParseArgs),
    /// Print leadership events (one JSON object each) or, with --summary, their counts.
    ///
    /// Event output: {"line","time","event","region_id","from_store","to_store","term",
    /// "message"} with null where unknown. Summary: {"lines":N,"malformed":M,"events":{...}}
    /// with every event name present.
    Leadership(LeadershipArgs),
}

/// Options shared by the `logs` subcommands.
#[derive(Args, Debug)]
pub struct InputArgs {
    /// Log files to read; standard input when none or `-`.
    #[arg(value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Longest accepted line in bytes; longer lines are reported as malformed, never buffered.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_LINE_BYTES)]
    pub max_line_bytes: usize,
}

/// Arguments of `logs parse`.
#[derive(Args, Debug)]
pub struct ParseArgs {
    /// Input selection.
    #[command(flatten)]
    pub input: InputArgs,
}

/// Arguments of `logs leadership`.
#[derive(Args, Debug)]
pub struct LeadershipArgs {
    /// Input selection.
    #[command(flatten)]
    pub input: InputArgs,
    /// Print only counts: {"lines":N,"malformed":M,"events":{"became_leader":N,...}}.
    #[arg(long)]
    pub summary: bool,
    /// With --summary (not --follow): worker threads for counting; default one per core, max 4.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=64))]
    pub threads: Option<u16>,
    /// Keep following the files like `tail -F` (rotation and truncation safe).
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// With --follow: read existing content from the start instead of the end.
    #[arg(long, requires = "follow")]
    pub from_start: bool,
    /// With --follow: how often to check the files.
    #[arg(long, value_name = "DURATION", default_value = "250ms", value_parser = parse_duration, requires = "follow")]
    pub poll_interval: Duration,
}

/// Parses `500ms`, `10s`, `5m`, `1h`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("`{s}`: missing unit (ms, s, m or h)"))?;
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}`: expected a whole number followed by ms, s, m or h"))?;
    let ms = match unit {
        "ms" => Some(n),
        "s" => n.checked_mul(1000),
        "m" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        _ => return Err(format!("`{s}`: unknown unit `{unit}` (use ms, s, m or h)")),
    }
    .ok_or_else(|| format!("`{s}`: too large"))?;
    Ok(Duration::from_millis(ms))
}

/// Runs the command line; returns the process exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Logs(LogsCommand::Parse(a)) => logs::parse(&a),
        Command::Logs(LogsCommand::Leadership(a)) => logs::leadership(&a),
    };
    match result {
        Ok(()) => 0,
        Err(e) if is_broken_pipe(&e) => 0,
        Err(e) => {
            eprintln!("tikv-health-exporter: error: {e:#}");
            1
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units_and_reject_garbage() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration("10").unwrap_err().contains("missing unit"));
        assert!(parse_duration("10x").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("s").is_err());
    }

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}

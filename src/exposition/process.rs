//! The exporter's own `process_*` metrics, with the names and meanings of client_golang's
//! process collector (`prometheus/client_golang:prometheus/process_collector_procfsenabled.go`,
//! built on `prometheus/procfs`): CPU seconds, resident and virtual memory, open and maximum file
//! descriptors and start time, read from `/proc/self` at every scrape. On a system without
//! `/proc` (or when a file cannot be read) the affected series are left out, never made up.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// Clock ticks per second of `/proc/<pid>/stat` times: `USER_HZ`, fixed at 100 by the kernel
/// ABI on every architecture Linux runs on (`prometheus/procfs:proc_stat.go` `userHZ = 100`).
const USER_HZ: f64 = 100.0;

/// What one read of `/proc/self` (or `/proc/<pid>`) gives.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProcessStats {
    /// User plus system CPU time, in seconds.
    pub cpu_seconds: Option<f64>,
    /// Resident set size (`VmRSS`), in bytes.
    pub resident_bytes: Option<f64>,
    /// Virtual memory size (`vsize`), in bytes.
    pub virtual_bytes: Option<f64>,
    /// Open file descriptors.
    pub open_fds: Option<f64>,
    /// The soft limit on open file descriptors.
    pub max_fds: Option<f64>,
    /// Process start, in seconds since the Unix epoch.
    pub start_time_seconds: Option<f64>,
}

/// The fields of `/proc/<pid>/stat` after the command (which may hold spaces and parentheses):
/// index 0 is field 3 (`state`) of proc(5).
fn stat_fields(stat: &str) -> Option<Vec<&str>> {
    let (_, rest) = stat.rsplit_once(')')?;
    Some(rest.split_whitespace().collect())
}

/// `btime` of `/proc/stat`: boot time in seconds since the epoch.
fn boot_time(proc_stat: &str) -> Option<f64> {
    proc_stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// The `VmRSS:` line of `/proc/<pid>/status`, in bytes.
fn vm_rss(status: &str) -> Option<f64> {
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024.0)
}

/// The soft limit of `Max open files` in `/proc/<pid>/limits` (`unlimited` is left out).
fn max_open_files(limits: &str) -> Option<f64> {
    limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

impl ProcessStats {
    /// Reads `/proc/<pid>` (`pid` is `self` for this process).
    pub fn read(pid: &str) -> ProcessStats {
        let dir = std::path::Path::new("/proc").join(pid);
        let text = |name: &str| std::fs::read_to_string(dir.join(name)).ok();
        let stat = text("stat");
        let fields = stat.as_deref().and_then(stat_fields);
        let field = |i: usize| -> Option<f64> { fields.as_ref()?.get(i)?.parse().ok() };
        // proc(5): utime is field 14, stime 15, starttime 22, vsize 23 (index = field - 3).
        let cpu_seconds = field(11)
            .zip(field(12))
            .map(|(user, system)| (user + system) / USER_HZ);
        let start_time_seconds = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|s| boot_time(&s))
            .zip(field(19))
            .map(|(boot, ticks)| boot + ticks / USER_HZ);
        ProcessStats {
            cpu_seconds,
            resident_bytes: text("status").as_deref().and_then(vm_rss),
            virtual_bytes: field(20),
            open_fds: std::fs::read_dir(dir.join("fd"))
                .ok()
                .map(|d| d.count() as f64),
            max_fds: text("limits").as_deref().and_then(max_open_files),
            start_time_seconds,
        }
    }
}

/// The collector of `process_*` for this process.
#[derive(Debug, Default)]
pub struct ProcessCollector;

fn one(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    metric: Option<impl EncodeMetric>,
) -> Result<(), std::fmt::Error> {
    if let Some(m) = metric {
        let me = enc.encode_descriptor(name, help, None, kind)?;
        m.encode(me)?;
    }
    Ok(())
}

impl Collector for ProcessCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = ProcessStats::read("self");
        let g = |v: Option<f64>| v.map(ConstGauge::new);
        one(
            &mut enc,
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds.",
            MetricType::Counter,
            s.cpu_seconds.map(ConstCounter::new),
        )?;
        for (name, help, v) in [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                s.resident_bytes,
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
                s.virtual_bytes,
            ),
            (
                "process_open_fds",
                "Number of open file descriptors.",
                s.open_fds,
            ),
            (
                "process_max_fds",
                "Maximum number of open file descriptors.",
                s.max_fds,
            ),
            (
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
                s.start_time_seconds,
            ),
        ] {
            one(&mut enc, name, help, MetricType::Gauge, g(v))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_survive_a_command_with_spaces_and_parentheses() {
        let stat = "4242 (tikv (health) x) S 1 4242 4242 0 -1 4194560 1 0 0 0 250 75 0 0 20 0 \
                    3 0 123456 98304000 2000 18446744073709551615";
        let f = stat_fields(stat).unwrap();
        assert_eq!(f[0], "S");
        assert_eq!(f[11], "250");
        assert_eq!(f[12], "75");
        assert_eq!(f[19], "123456");
        assert_eq!(f[20], "98304000");
    }

    #[test]
    fn status_limits_and_boot_time() {
        assert_eq!(
            vm_rss("Name:\tx\nVmRSS:\t   10240 kB\n"),
            Some(10240.0 * 1024.0)
        );
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max open files            1024                 524288               files     \n";
        assert_eq!(max_open_files(limits), Some(1024.0));
        assert_eq!(
            max_open_files(
                "Max open files            unlimited            unlimited            files\n"
            ),
            None
        );
        assert_eq!(boot_time("cpu 1 2 3\nbtime 1700000000\n"), Some(1.7e9));
    }
}

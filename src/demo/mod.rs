//! `demo`: the real exporter against a built-in simulated cluster whose stores go Disconnected,
//! fill their disk, lose their leaders and slow down, whose GC stalls and whose regions lose a
//! replica, on a 40-second cycle, with a short live status, so a newcomer sees pending →
//! firing → resolved within a minute.

pub mod cluster;

use std::io::Write;
use std::sync::Mutex;
use std::time::Duration;

use cluster::SimCluster;

use crate::config::{Config, Dur, InvariantOverride, LogFileConfig};
use crate::invariants::engine::Phase;
use tokio_util::sync::CancellationToken;

use crate::exposition::View;
use crate::snapshot::{InvariantView, Snapshot};

/// Options of `demo`.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    /// Where the exporter listens.
    pub listen_address: String,
    /// A Prometheus that scrapes the simulated stores' metrics (enables the Prometheus-based
    /// invariants); the scrape targets are printed at start.
    pub prometheus_url: Option<String>,
}

/// Length of one scenario cycle.
pub const CYCLE_SECS: u64 = 40;

fn grace(secs: u64) -> Option<Dur> {
    Some(Dur(Duration::from_secs(secs)))
}

/// The exporter configuration the demo runs with (short grace periods so things happen fast).
pub fn demo_config(opts: &DemoOptions, pd_url: &str, log: &std::path::Path) -> Config {
    let mut cfg = Config::default();
    cfg.pd.endpoints = vec![pd_url.to_owned()];
    // PD's cluster-wide sources are read at this interval: the etcd fsync p99 is known from
    // the second read on.
    cfg.pd.health_interval = Dur(Duration::from_secs(1));
    cfg.poll_interval = Dur(Duration::from_secs(1));
    cfg.prometheus.url = opts.prometheus_url.clone();
    cfg.web.listen_address = opts.listen_address.clone();
    let mut set = |name: &str, o: InvariantOverride| {
        cfg.invariants.insert(name.to_owned(), o);
    };
    set(
        "store_down",
        InvariantOverride {
            grace: grace(5),
            ..Default::default()
        },
    );
    set(
        "disk_usage",
        InvariantOverride {
            grace: grace(5),
            clear_grace: grace(3),
            ..Default::default()
        },
    );
    set(
        "store_slow",
        InvariantOverride {
            grace: grace(2),
            ..Default::default()
        },
    );
    // Store 1's leaders are gone for 7 s, regions lack a replica for 7 s.
    for (name, secs) in [
        ("leader_imbalance", 3),
        ("region_down_peers", 2),
        ("region_miss_peers", 3),
    ] {
        set(
            name,
            InvariantOverride {
                grace: grace(secs),
                ..Default::default()
            },
        );
    }
    // Every built-in on TiKV's metrics (they run when the demo is given a Prometheus).
    let prometheus_based = crate::invariants::catalog::BUILTINS
        .iter()
        .filter(|b| b.default_query().is_some());
    for b in prometheus_based {
        set(
            b.name,
            InvariantOverride {
                grace: grace(5),
                ..Default::default()
            },
        );
    }
    cfg.logs.files = vec![LogFileConfig {
        path: log.to_owned(),
        name: Some("demo".into()),
        store: None,
        from_start: true,
    }];
    cfg
}

fn leader_moves(from: u64, to: u64, first_region: u64, n: u64) -> Vec<String> {
    (first_region..first_region + n)
        .flat_map(|r| {
            [
                format!("[INFO] [operator_controller.go:620] [\"send schedule command\"] [region-id={r}] [step=\"transfer leader from store {from} to store {to}\"] [source=create]"),
                format!("[INFO] [raft.rs:874] [\"became leader at term 7\"] [term=7] [raft_id={}] [region_id={r}]", r + 1),
                format!("[INFO] [cluster.go:567] [\"leader changed\"] [region-id={r}] [from={from}] [to={to}]"),
            ]
        })
        .collect()
}

/// One step of the scenario at second `t` of the cycle; returns what happened, if anything.
fn step(sim: &SimCluster, t: u64) -> Option<&'static str> {
    match t {
        3 => {
            // PD marks a store Disconnected 20 s after its last heartbeat.
            sim.update(2, |s| {
                s.state = "Disconnected".into();
                s.last_heartbeat = std::time::SystemTime::now() - Duration::from_secs(20);
            });
            sim.log(&[
                "[INFO] [raft.rs:1177] [\"starting a new election\"] [term=7] [raft_id=101] [region_id=100]".into(),
            ]);
            sim.log(&leader_moves(2, 1, 100, 5));
            Some(
                "store 2 stopped heartbeating 20s ago: PD reports it Disconnected (store_down grace 5s)",
            )
        }
        5 => {
            sim.update(3, |s| s.available_gib = 110.0);
            Some(
                "store 3's disk fills to 78%, past PD's high-space-ratio 0.7 (disk_usage grace 5s)",
            )
        }
        7 => {
            sim.update_pd(|p| p.gc_held_secs = Some(25 * 3600));
            Some(
                "a stuck TiCDC changefeed holds GC: PD's GC safe point is 25h old, past 24h (gc_safepoint_lag, no grace)",
            )
        }
        12 => {
            sim.update_pd(|p| p.gc_held_secs = None);
            Some("the changefeed is removed: GC advances again")
        }
        13 => {
            sim.update(2, |s| s.state = "Up".into());
            sim.log(&["[INFO] [raft.rs:783] [\"became follower at term 7\"] [term=7] [raft_id=102] [region_id=100]".into()]);
            Some("store 2 is back")
        }
        15 => {
            sim.update(1, |s| s.leaders = 0);
            sim.log(&leader_moves(1, 3, 200, 8));
            Some(
                "store 1 loses its leaders (transfer-leader storm in the logs; leader_imbalance: 0 of a mean 26.7, grace 3s)",
            )
        }
        22 => {
            sim.update(1, |s| s.leaders = 40);
            Some("store 1 gets its leaders back")
        }
        25 => {
            sim.update(3, |s| s.available_gib = 300.0);
            Some("store 3's disk is freed (disk_usage resolves after clear_grace 3s)")
        }
        26 => {
            sim.update_pd(|p| p.unhealthy_regions = 5);
            Some(
                "5 regions have a down peer and miss a replica (PD leader's pd_regions_status; region_down_peers grace 2s, region_miss_peers 3s)",
            )
        }
        33 => {
            sim.update_pd(|p| p.unhealthy_regions = 0);
            Some("PD has re-replicated the 5 regions")
        }
        30 => {
            sim.update(1, |s| {
                s.slow_score = 90;
                s.write_latency = 0.3;
                s.cpu_cores = 7.0;
            });
            Some(
                "store 1 turns slow for 6s: slow_score 90, writes take 300 ms, CPU 7/8 cores (the 1m write p99 stays high until the slow writes leave its window)",
            )
        }
        36 => {
            sim.update(1, |s| {
                s.slow_score = 1;
                s.write_latency = 0.004;
                s.cpu_cores = 1.5;
            });
            Some("store 1 recovers")
        }
        _ => None,
    }
}

/// A one-line summary of the invariant states.
pub fn status_line(snap: &Snapshot, view: &View) -> String {
    let list = |f: &dyn Fn(&InvariantView) -> bool| {
        let v: Vec<String> = snap
            .invariants
            .iter()
            .filter(|i| f(i))
            .map(|i| {
                if i.store.is_empty() {
                    i.name.to_string()
                } else {
                    format!("{}/{}", i.name, i.store)
                }
            })
            .collect();
        if v.is_empty() {
            "-".into()
        } else {
            v.join(" ")
        }
    };
    let events: u64 = view
        .logs
        .list()
        .iter()
        .map(|s| s.snapshot().events.iter().sum::<u64>())
        .sum();
    format!(
        "firing: {} | pending: {} | unknown: {} | leadership events: {events}",
        list(&|i| i.state == Phase::Firing),
        list(&|i| i.state == Phase::Pending && !i.unknown),
        list(&|i| i.unknown),
    )
}

/// Runs the demo until `cancel` (Ctrl-C in the CLI); every task it starts stops with it.
pub async fn run(opts: DemoOptions, cancel: CancellationToken) -> anyhow::Result<()> {
    let dir =
        std::env::temp_dir().join(format!("tikv-health-exporter-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let result = run_in(opts, cancel.clone(), &dir).await;
    // Whatever happened, the simulated cluster's servers and the scenario stop too.
    cancel.cancel();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn run_in(
    opts: DemoOptions,
    cancel: CancellationToken,
    dir: &std::path::Path,
) -> anyhow::Result<()> {
    let sim = SimCluster::new(&dir.join("tikv.log"))?;
    let pd_url = cluster::start_pd(sim.clone(), cancel.clone()).await?;
    let targets = if opts.prometheus_url.is_some() {
        cluster::start_metrics(sim.clone(), cancel.clone()).await?
    } else {
        Vec::new()
    };
    let cfg = demo_config(&opts, &pd_url, sim.log_path());
    say(
        &cancel,
        &format!(
            "tikv-health-exporter demo: 3 simulated TiKV stores behind a simulated PD at {pd_url}\n\
             metrics: http://{}/metrics   invariants: http://{}/api/v1/invariants\n\
             a {CYCLE_SECS}s cycle: a store goes down, GC stalls, a disk fills, leaders move, regions lose a replica, a store slows. Ctrl-C to stop.",
            cfg.web.listen_address.trim_start_matches(':'),
            cfg.web.listen_address.trim_start_matches(':'),
        ),
    );
    if !targets.is_empty() {
        let t: Vec<String> = targets.iter().map(|a| format!("'{a}'")).collect();
        say(
            &cancel,
            &format!(
                "Prometheus must scrape the simulated TiKVs: - job_name: tikv\n  static_configs: [{{targets: [{}]}}]",
                t.join(", ")
            ),
        );
    }
    let scenario = tokio::spawn(scenario(sim.clone(), cancel.clone()));
    let last = Mutex::new(String::new());
    let sim3 = sim.clone();
    let cancel3 = cancel.clone();
    let result = crate::app::run_observed(cfg, cancel.clone(), move |view, snap| {
        let line = status_line(snap, view);
        let mut l = last.lock().unwrap_or_else(|p| p.into_inner());
        if *l != line {
            say(&cancel3, &format!("[{:>4.0}s] {line}", sim3.elapsed()));
            *l = line;
        }
    })
    .await;
    cancel.cancel();
    let _ = scenario.await;
    result
}

/// Prints a line of the demo's status; once standard output is closed (`demo | head`), the
/// demo stops quietly.
fn say(cancel: &CancellationToken, line: &str) {
    let mut out = std::io::stdout().lock();
    if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
        cancel.cancel();
    }
}

/// Plays the scenario, one step a second, until `cancel`.
async fn scenario(sim: std::sync::Arc<SimCluster>, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut t = 0u64;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Some(what) = step(&sim, t % CYCLE_SECS) {
            say(
                &cancel,
                &format!("[{:>4.0}s] scenario: {what}", sim.elapsed()),
            );
        }
        t += 1;
    }
}

//! End to end with real processes: exporter + fake PD + real Prometheus (the shipped rules) +
//! real Alertmanager (the shipped config, webhook URLs pointed at this test and group timings
//! shortened) + a webhook receiver. A store goes down → the alert arrives with the right labels
//! and annotations; an inhibited warning for the same store does not arrive while the warning
//! for another store, fired at the same moment, does; the store recovers → the resolved notification arrives.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};
use support::alertmanager::{
    RealAlertmanager, WebhookReceiver, notifications_started, shipped_config as alertmanager_config,
};
use support::exporter::{Exporter, inv, sample};
use support::fake_pd::{FakePd, cluster, store_json_mut};
use support::prometheus::{RealPrometheus, render_config, with_alertmanagers};
use support::wait::{self, PATIENCE};

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn find<'a>(
    alerts: &'a [(String, String, Value)],
    path: &str,
    status: &str,
    alertname: &str,
    store: &str,
) -> Option<&'a Value> {
    alerts
        .iter()
        .find(|(p, s, a)| {
            p == path
                && s == status
                && a["labels"]["alertname"] == alertname
                && a["labels"]["store"] == store
        })
        .map(|(_, _, a)| a)
}

fn wait_for(what: &str, timeout: Duration, f: impl FnMut() -> bool, diag: impl Fn() -> String) {
    wait::until_true(what, timeout, f, diag);
}

#[test]
fn store_down_alert_reaches_the_receiver_inhibits_warnings_and_resolves() {
    let pd = FakePd::with_stores(&cluster(3));
    pd.live_heartbeats();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("exporter.yml");
    std::fs::write(&cfg, "invariants:\n  disk_usage:\n    grace: 0s\n").unwrap();
    let exporter = Exporter::start(&[
        "--pd.endpoints".into(),
        pd.url(),
        "--poll-interval".into(),
        "200ms".into(),
        "--config.file".into(),
        cfg.display().to_string(),
    ]);
    exporter.wait_ready();

    let receiver = WebhookReceiver::start();
    let am = RealAlertmanager::start(&alertmanager_config(&receiver.url()));
    let rules = repo("alerts/tikv-health-exporter.rules.yml");
    let prom_cfg = with_alertmanagers(
        &render_config(
            &[("tikv-health-exporter", vec![exporter.addr()])],
            Duration::from_secs(1),
            &[rules],
        ),
        &[am.addr()],
    );
    let prom =
        RealPrometheus::launch_config(&prom_cfg, &["--rules.alert.resend-delay=1s".to_owned()], "");
    let diag = || {
        format!(
            "notifications: {:#?}\nexporter: {}\nprometheus alerts: {}",
            receiver.notifications(),
            exporter.metrics(),
            prom.query_blocking("ALERTS")
        )
    };
    // Waits until the receiver got (path, status, alertname, store).
    let notified = |what: &str, timeout: Duration, (path, status, alert, store)| {
        wait_for(
            what,
            timeout,
            || find(&receiver.alerts(), path, status, alert, store).is_some(),
            diag,
        )
    };

    // The Watchdog proves the whole path works before anything is wrong.
    wait_for(
        "Watchdog",
        PATIENCE,
        || {
            receiver
                .alerts()
                .iter()
                .any(|(p, _, a)| p == "/watchdog" && a["labels"]["alertname"] == "Watchdog")
        },
        diag,
    );

    // Store 2's disk fills: a warning that is not inhibited (the control for the check below).
    pd.set_capacity(2, "100GiB");
    pd.set_available(2, "25GiB");
    notified(
        "disk warning for store 2",
        PATIENCE,
        ("/warning", "firing", "TiKVDiskUsageHigh", "2"),
    );

    // Store 1 goes down: the critical alert arrives with labels and annotations.
    pd.set_heartbeat_age(1, Duration::from_secs(120));
    notified(
        "store down alert",
        PATIENCE,
        ("/critical", "firing", "TiKVStoreDown", "1"),
    );
    let alerts = receiver.alerts();
    let a = find(&alerts, "/critical", "firing", "TiKVStoreDown", "1").unwrap();
    assert_eq!(a["labels"]["severity"], "critical");
    assert_eq!(a["labels"]["name"], "store_down");
    assert_eq!(a["labels"]["job"], "tikv-health-exporter");
    for k in ["summary", "description", "runbook_url"] {
        assert!(
            a["annotations"][k].as_str().is_some_and(|s| !s.is_empty()),
            "{k} missing: {a:#}"
        );
    }
    assert!(
        a["annotations"]["description"]
            .as_str()
            .unwrap()
            .contains('1'),
        "description names the store: {a:#}"
    );
    assert!(
        a["annotations"]["runbook_url"]
            .as_str()
            .unwrap()
            .contains("tikvstoredown")
    );
    assert!(find(&alerts, "/critical", "firing", "TiKVStoreDown", "2").is_none());

    // Store 1's disk fills while it is down: Prometheus fires the warning, Alertmanager
    // inhibits it (same store as the firing TiKVStoreDown). Store 3's disk fills in the same
    // PD answer: its warning (not inhibited) starts with store 1's in the same scrape, rule
    // evaluation and batch to Alertmanager, whose groups for both wait the same group_wait.
    // So once store 3's warning has arrived, store 1's group has been flushed too; and once
    // every notification Alertmanager started by then has arrived, a store 1 warning would
    // have shown.
    pd.edit_stores(|stores| {
        for id in [1, 3] {
            let status = &mut store_json_mut(stores, id)["status"];
            status["capacity"] = json!("100GiB");
            status["available"] = json!("25GiB");
        }
    });
    wait_for(
        "disk warning for store 1 firing in Prometheus",
        PATIENCE,
        || {
            let v = prom.query_blocking(
                r#"ALERTS{alertname="TiKVDiskUsageHigh",store="1",alertstate="firing"}"#,
            );
            v["data"]["result"]
                .as_array()
                .is_some_and(|r| !r.is_empty())
        },
        diag,
    );
    notified(
        "disk warning for store 3 (started with store 1's)",
        PATIENCE,
        ("/warning", "firing", "TiKVDiskUsageHigh", "3"),
    );
    let started = notifications_started(&am);
    wait_for(
        "every notification Alertmanager started to arrive",
        PATIENCE,
        || receiver.notifications().len() >= started,
        diag,
    );
    assert!(
        find(
            &receiver.alerts(),
            "/warning",
            "firing",
            "TiKVDiskUsageHigh",
            "1"
        )
        .is_none(),
        "inhibited warning arrived: {}",
        diag()
    );
    // Alertmanager holds it, inhibited by the store-down alert.
    let held = am.alerts();
    let warning = held
        .iter()
        .find(|a| a["labels"]["alertname"] == "TiKVDiskUsageHigh" && a["labels"]["store"] == "1")
        .unwrap_or_else(|| panic!("Alertmanager has no store 1 warning: {held:#?}"));
    assert_eq!(warning["status"]["state"], "suppressed", "{warning:#}");
    assert!(
        warning["status"]["inhibitedBy"]
            .as_array()
            .is_some_and(|by| !by.is_empty()),
        "{warning:#}"
    );
    assert_eq!(
        sample(
            &exporter.metrics(),
            "tikv_invariant_violation",
            &inv("disk_usage", "1", "warning")
        ),
        Some(1.0)
    );

    // Store 1 recovers: the resolved notification arrives (after the rules' keep_firing_for).
    pd.set_store_state(1, "Up");
    notified(
        "resolved notification",
        Duration::from_secs(120) + PATIENCE,
        ("/critical", "resolved", "TiKVStoreDown", "1"),
    );
    // With the inhibitor gone, the store-1 disk warning is delivered.
    notified(
        "store 1 disk warning after the inhibition ends",
        PATIENCE,
        ("/warning", "firing", "TiKVDiskUsageHigh", "1"),
    );
}

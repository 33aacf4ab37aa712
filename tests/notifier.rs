//! Direct delivery (`--alertmanager.url`, `alerting`) against real Alertmanager processes with
//! the shipped `alerts/alertmanager.yml` (receivers pointed at a webhook receiver in the test,
//! group_wait/group_interval shortened to 1s: the shipped 30s/5m would make each test minutes
//! long) and the fake PD. No Prometheus: the exporter sends its own alerts.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::alertmanager::{
    Gate, RealAlertmanager, WebhookReceiver, notifications_started, shipped_config,
};
use support::exporter::{Exporter, sample};
use support::fake_pd::{FakePd, cluster, store_json_mut};
use support::wait::{self, PATIENCE, unix_now};

/// Alertmanager's group_wait in [`shipped_config`].
const GROUP_WAIT: Duration = Duration::from_secs(1);
/// The exporter's poll interval in these tests.
const POLL: Duration = Duration::from_millis(200);

/// Starts the exporter on `pd` with `config` (YAML) written to a file in `dir`, plus `args`.
fn exporter(pd: &FakePd, dir: &Path, config: &str, args: &[String]) -> Exporter {
    let cfg = dir.join("exporter.yml");
    std::fs::write(&cfg, config).unwrap();
    let mut all = vec![
        "--pd.endpoints".to_owned(),
        pd.url(),
        "--poll-interval".to_owned(),
        "200ms".to_owned(),
        "--config.file".to_owned(),
        cfg.display().to_string(),
    ];
    all.extend_from_slice(args);
    let e = Exporter::start(&all);
    e.wait_ready();
    e
}

fn am_flag(am: &RealAlertmanager) -> [String; 2] {
    [
        "--alertmanager.url".to_owned(),
        format!("http://{}", am.addr()),
    ]
}

/// The alerts (path, status, alert) the receiver got for `alertname` on `store`.
fn got(receiver: &WebhookReceiver, alertname: &str, store: &str) -> Vec<(String, String, Value)> {
    receiver
        .alerts()
        .into_iter()
        .filter(|(_, _, a)| a["labels"]["alertname"] == alertname && a["labels"]["store"] == store)
        .collect()
}

/// Waits until the receiver got `alertname` on `store` with `status` at `path`; returns it.
fn wait_notified(
    receiver: &WebhookReceiver,
    timeout: Duration,
    (path, status, alertname, store): (&str, &str, &str, &str),
    diag: impl Fn() -> String,
) -> Value {
    wait::until_or(
        &format!("{status} {alertname} for store {store} at {path}"),
        timeout,
        || {
            got(receiver, alertname, store)
                .into_iter()
                .find(|(p, s, _)| p == path && s == status)
                .map(|(_, _, a)| a)
                .ok_or_else(|| format!("{:#?}", receiver.notifications()))
        },
        diag,
    )
}

/// RFC 3339 as Unix seconds.
fn unix(t: &Value) -> f64 {
    let s = t.as_str().unwrap_or_else(|| panic!("not a time: {t}"));
    chrono::DateTime::parse_from_rfc3339(s)
        .unwrap()
        .timestamp_millis() as f64
        / 1000.0
}

/// `tikv_health_exporter_notifications_total{alertmanager=~".*<addr>.*", result}`.
fn notifications(metrics: &str, am: &str, result: &str) -> f64 {
    support::exporter::samples(metrics)
        .into_iter()
        .filter(|(n, l, _)| {
            n == "tikv_health_exporter_notifications_total"
                && l.iter().any(|(k, v)| k == "alertmanager" && v.contains(am))
                && l.iter().any(|(k, v)| k == "result" && v == result)
        })
        .map(|(_, _, v)| v)
        .sum()
}

#[test]
fn store_down_reaches_the_receiver_inhibits_its_warnings_and_resolves() {
    let pd = FakePd::with_stores(&cluster(3));
    pd.live_heartbeats();
    let receiver = WebhookReceiver::start();
    let am = RealAlertmanager::start(&shipped_config(&receiver.url()));
    let dir = tempfile::tempdir().unwrap();
    let exporter = exporter(
        &pd,
        dir.path(),
        "alerting:\n  resend_interval: 1s\n  external_labels:\n    cluster: test\ninvariants:\n  disk_usage:\n    grace: 0s\n",
        &am_flag(&am),
    );
    let diag = || {
        format!(
            "notifications: {:#?}\nalertmanager: {:#?}\nexporter: {}\n{}",
            receiver.notifications(),
            am.alerts(),
            exporter.metrics(),
            exporter.stderr()
        )
    };

    // Store 2's disk fills: a warning that is not inhibited (the control for the check below).
    pd.set_capacity(2, "100GiB");
    pd.set_available(2, "25GiB");
    let w = wait_notified(
        &receiver,
        PATIENCE,
        ("/warning", "firing", "TiKVDiskUsageHigh", "2"),
        diag,
    );
    assert!(
        w["annotations"]["description"]
            .as_str()
            .unwrap()
            .starts_with("TiKV store 2 (tikv-2:20160) has used 75% of its capacity (threshold "),
        "{w:#}"
    );
    assert_eq!(w["labels"]["severity"], "warning");

    // Store 1 goes down: the critical alert arrives within one poll plus the group wait of
    // the exporter seeing it fire (a generous margin for a loaded machine on top).
    pd.set_heartbeat_age(1, Duration::from_secs(120));
    let since = wait::until("store_down to fire for store 1", PATIENCE, || {
        let i = exporter.invariant("store_down", "1").unwrap_or_default();
        match i["state"].as_str() {
            Some("firing") => Ok(i["since"].as_f64().unwrap()),
            _ => Err(format!("{i:#}")),
        }
    });
    let fired = Instant::now();
    let a = wait_notified(
        &receiver,
        PATIENCE,
        ("/critical", "firing", "TiKVStoreDown", "1"),
        diag,
    );
    let took = fired.elapsed();
    assert!(
        took < POLL + GROUP_WAIT + Duration::from_secs(10),
        "took {took:?}"
    );
    assert_eq!(
        a["labels"],
        json!({"alertname": "TiKVStoreDown", "cluster": "test", "name": "store_down",
               "severity": "critical", "store": "1"})
    );
    assert_eq!(a["annotations"]["summary"], "TiKV store is down.");
    let description = a["annotations"]["description"].as_str().unwrap();
    assert!(
        description.starts_with("TiKV store 1 (tikv-1:20160) is down: last heartbeat 2m")
            && description.ends_with("ago (threshold 1m)."),
        "{description}"
    );
    assert_eq!(
        a["annotations"]["runbook_url"],
        "https://github.com/tikv-health-exporter/tikv-health-exporter/blob/main/alerts/runbook.md#tikvstoredown"
    );
    assert!(
        (unix(&a["startsAt"]) - since).abs() < 0.002,
        "startsAt {} is the start of the violation {since}",
        a["startsAt"]
    );

    // Store 1's and store 3's disks fill in the same PD answer: both warnings go to
    // Alertmanager in the same batch and wait the same group_wait; store 1's is inhibited by
    // its TiKVStoreDown (same cluster and store). Once store 3's has arrived and every
    // notification Alertmanager started by then, a store 1 warning would have shown.
    pd.edit_stores(|stores| {
        for id in [1, 3] {
            let status = &mut store_json_mut(stores, id)["status"];
            status["capacity"] = json!("100GiB");
            status["available"] = json!("25GiB");
        }
    });
    wait_notified(
        &receiver,
        PATIENCE,
        ("/warning", "firing", "TiKVDiskUsageHigh", "3"),
        diag,
    );
    let held = wait::until("store 1's warning in Alertmanager", PATIENCE, || {
        am.alerts()
            .into_iter()
            .find(|a| {
                a["labels"]["alertname"] == "TiKVDiskUsageHigh" && a["labels"]["store"] == "1"
            })
            .ok_or_else(|| format!("{:#?}", am.alerts()))
    });
    assert_eq!(held["status"]["state"], "suppressed", "{held:#}");
    let started = notifications_started(&am);
    wait::until_true(
        "every notification Alertmanager started to arrive",
        PATIENCE,
        || receiver.notifications().len() >= started,
        diag,
    );
    assert!(
        got(&receiver, "TiKVDiskUsageHigh", "1").is_empty(),
        "inhibited warning arrived: {}",
        diag()
    );

    // Store 1 recovers: the resolution arrives, and with it gone the store 1 warning.
    pd.set_store_state(1, "Up");
    pd.live_heartbeats();
    let r = wait_notified(
        &receiver,
        PATIENCE,
        ("/critical", "resolved", "TiKVStoreDown", "1"),
        diag,
    );
    assert_eq!(r["labels"], a["labels"]);
    assert_eq!(r["startsAt"], a["startsAt"]);
    wait_notified(
        &receiver,
        PATIENCE,
        ("/warning", "firing", "TiKVDiskUsageHigh", "1"),
        diag,
    );
    let m = exporter.metrics();
    assert!(
        notifications(&m, &am.addr().to_string(), "sent") >= 4.0,
        "{m}"
    );
    assert_eq!(
        notifications(&m, &am.addr().to_string(), "dropped"),
        0.0,
        "{m}"
    );
}

#[test]
fn a_hanging_alertmanager_delays_nothing_and_gets_the_alert_once_back() {
    let pd = FakePd::with_stores(&cluster(2));
    pd.live_heartbeats();
    let (slow_rx, fast_rx) = (WebhookReceiver::start(), WebhookReceiver::start());
    let slow_am = RealAlertmanager::start(&shipped_config(&slow_rx.url()));
    let fast_am = RealAlertmanager::start(&shipped_config(&fast_rx.url()));
    // Each request to the closed gate hangs 10s, longer than the exporter's 5s timeout: a poll
    // loop that waited for it would poll at most every 5s.
    let gate = Gate::closed(slow_am.addr(), "/prefix", Duration::from_secs(10));
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "s3cret\n").unwrap();
    let config = format!(
        "alerting:\n  resend_interval: 1s\n  alertmanagers:\n    - url: {}\n      path_prefix: /prefix\n      timeout: 5s\n      bearer_token_file: {}\n    - url: http://{}\n",
        gate.url(),
        token.display(),
        fast_am.addr()
    );
    let exporter = exporter(&pd, dir.path(), &config, &[]);
    let diag = || {
        format!(
            "slow: {:#?}\nfast: {:#?}\ngate: {:?}\nexporter: {}\n{}",
            slow_rx.notifications(),
            fast_rx.notifications(),
            gate.requests(),
            exporter.metrics(),
            exporter.stderr()
        )
    };
    let gate_host = gate.url().trim_start_matches("http://").to_owned();

    pd.set_heartbeat_age(1, Duration::from_secs(120));
    // The healthy Alertmanager is not held up by the hanging one: its notification arrives
    // while the first POST to the hanging one is still waiting for its 5s timeout.
    wait_notified(
        &fast_rx,
        PATIENCE,
        ("/critical", "firing", "TiKVStoreDown", "1"),
        diag,
    );
    let m = exporter.metrics();
    assert_eq!(notifications(&m, &gate_host, "failed"), 0.0, "{m}");
    wait::until_true(
        "the hanging one to be tried",
        PATIENCE,
        || !gate.requests().is_empty(),
        diag,
    );
    // The hanging one was tried (path prefix, token from the file), failed and is retried;
    // meanwhile the poll loop goes on and scrapes answer at once.
    let m = exporter.wait_metrics("a failed delivery", PATIENCE, |m| {
        notifications(m, &gate_host, "failed") >= 1.0
    });
    assert!(
        sample(
            &m,
            "tikv_health_exporter_notifications_queue_length",
            &[(
                "alertmanager",
                &format!("{}/prefix/api/v2/alerts", gate.url())
            )]
        )
        .is_some_and(|n| n >= 1.0),
        "{m}"
    );
    let requests = gate.requests();
    assert!(
        requests
            .iter()
            .all(|(p, auth)| p == "/prefix/api/v2/alerts"
                && auth.as_deref() == Some("Bearer s3cret")),
        "{requests:?}"
    );
    let t = unix_now();
    let started = Instant::now();
    exporter.wait_polls_after("pd", t, 3);
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "3 polls of 200ms held up behind a hanging Alertmanager: {:?}",
        started.elapsed()
    );
    assert!(got(&slow_rx, "TiKVStoreDown", "1").is_empty());

    // The Alertmanager answers again: the alert arrives there too.
    gate.open();
    wait_notified(
        &slow_rx,
        PATIENCE,
        ("/critical", "firing", "TiKVStoreDown", "1"),
        diag,
    );
    exporter.wait_metrics("the slow queue to drain", PATIENCE, |m| {
        notifications(m, &gate_host, "sent") >= 1.0
    });
    assert!(
        exporter.stderr().matches("cannot take alerts").count() == 1,
        "failure logged once: {}",
        exporter.stderr()
    );
    wait::until_true(
        "the recovery to be logged",
        PATIENCE,
        || exporter.stderr().contains("takes alerts again"),
        || exporter.stderr(),
    );
}

/// `alertmanager_<name>` summed over its series, from an Alertmanager's `/metrics`.
fn am_metric(am: &RealAlertmanager, name: &str) -> f64 {
    let (_, body) = am.http("GET", "/metrics", "").unwrap();
    body.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

#[test]
fn two_clustered_alertmanagers_notify_once() {
    let pd = FakePd::with_stores(&cluster(2));
    pd.live_heartbeats();
    let receiver = WebhookReceiver::start();
    let config = shipped_config(&receiver.url());
    let (am1, gossip) = RealAlertmanager::start_clustered(&config, &[]);
    let (am2, _) = RealAlertmanager::start_clustered(&config, &[gossip]);
    for am in [&am1, &am2] {
        wait::until_true(
            "both Alertmanagers to see the cluster",
            PATIENCE,
            || am_metric(am, "alertmanager_cluster_members") == 2.0,
            || am.log(),
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let mut args = am_flag(&am1).to_vec();
    args.extend(am_flag(&am2));
    let exporter = exporter(&pd, dir.path(), "alerting:\n  resend_interval: 1s\n", &args);
    let diag = || {
        format!(
            "{:#?}\nam1: {}\nam2: {}",
            receiver.notifications(),
            am1.log(),
            am2.log()
        )
    };

    pd.set_heartbeat_age(1, Duration::from_secs(120));
    wait_notified(
        &receiver,
        PATIENCE,
        ("/critical", "firing", "TiKVStoreDown", "1"),
        diag,
    );
    // Both got the alert; each has passed its HA wait and asked its notification log (the
    // second one finds the first one's notification there).
    for am in [&am1, &am2] {
        wait::until_true(
            "each Alertmanager to have decided on the notification",
            PATIENCE,
            || am_metric(am, "alertmanager_nflog_queries_total") >= 1.0,
            diag,
        );
    }
    let m = exporter.metrics();
    for am in [&am1, &am2] {
        assert!(
            notifications(&m, &am.addr().to_string(), "sent") >= 1.0,
            "{m}"
        );
    }
    assert_eq!(notifications_started(&am1) + notifications_started(&am2), 1);
    assert_eq!(got(&receiver, "TiKVStoreDown", "1").len(), 1, "{}", diag());
}

#[test]
fn a_restart_with_the_state_file_neither_flaps_nor_moves_starts_at() {
    let pd = FakePd::with_stores(&cluster(2));
    pd.live_heartbeats();
    let receiver = WebhookReceiver::start();
    let am = RealAlertmanager::start(&shipped_config(&receiver.url()));
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let mut args = am_flag(&am).to_vec();
    args.extend(["--state-file".to_owned(), state.display().to_string()]);
    // Alertmanager holds each alert 4 x 3s after the last send: the restart fits in easily.
    let config = "alerting:\n  resend_interval: 3s\n";
    let mut first = exporter(&pd, dir.path(), config, &args);
    let diag = || format!("{:#?}\n{:#?}", receiver.notifications(), am.alerts());

    pd.set_heartbeat_age(1, Duration::from_secs(120));
    let fired = wait_notified(
        &receiver,
        PATIENCE,
        ("/critical", "firing", "TiKVStoreDown", "1"),
        diag,
    );
    let held_until = |am: &RealAlertmanager| {
        am.alerts()
            .into_iter()
            .find(|a| a["labels"]["alertname"] == "TiKVStoreDown")
            .map(|a| {
                (
                    a["startsAt"].clone(),
                    unix(&a["endsAt"]),
                    a["status"]["state"].clone(),
                )
            })
    };
    let (_, before, _) = held_until(&am).unwrap();
    assert_eq!(first.terminate(), Some(0));
    let second = exporter(&pd, dir.path(), config, &args);
    second.wait_metrics("the new process to send", PATIENCE, |m| {
        notifications(m, &am.addr().to_string(), "sent") >= 1.0
    });
    let (starts_at, until, state) =
        wait::until("Alertmanager to take the new send", PATIENCE, || {
            let h = held_until(&am).unwrap();
            if h.1 > before {
                Ok(h)
            } else {
                Err(format!("{h:?}"))
            }
        });
    // (Alertmanager's API and its webhook write the same time with different trailing zeros.)
    assert_eq!(
        unix(&starts_at),
        unix(&fired["startsAt"]),
        "startsAt unchanged"
    );
    assert_eq!(state, "active");
    assert!(until > unix_now());

    pd.set_store_state(1, "Up");
    pd.live_heartbeats();
    wait_notified(
        &receiver,
        PATIENCE,
        ("/critical", "resolved", "TiKVStoreDown", "1"),
        diag,
    );
    let seen: Vec<(String, f64)> = got(&receiver, "TiKVStoreDown", "1")
        .into_iter()
        .map(|(_, s, a)| (s, unix(&a["startsAt"])))
        .collect();
    let start = unix(&fired["startsAt"]);
    assert_eq!(
        seen,
        [("firing".to_owned(), start), ("resolved".to_owned(), start)],
        "no resolve-then-fire flap"
    );
}

#[test]
fn a_killed_exporter_s_alert_resolves_by_itself_after_four_resend_intervals() {
    let pd = FakePd::with_stores(&cluster(2));
    pd.live_heartbeats();
    let receiver = WebhookReceiver::start();
    let am = RealAlertmanager::start(&shipped_config(&receiver.url()));
    let dir = tempfile::tempdir().unwrap();
    // endsAt = last send + 4 x 1s.
    let exporter = exporter(
        &pd,
        dir.path(),
        "alerting:\n  resend_interval: 1s\n",
        &am_flag(&am),
    );
    assert!(
        exporter
            .stderr()
            .contains("resolved by Alertmanager 4s after the last send"),
        "{}",
        exporter.stderr()
    );
    let diag = || format!("{:#?}\n{:#?}", receiver.notifications(), am.alerts());
    pd.set_heartbeat_age(1, Duration::from_secs(120));
    wait_notified(
        &receiver,
        PATIENCE,
        ("/critical", "firing", "TiKVStoreDown", "1"),
        diag,
    );
    drop(exporter); // SIGKILL: no goodbye
    let killed = unix_now();
    let r = wait_notified(
        &receiver,
        Duration::from_secs(4) + GROUP_WAIT + PATIENCE,
        ("/critical", "resolved", "TiKVStoreDown", "1"),
        diag,
    );
    let ends = unix(&r["endsAt"]);
    // The last send came at most one resend interval (plus a poll) before the kill.
    assert!(
        ends > killed + 1.0 && ends <= killed + 4.5,
        "resolved at {ends}, killed at {killed}"
    );
}

/// bcrypt (cost 4) of `am-test-password`, made once with Python's `bcrypt` package: the
/// password Alertmanager's `basic_auth_users` accepts in the test below.
const PASSWORD_HASH: &str = "$2b$04$5ofzxcIRqcGDLSwHmTHZz.9Wu1PQ8gyGj6gYaVaKdgFs68RuhClaW";

#[test]
fn delivery_over_mutual_tls_with_basic_auth_and_a_refused_password() {
    use support::fake_pd::tls::Pki;
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::generate("notifier-test-ca").write_to(dir.path());
    // exporter-toolkit's web config (ecosystem.md §2): HTTPS only, client certificates
    // required and verified, one user.
    let web = format!(
        "tls_server_config:\n  cert_file: {}\n  key_file: {}\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {}\nbasic_auth_users:\n  exporter: {PASSWORD_HASH}\n",
        pki.server_cert.display(),
        pki.server_key.display(),
        pki.ca.display()
    );
    let receiver = WebhookReceiver::start();
    let am = RealAlertmanager::start_secured(&shipped_config(&receiver.url()), &web);
    let pd = FakePd::with_stores(&cluster(2));
    pd.live_heartbeats();
    let good = dir.path().join("password");
    std::fs::write(&good, "am-test-password\n").unwrap();
    let port = am.addr().port();
    // The same Alertmanager twice, by two names the certificate covers: once with the right
    // password (from a file), once with a wrong one.
    let tls = format!(
        "      tls:\n        ca_file: {}\n        cert_file: {}\n        key_file: {}\n",
        pki.ca.display(),
        pki.client_cert.display(),
        pki.client_key.display()
    );
    let config = format!(
        "alerting:\n  resend_interval: 1s\n  alertmanagers:\n    - url: https://127.0.0.1:{port}\n{tls}      basic_auth:\n        username: exporter\n        password_file: {}\n    - url: https://localhost:{port}\n{tls}      basic_auth:\n        username: exporter\n        password: wrong\n",
        good.display()
    );
    let exporter = exporter(&pd, dir.path(), &config, &[]);
    let diag = || {
        format!(
            "{:#?}\n{}\n{}",
            receiver.notifications(),
            exporter.stderr(),
            am.log()
        )
    };
    pd.set_heartbeat_age(1, Duration::from_secs(120));
    let a = wait_notified(
        &receiver,
        PATIENCE,
        ("/critical", "firing", "TiKVStoreDown", "1"),
        diag,
    );
    assert_eq!(a["labels"]["name"], "store_down");
    let m = exporter.wait_metrics("the refused password to count", PATIENCE, |m| {
        notifications(m, &format!("localhost:{port}"), "failed") >= 1.0
    });
    assert!(
        notifications(&m, &format!("127.0.0.1:{port}"), "sent") >= 1.0,
        "{m}"
    );
    assert_eq!(
        notifications(&m, &format!("localhost:{port}"), "sent"),
        0.0,
        "{m}"
    );
    let log = exporter.stderr();
    assert!(
        log.contains(&format!(
            "Alertmanager https://localhost:{port}/api/v2/alerts cannot take alerts"
        )) && log.contains("HTTP 401"),
        "{log}"
    );
    assert!(
        !log.contains("wrong") && !log.contains("am-test-password"),
        "{log}"
    );
}

#[test]
fn the_readme_inhibit_rule_mutes_prometheus_copy_of_a_direct_alert() {
    // README "Two ways to alert": the shipped config plus the documented inhibit rule.
    let receiver = WebhookReceiver::start();
    let config = shipped_config(&receiver.url()).replace(
        "inhibit_rules:\n",
        "inhibit_rules:\n  - source_matchers: ['alert_source=\"direct\"']\n    target_matchers: ['alert_source!=\"direct\"']\n    equal: [alertname, cluster, name, store]\n",
    );
    let am = RealAlertmanager::start(&config);
    let pd = FakePd::with_stores(&cluster(2));
    pd.live_heartbeats();
    let dir = tempfile::tempdir().unwrap();
    let exporter = exporter(
        &pd,
        dir.path(),
        "alerting:\n  resend_interval: 1s\n  external_labels:\n    cluster: test\n    alert_source: direct\n",
        &am_flag(&am),
    );
    let diag = || {
        format!(
            "{:#?}\n{:#?}\n{}",
            receiver.notifications(),
            am.alerts(),
            exporter.stderr()
        )
    };
    pd.set_heartbeat_age(1, Duration::from_secs(120));
    wait_notified(
        &receiver,
        PATIENCE,
        ("/critical", "firing", "TiKVStoreDown", "1"),
        diag,
    );
    // What Prometheus would send for the shipped rule: the target's labels, no alert_source.
    let now = chrono::Utc::now();
    let copy = json!([{
        "labels": {"alertname": "TiKVStoreDown", "name": "store_down", "store": "1",
                   "severity": "critical", "cluster": "test",
                   "instance": "exporter:19180", "job": "tikv-health-exporter"},
        "annotations": {"summary": "TiKV store is down."},
        "startsAt": now.to_rfc3339(),
        "endsAt": (now + chrono::Duration::minutes(5)).to_rfc3339(),
    }]);
    let (status, body) = am
        .http("POST", "/api/v2/alerts", &copy.to_string())
        .unwrap();
    assert_eq!(status, 200, "{body}");
    let held = wait::until("Prometheus' copy in Alertmanager", PATIENCE, || {
        am.alerts()
            .into_iter()
            .find(|a| a["labels"]["job"] == "tikv-health-exporter")
            .ok_or_else(|| format!("{:#?}", am.alerts()))
    });
    assert_eq!(held["status"]["state"], "suppressed", "{held:#}");
    let started = notifications_started(&am);
    wait::until_true(
        "every notification Alertmanager started to arrive",
        PATIENCE,
        || receiver.notifications().len() >= started,
        diag,
    );
    let sources: Vec<Value> = got(&receiver, "TiKVStoreDown", "1")
        .into_iter()
        .map(|(_, _, a)| a["labels"]["alert_source"].clone())
        .collect();
    assert!(
        sources.iter().all(|s| s == "direct"),
        "{sources:?}: {}",
        diag()
    );
}

#[test]
fn a_batch_alertmanager_refuses_as_invalid_is_counted_and_not_retried() {
    // Alertmanager answers 400 with a JSON string when an alert fails validation
    // (api/v2/openapi.yaml, postAlerts: "400: Bad request"). No real one refuses the
    // exporter's alerts, so this answer comes from a test server.
    let refusing = support::http::TestServer::start(|_| {
        support::http::Response::json("\"start time must be before end time\"").status(400)
    });
    let pd = FakePd::with_stores(&cluster(2));
    pd.live_heartbeats();
    let dir = tempfile::tempdir().unwrap();
    let exporter = exporter(
        &pd,
        dir.path(),
        "alerting:\n  resend_interval: 1s\n",
        &["--alertmanager.url".to_owned(), refusing.url()],
    );
    pd.set_heartbeat_age(1, Duration::from_secs(120));
    let host = refusing.url().trim_start_matches("http://").to_owned();
    // Two resends refused: each once, none retried.
    let m = exporter.wait_metrics("two refused sends", PATIENCE, |m| {
        notifications(m, &host, "rejected") >= 2.0
    });
    assert_eq!(notifications(&m, &host, "failed"), 0.0, "{m}");
    assert_eq!(notifications(&m, &host, "sent"), 0.0, "{m}");
    assert!(
        exporter
            .stderr()
            .contains("rejected 1 alerts (not retried): HTTP 400"),
        "{}",
        exporter.stderr()
    );
}

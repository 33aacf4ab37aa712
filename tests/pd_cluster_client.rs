//! The PD client's cluster-wide reads against the fake PD in PD's real shapes and versions:
//! the PD leader's own `/metrics` (found among the members, streamed, bounded; with the
//! removal progress of Offline stores), `/gc/safepoint`, `/min-resolved-ts?scope=cluster` and
//! `/schedulers` with the evict-leader / evict-slow-store lists; a PD too old to serve an endpoint answers 404 and that
//! is "not served" after one request; a reply of the wrong shape is a failure.

mod support;

use std::time::Duration;

use support::fake_pd::schedulers::Removal;
use support::fake_pd::{FakePd, PdVersion, ServiceSafePoint, StoreSpec, cluster};
use support::http::Response;
use tikv_health_exporter::domain::{Member, SlowStoreEviction, tso_unix_seconds};
use tikv_health_exporter::sources::pd::{PdClient, PdClientConfig, PdError};

fn client(endpoints: &[String]) -> PdClient {
    PdClient::new(PdClientConfig {
        endpoints: endpoints.to_vec(),
        timeout: support::wait::PATIENCE,
        ..PdClientConfig::default()
    })
    .expect("client")
}

/// The leader as `/members` names it (what the poller hands the client).
async fn leader_of(c: &PdClient) -> Member {
    c.members().await.unwrap().leader.expect("a PD leader")
}

fn unix_now() -> f64 {
    support::wait::unix_now()
}

#[tokio::test]
async fn the_leaders_own_metrics_give_region_counts_and_etcd_state() {
    let pd = FakePd::with_stores(&cluster(3));
    pd.set_region_status("down-peer-region-count", Some(3.0));
    pd.set_region_status("offline-peer-region-count", None);
    pd.set_etcd_db(7e9, 8_589_934_592.0);
    let c = client(&[pd.url()]);
    let leader = leader_of(&c).await;
    // The samples advertise TiDB Operator names that do not resolve here: the configured
    // endpoint serves the page instead.
    let (ep, m) = c.leader_metrics(&leader).await.unwrap();
    assert_eq!(ep, pd.url());
    assert_eq!(m.says_leader(), Some(true));
    let regions = m.region_status.unwrap();
    assert_eq!(regions.get("down-peer-region-count"), Some(&3.0));
    assert_eq!(regions.get("miss-peer-region-count"), Some(&0.0));
    assert_eq!(regions.get("offline-peer-region-count"), None);
    assert_eq!(regions.len(), 9);
    assert_eq!(
        (m.db_total_size_bytes, m.quota_backend_bytes),
        (Some(7e9), Some(8_589_934_592.0))
    );
    let h = m.wal_fsync.unwrap();
    assert_eq!(h.buckets.len(), 15);
    // 1000 fsyncs of 2 ms, and 10 more before each read (a live etcd).
    assert_eq!((h.buckets[1], h.count), ((0.002, 1010.0), 1010.0));
    assert_eq!(pd.requests_to("/metrics"), 1);
    assert!(!pd.regions_requested());
}

#[tokio::test]
async fn the_leader_is_found_among_the_members_and_remembered() {
    let a = FakePd::with_stores(&cluster(3));
    let b = a.peer("basic-7axwci");
    let c = a.peer("basic-0qt9e9");
    for m in [&a, &b, &c] {
        m.advertise_own_url();
    }
    a.set_leader(Some("basic-7axwci"));
    // Only a and c are configured (as with a partial endpoint list): the leader b is reached
    // at the client URL it advertises.
    let client = client(&[a.url(), c.url()]);
    let leader = leader_of(&client).await;
    assert_eq!(leader.name, "basic-7axwci");
    let (ep, _) = client.leader_metrics(&leader).await.unwrap();
    assert_eq!(ep, b.url());
    let (ep, _) = client.leader_metrics(&leader).await.unwrap();
    assert_eq!(ep, b.url());
    assert_eq!(
        (
            a.member_requests_to("/metrics"),
            b.member_requests_to("/metrics"),
            c.member_requests_to("/metrics")
        ),
        (0, 2, 0)
    );
    // The leader moves to c: b (remembered) says follower, c's advertised URL answers.
    a.set_leader(Some("basic-0qt9e9"));
    let leader = leader_of(&client).await;
    let (ep, m) = client.leader_metrics(&leader).await.unwrap();
    assert_eq!((ep, m.says_leader()), (c.url(), Some(true)));
    assert_eq!(
        (
            b.member_requests_to("/metrics"),
            c.member_requests_to("/metrics")
        ),
        (3, 1)
    );
    // A "leader" whose page says follower everywhere (PD moved on since /members): failure
    // naming each member asked, never a follower's zeros.
    let stale = Member {
        name: "basic-7axwci".into(),
        member_id: 1428427862495950874,
        client_urls: vec![b.url()],
    };
    a.set_leader(None);
    let e = client.leader_metrics(&stale).await.unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("not the PD leader basic-7axwci (its /metrics says it is a follower)"),
        "{text}"
    );
    assert!(matches!(e, PdError::AllFailed { ref failures, .. } if failures.len() == 3));
}

#[tokio::test]
async fn old_pds_without_the_role_gauge_are_judged_by_etcd_and_lack_the_endpoints() {
    let pd = FakePd::with_stores(&cluster(3));
    pd.set_version(PdVersion::V4_0_0);
    let b = pd.peer("basic-7axwci");
    let c = client(&[b.url(), pd.url()]);
    let leader = leader_of(&c).await;
    let (ep, m) = c.leader_metrics(&leader).await.unwrap();
    assert_eq!(ep, pd.url());
    assert_eq!((m.service_member_role, m.etcd_is_leader), (None, Some(1.0)));
    assert!(m.region_status.is_some());
    // 404 at the first endpoint: not served, without asking the other members.
    assert_eq!(c.gc_safepoint().await.unwrap(), None);
    assert_eq!(c.min_resolved_ts().await.unwrap(), None);
    assert_eq!(pd.requests_to("/pd/api/v1/gc/safepoint"), 1);
}

#[tokio::test]
async fn gc_safe_points_name_their_services() {
    let pd = FakePd::with_stores(&cluster(3));
    pd.set_gc_safepoint(
        Some(Duration::from_secs(90_000)),
        vec![
            ServiceSafePoint {
                service_id: "gc_worker".into(),
                expires_in_secs: None,
                age: Duration::from_secs(600),
            },
            ServiceSafePoint {
                service_id: "ticdc-default-1139748333935545375".into(),
                expires_in_secs: Some(86_400),
                age: Duration::from_secs(90_000),
            },
        ],
    );
    let c = client(&[pd.url()]);
    let g = c.gc_safepoint().await.unwrap().unwrap();
    let age = unix_now() - tso_unix_seconds(g.gc_safe_point);
    assert!((89_990.0..90_060.0).contains(&age), "{age}");
    assert_eq!(g.services.len(), 2);
    assert_eq!(g.services[0].expired_at, i64::MAX);
    assert_eq!(
        g.oldest_service(unix_now()).unwrap().service_id,
        "ticdc-default-1139748333935545375"
    );
    // Never ran: 0, parsed as such (the invariant then has no series).
    pd.set_gc_safepoint(None, vec![]);
    let g = c.gc_safepoint().await.unwrap().unwrap();
    assert_eq!((g.gc_safe_point, g.services.len()), (0, 0));
    // Wrong shape: a failure, not "no safe point".
    pd.respond_with("/pd/api/v1/gc/safepoint", Response::json("{}"));
    let e = c.gc_safepoint().await.unwrap_err().to_string();
    assert!(e.contains("no `gc_safe_point` in the reply"), "{e}");
}

#[tokio::test]
async fn min_resolved_ts_per_version() {
    let mut specs = cluster(3);
    specs.push(StoreSpec::tiflash(20));
    let pd = FakePd::with_stores(&specs);
    pd.set_resolved_ts_lag(Some(2), Some(Duration::from_secs(600)));
    let c = client(&[pd.url()]);
    let r = c.min_resolved_ts().await.unwrap().unwrap();
    assert!(r.is_real_time);
    let stores = r.stores.unwrap();
    assert_eq!(stores.keys().copied().collect::<Vec<_>>(), [1, 2, 3, 20]);
    assert_eq!(stores[&20], u64::MAX, "TiFlash has no resolved ts");
    let lag = |ts: u64| unix_now() - tso_unix_seconds(ts);
    assert!((590.0..660.0).contains(&lag(stores[&2])));
    assert!(lag(stores[&1]) < 60.0 && lag(r.cluster) < 60.0);
    assert!(
        pd.paths()
            .iter()
            .any(|p| p == "/pd/api/v1/min-resolved-ts?scope=cluster"),
        "{:?}",
        pd.paths()
    );
    // PD 6.0–7.1: no store map; persistence off by default before 6.3.
    pd.set_version(PdVersion::V6_1_0);
    let r = c.min_resolved_ts().await.unwrap().unwrap();
    assert_eq!((r.is_real_time, r.stores, r.cluster), (false, None, 0));
    pd.set_resolved_ts_persist_interval("1s");
    let r = c.min_resolved_ts().await.unwrap().unwrap();
    assert!(r.is_real_time && r.stores.is_none());
    // A follower error body through the redirector is a failure.
    pd.respond_with(
        "/pd/api/v1/min-resolved-ts",
        Response::json(r#""[PD:cluster:ErrNotBootstrapped]TiKV cluster not bootstrapped, please start TiKV first""#)
            .status(500),
    );
    assert!(c.min_resolved_ts().await.is_err());
}

#[tokio::test]
async fn a_metrics_page_that_is_not_pds_or_too_big_is_a_failure() {
    let pd = FakePd::with_stores(&cluster(3));
    let c = client(&[pd.url()]);
    let leader = leader_of(&c).await;
    pd.respond_with(
        "/metrics",
        Response::text(200, "<html><body>502 Bad Gateway</body></html>\n"),
    );
    let e = c.leader_metrics(&leader).await.unwrap_err().to_string();
    assert!(e.contains("not a PD metrics page"), "{e}");
    pd.heal();
    let small = PdClient::new(PdClientConfig {
        endpoints: vec![pd.url()],
        timeout: support::wait::PATIENCE,
        max_response_bytes: 1000,
        ..PdClientConfig::default()
    })
    .unwrap();
    let e = small.leader_metrics(&leader).await.unwrap_err().to_string();
    assert!(e.contains("response larger than 1000 bytes"), "{e}");
}

#[tokio::test]
async fn schedulers_and_their_targets_per_version_in_at_most_three_requests() {
    let pd = FakePd::with_stores(&cluster(3));
    let c = client(&[pd.url()]);
    let lists = |pd: &FakePd| {
        (
            pd.requests_to("/pd/api/v1/scheduler-config/evict-leader-scheduler/list"),
            pd.requests_to("/pd/api/v1/scheduler-config/evict-slow-store-scheduler/list"),
        )
    };
    // v8.1 defaults: evict-slow-store runs, its list says `null`; no evict-leader (not asked).
    let s = c.schedulers().await.unwrap().unwrap();
    assert_eq!(s.running, 4);
    assert!(s.evict_leader.is_empty());
    assert_eq!(s.evict_slow_store, SlowStoreEviction::Unlisted);
    assert_eq!(pd.requests_to("/pd/api/v1/schedulers"), 1);
    assert_eq!(lists(&pd), (0, 1));
    // evict-leader on 2 and 3; v8.5.5 lists the slow stores.
    pd.set_version(PdVersion::V8_5_5);
    pd.edit_schedulers(|s| {
        s.evict_leader = vec![2, 3];
        s.evicted_slow = vec![1];
    });
    let s = c.schedulers().await.unwrap().unwrap();
    assert_eq!(s.evict_leader, [2, 3].into());
    assert_eq!(s.evict_slow_store, SlowStoreEviction::Listed([1].into()));
    assert_eq!(lists(&pd), (1, 2));
    // PD v3.0's per-store names: the targets without a list request.
    pd.edit_schedulers(|s| s.v30_names = true);
    let s = c.schedulers().await.unwrap().unwrap();
    assert_eq!(s.evict_leader, [2, 3].into());
    assert_eq!(lists(&pd), (1, 3));
    // <= v7.5 with evict-slow-store added: `not implements`.
    pd.set_version(PdVersion::V6_1_0);
    pd.edit_schedulers(|s| s.evict_slow_store = Some(true));
    let s = c.schedulers().await.unwrap().unwrap();
    assert_eq!(s.evict_slow_store, SlowStoreEviction::Unlisted);
    assert_eq!(pd.requests_to("/pd/api/v1/schedulers"), 4);
    assert!(!pd.regions_requested());
    // The scheduler gone between the two requests (its list 404s): not running.
    pd.respond_with(
        "/pd/api/v1/scheduler-config/evict-slow-store-scheduler/list",
        Response::text(404, "404 page not found\n"),
    );
    let s = c.schedulers().await.unwrap().unwrap();
    assert_eq!(s.evict_slow_store, SlowStoreEviction::NotRunning);
    // A list of the wrong shape fails the whole reading; /schedulers 404: not served.
    pd.respond_with(
        "/pd/api/v1/scheduler-config/evict-slow-store-scheduler/list",
        Response::json(r#"{"evict-stores": "all"}"#),
    );
    let e = c.schedulers().await.unwrap_err().to_string();
    assert!(e.contains("`evict-stores` is \"all\", not a list"), "{e}");
    pd.respond_with(
        "/pd/api/v1/schedulers",
        Response::text(404, "404 page not found\n"),
    );
    assert!(c.schedulers().await.unwrap().is_none());
}

#[tokio::test]
async fn removal_progress_comes_with_the_leaders_page() {
    let pd = FakePd::with_stores(&cluster(3));
    pd.edit_schedulers(|s| {
        s.removals = vec![
            Removal {
                store: 3,
                progress: 0.5,
                speed: 0.0,
                eta: 0.0,
            },
            Removal {
                store: 2,
                progress: 0.9,
                speed: 4.0,
                eta: 30.0,
            },
        ]
    });
    let c = client(&[pd.url()]);
    let leader = leader_of(&c).await;
    let (_, m) = c.leader_metrics(&leader).await.unwrap();
    let stalled = m.removal[&3];
    assert_eq!(
        (stalled.progress, stalled.speed, stalled.eta),
        (Some(0.5), Some(0.0), Some(f64::MAX))
    );
    assert!(stalled.stalled());
    assert!(!m.removal[&2].stalled());
    // PD v4.0 has no progress metrics.
    pd.set_version(PdVersion::V4_0_0);
    let (_, m) = c.leader_metrics(&leader).await.unwrap();
    assert!(m.removal.is_empty());
}

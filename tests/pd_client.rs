//! The PD HTTP client against a fake PD serving real PD JSON (v3.0, v5.2.1, v8.1): parsing,
//! failover between endpoints, timeouts, body-size limits, and mutual TLS.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use support::fake_pd::{self, FOLLOWER_HEADER, FakePd, PdVersion, StoreSpec, samples, tls::Pki};
use support::http::Response;
use support::listen::refused_url;
use tikv_health_exporter::domain::{Member, MemberHealth, Store, StoreState};
use tikv_health_exporter::sources::pd::{
    PdClient, PdClientConfig, PdError, PdTls, RejectReason, parse_byte_size, parse_go_duration,
};

const GIB: u64 = 1 << 30;

/// A client whose timeout a loaded machine does not reach (the timeout itself is tested with
/// 300 ms against a 60 s delay).
fn client(endpoints: &[String]) -> PdClient {
    PdClient::new(PdClientConfig {
        endpoints: endpoints.to_vec(),
        timeout: support::wait::PATIENCE,
        ..PdClientConfig::default()
    })
    .expect("client")
}

fn client_for(pd: &FakePd) -> PdClient {
    client(&[pd.url()])
}

fn store(stores: &[Store], id: u64) -> &Store {
    stores
        .iter()
        .find(|s| s.id == id)
        .unwrap_or_else(|| panic!("no store {id}"))
}

/// A URL where nothing listens (connection refused).
fn dead_url() -> String {
    refused_url()
}

fn all_failed(e: PdError) -> (String, Vec<(String, Option<u16>, String)>) {
    let text = e.to_string();
    match e {
        PdError::AllFailed { failures, .. } => (
            text,
            failures
                .into_iter()
                .map(|f| (f.endpoint, f.status, f.message))
                .collect(),
        ),
        other => panic!("expected AllFailed, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Parsing real shapes

#[tokio::test]
async fn parses_v81_stores_with_tiflash() {
    let pd = FakePd::start();
    let stores = client_for(&pd).stores().await.unwrap();
    assert_eq!(stores.len(), 2);

    let tikv = store(&stores, 4);
    let expected = Store {
        id: 4,
        address: "basic-tikv-5gzwgj.basic-tikv-peer.default:20160".into(),
        status_address: "basic-tikv-5gzwgj.basic-tikv-peer.default:20180".into(),
        version: "8.1.0".into(),
        state: StoreState::Up,
        state_inferred: false,
        labels: vec![],
        last_heartbeat_ns: Some(1_735_098_083_480_549_971),
        start_timestamp: Some(1_735_095_903),
        // 311.7 × 2^30 = 334685326540.8 → rounded to the nearest byte.
        capacity_bytes: Some(334_685_326_541),
        // 222.1 × 2^30 = 238478059110.4
        available_bytes: Some(238_478_059_110),
        // 290.7 × 2^20 = 304821043.2
        used_bytes: Some(304_821_043),
        leader_count: Some(17),
        region_count: Some(60),
        slow_score: Some(1.0),
    };
    assert_eq!(tikv, &expected);
    assert_eq!(tikv.engine(), "tikv");
    assert!(!tikv.is_tiflash());

    let tiflash = store(&stores, 20);
    assert_eq!(tiflash.engine(), "tiflash");
    assert!(tiflash.is_tiflash());
    assert_eq!(tiflash.version, "v8.1.0");
    assert_eq!(
        tiflash.address,
        "basic-tiflash-tphn85.basic-tiflash-peer.default:3930"
    );
    assert_eq!(
        tiflash.labels,
        vec![("engine".to_owned(), "tiflash".to_owned())]
    );
    assert_eq!(tiflash.used_bytes, Some(1));
    assert_eq!(tiflash.last_heartbeat_ns, Some(1_735_098_074_657_264_947));
    assert_eq!(tiflash.leader_count, Some(0));
    assert_eq!(tiflash.region_count, Some(0));
    assert!(!pd.regions_requested());
    assert_eq!(pd.paths(), vec!["/pd/api/v1/stores".to_owned()]);
}

#[tokio::test]
async fn parses_v521_offline_store_with_zero_sizes() {
    let pd = FakePd::with_stores_json(&samples::v521_offline_stores());
    let stores = client_for(&pd).stores().await.unwrap();
    assert_eq!(stores.len(), 1);
    let s = &stores[0];
    assert_eq!(s.id, 5);
    assert_eq!(s.state, StoreState::Offline);
    assert_eq!(s.state.as_str(), "Offline");
    assert_eq!(s.address, "xxxx:20160");
    assert_eq!(s.status_address, "xxxxx:20180");
    assert_eq!(s.version, "5.2.1");
    assert_eq!(s.last_heartbeat_ns, Some(1_648_517_045_511_041_818));
    assert_eq!(s.start_timestamp, Some(1_648_465_247));
    assert_eq!(s.capacity_bytes, Some(0));
    assert_eq!(s.available_bytes, Some(0));
    assert_eq!(s.used_bytes, Some(0));
    assert_eq!(s.slow_score, Some(0.0));
    assert_eq!(s.engine(), "tikv");
}

#[tokio::test]
async fn parses_v30_spaced_sizes_and_derives_heartbeat_from_timestamp() {
    let pd = FakePd::with_stores_json(samples::V30_STORES);
    let stores = client_for(&pd).stores().await.unwrap();
    assert_eq!(stores.len(), 1);
    let s = &stores[0];
    assert_eq!(s.id, 1);
    assert_eq!(s.address, "127.0.0.1:20160");
    assert_eq!(s.status_address, "");
    assert_eq!(s.version, "3.0.0-beta");
    assert_eq!(s.state, StoreState::Up);
    assert_eq!(s.capacity_bytes, Some(20 * GIB));
    assert_eq!(s.available_bytes, Some(16 * GIB));
    assert_eq!(s.used_bytes, None);
    // "2019-03-21T14:14:22.961171958+08:00" = 2019-03-21T06:14:22.961171958Z
    assert_eq!(s.last_heartbeat_ns, Some(1_553_148_862_961_171_958));
    // "2019-03-21T14:09:32+08:00"
    assert_eq!(s.start_timestamp, Some(1_553_148_572));
    assert_eq!(s.leader_count, Some(17));
    assert_eq!(s.region_count, Some(17));
    assert_eq!(s.slow_score, None);
}

#[tokio::test]
async fn store_changes_at_runtime_are_seen() {
    let pd = FakePd::start();
    let c = client_for(&pd);

    pd.set_store_state(4, "Disconnected");
    pd.set_last_heartbeat(4, 1_800_000_000_123_456_789);
    pd.set_slow_score(4, 95);
    pd.set_capacity(4, "937 GiB");
    pd.set_available(4, "lots");
    pd.set_leader_count(4, 3);
    pd.set_region_count(4, 7);
    pd.set_store_state(20, "Removing");
    let stores = c.stores().await.unwrap();
    let s = store(&stores, 4);
    assert_eq!(s.state, StoreState::Disconnected);
    assert_eq!(s.last_heartbeat_ns, Some(1_800_000_000_123_456_789));
    assert_eq!(s.slow_score, Some(95.0));
    assert_eq!(s.capacity_bytes, Some(937 * GIB));
    assert_eq!(
        s.available_bytes, None,
        "an unparsable size is None, not an error"
    );
    assert_eq!(s.leader_count, Some(3));
    assert_eq!(s.region_count, Some(7));
    let f = store(&stores, 20);
    assert_eq!(f.state, StoreState::Other("Removing".into()));
    assert_eq!(f.state.as_str(), "Removing");

    pd.set_store_state(4, "Down");
    pd.set_store_state(20, "Tombstone");
    let stores = c.stores().await.unwrap();
    assert_eq!(store(&stores, 4).state, StoreState::Down);
    assert_eq!(store(&stores, 20).state, StoreState::Tombstone);

    pd.remove_store(20);
    pd.add_store(&StoreSpec {
        state_name: "Up".into(),
        capacity: Some("1.011GiB".into()),
        ..StoreSpec::tiflash(21)
    });
    let stores = c.stores().await.unwrap();
    assert_eq!(stores.iter().map(|s| s.id).collect::<Vec<_>>(), vec![4, 21]);
    let f = store(&stores, 21);
    assert!(f.is_tiflash());
    assert_eq!(f.capacity_bytes, Some(1_085_552_984));
    assert_eq!(f.status_address, "tiflash-21:20292");
}

#[tokio::test]
async fn built_stores_round_trip() {
    let spec = StoreSpec {
        id: 7,
        address: "10.0.0.7:20160".into(),
        status_address: "10.0.0.7:20180".into(),
        version: "7.5.1".into(),
        state_name: "Offline".into(),
        last_heartbeat_ns: Some(1_700_000_000_000_000_001),
        start_timestamp: Some(1_699_999_000),
        capacity: Some("1.5TiB".into()),
        available: Some("19.56GiB".into()),
        used_size: None,
        leader_count: Some(0),
        region_count: Some(12),
        slow_score: Some(80),
        labels: vec![("zone".into(), "z1".into()), ("host".into(), "h7".into())],
    };
    let json = spec.to_json();
    assert_eq!(json["store"]["state"], 1, "Offline carries PD's state int");
    assert_eq!(
        json["status"]["last_heartbeat_ts"],
        "2023-11-14T22:13:20.000000001Z"
    );
    let pd = FakePd::with_stores(&[spec]);
    let stores = client_for(&pd).stores().await.unwrap();
    assert_eq!(
        stores,
        vec![Store {
            id: 7,
            address: "10.0.0.7:20160".into(),
            status_address: "10.0.0.7:20180".into(),
            version: "7.5.1".into(),
            state: StoreState::Offline,
            state_inferred: false,
            labels: vec![("zone".into(), "z1".into()), ("host".into(), "h7".into())],
            last_heartbeat_ns: Some(1_700_000_000_000_000_001),
            start_timestamp: Some(1_699_999_000),
            capacity_bytes: Some(1_649_267_441_664),
            available_bytes: Some(21_002_390_077),
            used_bytes: None,
            leader_count: Some(0),
            region_count: Some(12),
            slow_score: Some(80.0),
        }]
    );
}

#[tokio::test]
async fn thousand_store_cluster() {
    let pd = FakePd::with_stores(&fake_pd::cluster(1000));
    pd.set_store_state(500, "Disconnected");
    let stores = client_for(&pd).stores().await.unwrap();
    assert_eq!(stores.len(), 1000);
    assert!(stores.iter().map(|s| s.id).eq(1..=1000));
    assert_eq!(store(&stores, 500).state, StoreState::Disconnected);
    assert_eq!(
        stores.iter().filter(|s| s.state == StoreState::Up).count(),
        999
    );
}

#[tokio::test]
async fn wrong_shapes_fail_and_are_never_read_as_no_stores() {
    let pd = FakePd::start();
    let c = client_for(&pd);
    for body in [
        r#"{"count": 3}"#,
        r#"{"count": 3, "stores": null}"#,
        r#"{}"#,
        r#"{"stores": {"a": 1}}"#,
        "[1, 2]",
        r#""[PD:cluster:ErrNotBootstrapped]TiKV cluster not bootstrapped, please start TiKV first""#,
        // The tidb-operator fixture as the reference abridged it: "count" 4, two stores listed.
        &samples::V81_STORES.replace(r#""count": 2"#, r#""count": 4"#),
    ] {
        pd.respond_with("/pd/api/v1/stores", Response::json(body));
        let (text, failures) = all_failed(c.store_list().await.unwrap_err());
        assert_eq!(failures.len(), 1);
        assert!(
            failures[0]
                .2
                .starts_with("unusable reply to /pd/api/v1/stores: "),
            "{body}: {text}"
        );
    }
    pd.respond_with(
        "/pd/api/v1/stores",
        Response::json(samples::V81_STORES.replace(r#""count": 2"#, r#""count": 4"#)),
    );
    let (text, _) = all_failed(c.store_list().await.unwrap_err());
    assert!(
        text.contains("`count` is 4 but 2 stores are listed"),
        "{text}"
    );
    // An empty cluster is an empty list with count 0 (PD renders `[]`, never null).
    pd.respond_with(
        "/pd/api/v1/stores",
        Response::json(r#"{"count":0,"stores":[]}"#),
    );
    assert_eq!(c.store_list().await.unwrap().stores, vec![]);
}

#[tokio::test]
async fn entries_without_a_usable_id_are_rejected_alone() {
    let mut specs = fake_pd::cluster(3);
    specs[2].id = 2;
    let pd = FakePd::with_stores(&specs);
    // Store 1's id grows past 2^64 - 1 (JSON allows it; PD's u64 cannot be it).
    let body =
        fake_pd::stores_body(&specs).replacen(r#""id":1,"#, r#""id":18446744073709551616,"#, 1);
    pd.respond_with("/pd/api/v1/stores", Response::json(body));
    let list = client_for(&pd).store_list().await.unwrap();
    assert!(list.stores.is_empty(), "{:?}", list.stores);
    let reasons: Vec<(RejectReason, Option<u64>)> =
        list.rejected.iter().map(|r| (r.reason, r.id)).collect();
    assert_eq!(
        reasons,
        [
            (RejectReason::InvalidId, None),
            (RejectReason::DuplicateId, Some(2)),
            (RejectReason::DuplicateId, Some(2)),
        ]
    );
    // A store without an id is dropped, the rest kept.
    let pd = FakePd::with_stores(&fake_pd::cluster(3));
    pd.edit_store(2, |s| {
        s["store"].as_object_mut().unwrap().remove("id");
    });
    let list = client_for(&pd).store_list().await.unwrap();
    assert_eq!(list.stores.iter().map(|s| s.id).collect::<Vec<_>>(), [1, 3]);
    assert_eq!(list.rejected.len(), 1, "{:?}", list.rejected);
    assert_eq!(list.rejected[0].reason, RejectReason::InvalidId);
}

#[tokio::test]
async fn unknown_fields_and_missing_status_are_tolerated() {
    let body = r#"{"count": 2, "stores": [
        {"store": {"id": 9, "address": "a:1", "state_name": "Up", "brand_new": {"x": [1, 2]},
                   "last_heartbeat": 0},
         "future_section": true},
        {"store": {"id": 10, "state": 2},
         "status": {"capacity": null, "leader_count": "n/a", "network_slow_score": {"1": 2}}}
    ]}"#;
    let pd = FakePd::with_stores_json(body);
    let stores = client_for(&pd).stores().await.unwrap();
    assert_eq!(stores.len(), 2);
    let a = store(&stores, 9);
    assert_eq!(a.state, StoreState::Up);
    assert_eq!(a.last_heartbeat_ns, None, "0 means never");
    assert_eq!(
        (a.capacity_bytes, a.leader_count, a.slow_score),
        (None, None, None)
    );
    let b = store(&stores, 10);
    assert_eq!(
        b.state,
        StoreState::Tombstone,
        "no state_name: metapb state"
    );
    assert_eq!((b.capacity_bytes, b.leader_count), (None, None));
}

#[tokio::test]
async fn members_health_and_leader() {
    let pd = FakePd::start();
    let c = client_for(&pd);

    let m = c.members().await.unwrap();
    assert_eq!(m.members.len(), 3);
    let third = &m.members[2];
    assert_eq!(
        third,
        &Member {
            name: "basic-0qt9e9".into(),
            member_id: 12_818_309_996_638_325_969,
            client_urls: vec!["http://basic-pd-0qt9e9.basic-pd-peer.default:2379".into()],
        }
    );
    assert!(third.member_id > i64::MAX as u64);
    let leader = m.leader.clone().unwrap();
    assert_eq!(leader.name, "basic-53pe89");
    assert_eq!(leader.member_id, 2_548_954_049_902_922_308);
    assert_eq!(m.etcd_leader, m.leader);

    let h = c.health().await.unwrap();
    assert_eq!(h.len(), 3);
    assert_eq!(
        h[2],
        MemberHealth {
            name: "basic-0qt9e9".into(),
            member_id: 12_818_309_996_638_325_969,
            health: true,
        }
    );
    pd.set_health("basic-7axwci", false);
    let h = c.health().await.unwrap();
    assert_eq!(h[0].name, "basic-7axwci");
    assert!(!h[0].health);
    assert!(h[1].health && h[2].health);

    assert_eq!(c.leader().await.unwrap().unwrap().name, "basic-53pe89");
    pd.set_leader(Some("basic-0qt9e9"));
    let m = c.members().await.unwrap();
    assert_eq!(m.leader.unwrap().member_id, 12_818_309_996_638_325_969);

    pd.set_leader(None);
    let m = c.members_at(&pd.url()).await.unwrap();
    assert_eq!((m.leader, m.etcd_leader), (None, None));
    assert_eq!(m.members.len(), 3);
    let (text, _) = all_failed(c.leader().await.unwrap_err());
    assert!(text.contains("HTTP 503 (no leader)"), "{text}");
    assert!(!pd.regions_requested());
}

#[tokio::test]
async fn a_member_list_without_members_is_an_error_not_a_leaderless_pd() {
    let pd = FakePd::start();
    let c = client_for(&pd);
    for body in ["{}", r#"{"header":{"cluster_id":1},"members":[]}"#] {
        pd.respond_with("/pd/api/v1/members", Response::json(body));
        let e = c.members_at(&pd.url()).await.unwrap_err().to_string();
        assert!(e.contains("unusable reply to /pd/api/v1/members"), "{e}");
        assert!(c.members().await.is_err());
    }
    pd.respond_with("/pd/api/v1/health", Response::json("[]"));
    assert!(c.health().await.is_err());
}

/// PD without a leader, by version (cluster-signals.md §1.2): without the follower-handle
/// header every member answers 503 (its body by version; v8.5.5+ still serves `/health`);
/// with it, a member answers `/members` (no `leader`) and `/health` from its own state.
#[tokio::test]
async fn a_leaderless_pd_answers_followers_with_the_header_by_version() {
    for (version, body, health_local, healthy) in [
        (PdVersion::V8_1_0, "no leader", false, false),
        (
            PdVersion::V8_1_1,
            "[PD:apiutil:ErrRedirectNoLeader]redirect finds no leader",
            false,
            false,
        ),
        (
            PdVersion::V8_5_5,
            "[PD:apiutil:ErrRedirectNoLeader]redirect finds no leader",
            true,
            true,
        ),
    ] {
        let pd = FakePd::start();
        let peer = pd.peer("basic-7axwci");
        pd.set_version(version);
        pd.set_leaders(None, Some("basic-0qt9e9"));
        let c = client(&[pd.url(), peer.url()]);
        for e in [
            c.store_list().await.unwrap_err(),
            c.members().await.unwrap_err(),
        ] {
            let (text, failures) = all_failed(e);
            assert!(
                failures.iter().all(|f| f.1 == Some(503)),
                "{version:?}: {text}"
            );
            assert!(text.contains(&format!("HTTP 503 ({body})")), "{text}");
        }
        assert_eq!(c.health().await.is_ok(), health_local, "{version:?}");
        for ep in [pd.url(), peer.url()] {
            let m = c.members_at(&ep).await.unwrap();
            assert_eq!(m.leader, None);
            assert_eq!(m.etcd_leader.unwrap().name, "basic-0qt9e9");
            let h = c.health_at(&ep).await.unwrap();
            assert!(h.iter().all(|m| m.health == healthy), "{version:?}: {h:?}");
        }
        // Only the member requests carried the header; data requests never do.
        for r in pd.requests().iter().chain(peer.requests().iter()) {
            let direct = matches!(r.path_only(), "/pd/api/v1/members" | "/pd/api/v1/health")
                && r.header(FOLLOWER_HEADER).is_some();
            let expected = r.path_only() != "/pd/api/v1/stores" && direct;
            assert_eq!(r.header(FOLLOWER_HEADER).is_some(), expected, "{r:?}");
        }
    }
}

/// With a leader, a follower asked with the header cannot answer cluster data (only the leader
/// has the cluster); without the header it proxies to the leader.
#[tokio::test]
async fn followers_proxy_data_requests_and_answer_members_locally() {
    let pd = FakePd::start();
    let follower = pd.peer("basic-0qt9e9");
    let c = client(&[follower.url()]);
    assert_eq!(c.stores().await.unwrap().len(), 2);
    let (status, _, body) = support::exporter::http_get_with(
        follower.addr(),
        "/pd/api/v1/stores",
        &[(FOLLOWER_HEADER, "true")],
    )
    .unwrap();
    assert_eq!(status, 500);
    assert!(body.contains("ErrNotBootstrapped"), "{body}");
    let m = c.members_at(&follower.url()).await.unwrap();
    assert_eq!(m.leader.unwrap().name, "basic-53pe89");
    // Surveyed: every member asked; one that is down is reported, not fatal.
    let mut third = pd.peer("basic-7axwci");
    third.stop();
    let c = client(&[pd.url(), follower.url(), third.url()]);
    let survey = c.survey().await;
    let h = survey.health().unwrap();
    assert_eq!((h.answered, h.asked, h.members), (2, 3, 3));
    assert_eq!(h.leader.unwrap().name, "basic-53pe89");
    assert!(survey.members[2].1.is_err());
}

#[tokio::test]
async fn max_store_down_time_from_schedule_config() {
    let pd = FakePd::start();
    let c = client_for(&pd);
    assert_eq!(
        c.max_store_down_time().await.unwrap(),
        Some(Duration::from_secs(30 * 60))
    );
    pd.set_max_store_down_time(Some("1h0m0s"));
    assert_eq!(
        c.max_store_down_time().await.unwrap(),
        Some(Duration::from_secs(3600))
    );
    pd.set_max_store_down_time(Some("1m30s"));
    assert_eq!(
        c.max_store_down_time().await.unwrap(),
        Some(Duration::from_secs(90))
    );
    pd.set_max_store_down_time(Some("soon"));
    assert_eq!(c.max_store_down_time().await.unwrap(), None);
    pd.set_max_store_down_time(None);
    assert_eq!(c.max_store_down_time().await.unwrap(), None);
    assert_eq!(pd.requests_to("/pd/api/v1/config/schedule"), 5);
}

// ---------------------------------------------------------------------------------------------
// String parsers

#[test]
fn byte_sizes() {
    let cases: &[(&str, u64)] = &[
        ("0B", 0),
        ("1B", 1),
        ("311.7GiB", 334_685_326_541),
        ("222.1GiB", 238_478_059_110),
        ("290.7MiB", 304_821_043),
        ("1.011GiB", 1_085_552_984),
        ("19.56GiB", 21_002_390_077),
        ("195GiB", 195 * GIB),
        ("937 GiB", 937 * GIB),
        ("20 GiB", 20 * GIB),
        ("20gib", 20 * GIB),
        ("20G", 20 * GIB),
        ("20GB", 20 * GIB),
        ("20 gi", 20 * GIB),
        (" 1.5 KiB ", 1536),
        ("1.5TiB", 1_649_267_441_664),
        ("2PiB", 2 << 50),
        ("15EiB", 15 << 60),
        ("7", 7),
    ];
    for (s, want) in cases {
        assert_eq!(parse_byte_size(s), Some(*want), "{s:?}");
    }
    for bad in [
        "", "GiB", "-1GiB", "1.2.3GiB", "12 XiB", "lots", "1e9", "16EiB", "1 G iB",
    ] {
        assert_eq!(parse_byte_size(bad), None, "{bad:?}");
    }
}

#[test]
fn go_durations() {
    let cases: &[(&str, Duration)] = &[
        ("30m0s", Duration::from_secs(1800)),
        ("1h0m0s", Duration::from_secs(3600)),
        ("1m30s", Duration::from_secs(90)),
        ("500ms", Duration::from_millis(500)),
        ("36m20.480549971s", Duration::new(2180, 480_549_971)),
        (
            "524h21m25.130921869s",
            Duration::new(1_887_685, 130_921_869),
        ),
        ("1.5h", Duration::from_secs(5400)),
        ("0s", Duration::ZERO),
        ("0", Duration::ZERO),
        ("2h45m", Duration::from_secs(9900)),
        ("1µs", Duration::from_micros(1)),
        ("1μs", Duration::from_micros(1)),
        ("1us", Duration::from_micros(1)),
        ("100ns", Duration::from_nanos(100)),
        ("1.000000001s", Duration::new(1, 1)),
    ];
    for (s, want) in cases {
        assert_eq!(parse_go_duration(s), Some(*want), "{s:?}");
    }
    for bad in ["", "30", "-1s", "1d", "1h 2m", "m", "1.2.3s", "abc"] {
        assert_eq!(parse_go_duration(bad), None, "{bad:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Configuration

#[test]
fn config_validation() {
    let d = PdClientConfig::default();
    assert_eq!(d.endpoints, vec!["http://127.0.0.1:2379".to_owned()]);
    assert_eq!(d.timeout, Duration::from_secs(5));
    assert_eq!(d.tls, None);
    assert_eq!(d.max_response_bytes, 64 * 1024 * 1024);

    let c = PdClient::new(PdClientConfig {
        endpoints: vec![
            "127.0.0.1:2379".into(),
            "http://pd-1:2379/".into(),
            "http://127.0.0.1:2379".into(),
        ],
        ..d.clone()
    })
    .unwrap();
    assert_eq!(c.endpoints(), ["http://127.0.0.1:2379", "http://pd-1:2379"]);

    let err = |cfg: PdClientConfig| PdClient::new(cfg).unwrap_err().to_string();
    assert!(
        err(PdClientConfig {
            endpoints: vec![],
            ..d.clone()
        })
        .contains("no PD endpoints")
    );
    let e = err(PdClientConfig {
        endpoints: vec!["ftp://pd:2379".into()],
        ..d.clone()
    });
    assert!(e.contains("ftp://pd:2379") && e.contains("scheme"), "{e}");
    assert!(
        err(PdClientConfig {
            timeout: Duration::ZERO,
            ..d.clone()
        })
        .contains("timeout")
    );
}

// ---------------------------------------------------------------------------------------------
// Endpoints, failover, limits

#[tokio::test]
async fn first_endpoint_down_second_answers() {
    let pd = FakePd::start();
    let dead = dead_url();
    let c = client(&[dead.clone(), pd.url()]);
    assert_eq!(c.stores().await.unwrap().len(), 2);
    assert_eq!(c.requests_total(), 2);
    assert_eq!(c.preferred_endpoint(), pd.url());
    // The answering endpoint is now tried first: no more attempts on the dead one.
    c.stores().await.unwrap();
    assert_eq!(c.requests_total(), 3);
    assert_eq!(pd.requests_to("/pd/api/v1/stores"), 2);
}

#[tokio::test]
async fn first_endpoint_503_second_answers() {
    let a = FakePd::start();
    let b = FakePd::start();
    a.fail_with_pd_error(503, samples::NO_LEADER);
    let c = client(&[a.url(), b.url()]);
    assert_eq!(c.members().await.unwrap().members.len(), 3);
    assert_eq!(a.request_count(), 1);
    assert_eq!(b.request_count(), 1);
}

#[tokio::test]
async fn all_endpoints_failing_names_each_with_its_cause() {
    let a = FakePd::start();
    a.fail_with_pd_error(503, samples::NO_LEADER);
    let dead = dead_url();
    let c = client(&[a.url(), dead.clone()]);
    let (text, failures) = all_failed(c.stores().await.unwrap_err());
    assert!(text.starts_with("all PD endpoints failed: "), "{text}");
    assert!(
        text.contains(&format!(
            "{}: HTTP 503 ([PD:apiutil:ErrRedirectNoLeader]redirect finds no leader)",
            a.url()
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!("; {dead}: connect error: ")),
        "{text}"
    );
    assert!(text.to_lowercase().contains("connection refused"), "{text}");
    assert_eq!(failures.len(), 2);
    assert_eq!(failures[0].0, a.url());
    assert_eq!(failures[0].1, Some(503));
    assert_eq!(failures[1].0, dead);
    assert_eq!(failures[1].1, None);
    assert_eq!(c.requests_total(), 2);
}

#[tokio::test]
async fn http_4xx_body_is_surfaced_and_next_endpoint_tried() {
    let a = FakePd::start();
    let b = FakePd::start();
    a.fail_with(404, "404 page not found\n");
    let c = client(&[a.url(), b.url()]);
    assert_eq!(c.health().await.unwrap().len(), 3);

    b.fail_with(400, r#"{"error":"scheduler already exists"}"#);
    let (text, failures) = all_failed(c.health().await.unwrap_err());
    // b answered last, so it is tried first.
    assert_eq!(failures[0].0, b.url());
    assert!(
        text.contains(&format!(
            "{}: HTTP 400 (scheduler already exists); {}: HTTP 404 (404 page not found)",
            b.url(),
            a.url()
        )),
        "{text}"
    );
}

#[tokio::test]
async fn last_good_endpoint_is_preferred() {
    let a = FakePd::start();
    let b = FakePd::start();
    a.fail_with(
        500,
        r#""[PD:cluster:ErrNotBootstrapped]TiKV cluster not bootstrapped""#,
    );
    let c = client(&[a.url(), b.url()]);
    for _ in 0..3 {
        c.stores().await.unwrap();
    }
    assert_eq!(a.request_count(), 1);
    assert_eq!(b.request_count(), 3);

    // b breaks, a recovers: one failed try on b, then a, which is then kept.
    a.heal();
    b.fail_with(503, r#""etcdserver: request timed out""#);
    for _ in 0..3 {
        c.stores().await.unwrap();
    }
    assert_eq!(b.request_count(), 4);
    assert_eq!(a.request_count(), 4);
    assert_eq!(c.preferred_endpoint(), a.url());
    assert_eq!(c.requests_total(), 8);

    // Clones share the preference and the counters.
    let c2 = c.clone();
    c2.stores().await.unwrap();
    assert_eq!(a.request_count(), 5);
    assert_eq!(c.requests_total(), 9);
}

#[tokio::test]
async fn garbage_body_fails_over() {
    let a = FakePd::start();
    let b = FakePd::start();
    a.respond_garbage();
    let c = client(&[a.url(), b.url()]);
    assert_eq!(c.stores().await.unwrap().len(), 2);
    b.respond_garbage();
    let (text, _) = all_failed(c.stores().await.unwrap_err());
    assert!(
        text.contains(&format!(
            "{}: unusable reply to /pd/api/v1/stores: not a store list: expected value at line 1 column 1",
            b.url()
        )),
        "{text}"
    );
    assert!(text.contains(&a.url()), "{text}");
}

#[tokio::test]
async fn slow_endpoint_times_out_quickly() {
    // The answer would take a minute: returning well before it means the timeout worked,
    // however loaded the machine is.
    let answer_after = Duration::from_secs(60);
    let slow = FakePd::start();
    slow.delay(answer_after);
    let c = PdClient::new(PdClientConfig {
        endpoints: vec![slow.url()],
        timeout: Duration::from_millis(300),
        ..PdClientConfig::default()
    })
    .unwrap();
    let t0 = Instant::now();
    let (text, _) = all_failed(c.stores().await.unwrap_err());
    let took = t0.elapsed();
    assert!(took < answer_after / 2, "took {took:?}");
    assert!(took >= Duration::from_millis(300), "took {took:?}");
    assert!(text.contains("timed out after 300ms"), "{text}");

    // With a healthy second endpoint the call succeeds within about one timeout.
    let fast = FakePd::start();
    let c = PdClient::new(PdClientConfig {
        endpoints: vec![slow.url(), fast.url()],
        timeout: Duration::from_millis(300),
        ..PdClientConfig::default()
    })
    .unwrap();
    let t0 = Instant::now();
    assert_eq!(c.stores().await.unwrap().len(), 2);
    assert!(t0.elapsed() < answer_after / 2, "{:?}", t0.elapsed());
}

#[tokio::test]
async fn oversized_body_is_rejected() {
    let pd = FakePd::with_stores(&fake_pd::cluster(50));
    let c = PdClient::new(PdClientConfig {
        endpoints: vec![pd.url()],
        max_response_bytes: 10_000,
        ..PdClientConfig::default()
    })
    .unwrap();
    let (text, _) = all_failed(c.stores().await.unwrap_err());
    assert!(text.contains("response larger than 10000 bytes"), "{text}");
    // Small bodies still pass under the same limit.
    assert_eq!(c.health().await.unwrap().len(), 3);
}

/// A server without Content-Length that streams far more than the limit: the client must stop
/// reading at the limit instead of buffering everything.
#[tokio::test]
async fn oversized_streamed_body_is_cut_off() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    // Returns how much it sent and why it stopped: the client hanging up (a reset or broken
    // pipe), or a write blocked for a minute (a client that stopped reading but kept the
    // connection open).
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        conn.set_write_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        let mut reader = BufReader::new(conn.try_clone().unwrap());
        let mut line = String::new();
        while reader.read_line(&mut line).unwrap_or(0) > 2 {
            line.clear();
        }
        let _ = conn.write_all(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n[",
        );
        let chunk = vec![b' '; 16 * 1024];
        let mut sent = 0usize;
        // Bounded: at most 64 MiB, or until the client hangs up.
        while sent < 64 << 20 {
            if let Err(e) = conn.write_all(&chunk) {
                return (sent, Some(e.kind()));
            }
            sent += chunk.len();
        }
        (sent, None)
    });
    let c = PdClient::new(PdClientConfig {
        endpoints: vec![format!("http://{addr}")],
        max_response_bytes: 100_000,
        ..PdClientConfig::default()
    })
    .unwrap();
    let (text, _) = all_failed(c.stores().await.unwrap_err());
    assert!(text.contains("response larger than 100000 bytes"), "{text}");
    let received = c.response_bytes_total();
    assert!(
        (100_000..=300_000).contains(&received),
        "received {received}"
    );
    // The aborted connection is closed: the server's writes fail because the client hung up,
    // not because they blocked until the write timeout.
    let (sent, stopped) = tokio::task::spawn_blocking(move || server.join().unwrap())
        .await
        .unwrap();
    assert!(
        matches!(
            stopped,
            Some(std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe)
        ),
        "server stopped with {stopped:?} after {sent} bytes"
    );
    assert!(sent < 64 << 20, "client kept reading: {sent}");
}

#[tokio::test]
async fn counters_count_attempts_and_body_bytes() {
    let pd = FakePd::start();
    pd.respond_with("/pd/api/v1/health", Response::json(samples::HEALTH));
    let dead = dead_url();
    let c = client(&[dead, pd.url()]);
    assert_eq!((c.requests_total(), c.response_bytes_total()), (0, 0));
    c.health().await.unwrap();
    assert_eq!(c.requests_total(), 2);
    assert_eq!(c.response_bytes_total(), samples::HEALTH.len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_are_shared_across_tasks() {
    let pd = FakePd::with_stores(&fake_pd::cluster(3));
    let c = client_for(&pd);
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(async move { c.stores().await.map(|s| s.len()) })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap(), 3);
    }
    assert_eq!(c.requests_total(), 8);
    assert_eq!(pd.requests_to("/pd/api/v1/stores"), 8);
}

#[tokio::test]
async fn regions_are_never_requested() {
    let pd = FakePd::with_stores(&fake_pd::cluster(10));
    let c = client_for(&pd);
    c.stores().await.unwrap();
    c.members().await.unwrap();
    c.leader().await.unwrap();
    c.health().await.unwrap();
    c.max_store_down_time().await.unwrap();
    assert_eq!(pd.request_count(), 5);
    assert!(!pd.regions_requested(), "{:?}", pd.paths());
    assert!(pd.requests().iter().all(|r| r.method == "GET"));
}

#[tokio::test]
async fn pd_restarting_on_the_same_port() {
    let mut pd = FakePd::start();
    let c = client_for(&pd);
    c.stores().await.unwrap();
    pd.stop();
    let (text, _) = all_failed(c.stores().await.unwrap_err());
    assert!(text.contains("connect error"), "{text}");
    pd.restart();
    assert_eq!(c.stores().await.unwrap().len(), 2);
}

// ---------------------------------------------------------------------------------------------
// TLS

fn tls_client(endpoint: String, tls: PdTls) -> Result<PdClient, PdError> {
    PdClient::new(PdClientConfig {
        endpoints: vec![endpoint],
        timeout: support::wait::PATIENCE,
        tls: Some(tls),
        ..PdClientConfig::default()
    })
}

#[tokio::test]
async fn mutual_tls() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::generate("fake PD CA");
    let files = pki.write_to(dir.path());
    let pd = FakePd::start_tls(pki.server_acceptor());
    assert!(pd.url().starts_with("https://"));

    // With the CA and a client certificate: works; a bare host:port becomes https://.
    let good = PdTls {
        ca_file: Some(files.ca.clone()),
        cert_file: Some(files.client_cert.clone()),
        key_file: Some(files.client_key.clone()),
    };
    let c = tls_client(pd.addr().to_string(), good.clone()).unwrap();
    assert_eq!(c.endpoints(), [pd.url()]);
    assert_eq!(c.stores().await.unwrap().len(), 2);
    assert_eq!(c.members().await.unwrap().members.len(), 3);
    assert_eq!(pd.request_count(), 2);

    // Without a client certificate the server refuses the handshake.
    let c = tls_client(
        pd.url(),
        PdTls {
            ca_file: Some(files.ca.clone()),
            cert_file: None,
            key_file: None,
        },
    )
    .unwrap();
    let (text, _) = all_failed(c.stores().await.unwrap_err());
    assert!(text.contains(&pd.url()), "{text}");
    // rustls reports the server's alert, e.g. "received fatal alert: CertificateRequired".
    assert!(text.to_lowercase().contains("certificate"), "{text}");

    // Trusting another CA: the server certificate is rejected.
    let other_dir = tempfile::tempdir().unwrap();
    let other = Pki::generate("some other CA").write_to(other_dir.path());
    let c = tls_client(
        pd.url(),
        PdTls {
            ca_file: Some(other.ca.clone()),
            ..good.clone()
        },
    )
    .unwrap();
    let (text, _) = all_failed(c.stores().await.unwrap_err());
    assert!(text.contains("certificate"), "{text}");

    // Plain HTTP to the TLS port fails too.
    let (text, _) = all_failed(
        client(&[format!("http://{}", pd.addr())])
            .stores()
            .await
            .unwrap_err(),
    );
    assert!(text.contains(&format!("http://{}", pd.addr())), "{text}");

    // Only the good client's requests reached the HTTP layer.
    assert_eq!(pd.request_count(), 2);
}

#[test]
fn tls_file_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let files = Pki::generate("ca").write_to(dir.path());
    let good = PdTls {
        ca_file: Some(files.ca.clone()),
        cert_file: Some(files.client_cert.clone()),
        key_file: Some(files.client_key.clone()),
    };
    let err = |tls: PdTls| -> String {
        tls_client("https://127.0.0.1:1".into(), tls)
            .unwrap_err()
            .to_string()
    };
    assert!(tls_client("https://127.0.0.1:1".into(), good.clone()).is_ok());

    let missing: PathBuf = dir.path().join("nope/client.pem");
    let e = err(PdTls {
        cert_file: Some(missing.clone()),
        ..good.clone()
    });
    assert!(e.contains(&missing.display().to_string()), "{e}");
    assert!(e.contains("certificate file"), "{e}");

    let e = err(PdTls {
        ca_file: Some(dir.path().join("missing-ca.pem")),
        ..good.clone()
    });
    assert!(e.contains("missing-ca.pem") && e.contains("CA file"), "{e}");

    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate\n").unwrap();
    let e = err(PdTls {
        ca_file: Some(junk.clone()),
        ..good.clone()
    });
    assert!(
        e.contains("junk.pem") && e.contains("no PEM certificate"),
        "{e}"
    );
    let e = err(PdTls {
        key_file: Some(junk.clone()),
        ..good.clone()
    });
    assert!(e.contains("junk.pem") && e.contains("key file"), "{e}");

    // A key that does not belong to the certificate.
    let other_dir = tempfile::tempdir().unwrap();
    let other = Pki::generate("other").write_to(other_dir.path());
    let e = err(PdTls {
        key_file: Some(other.client_key.clone()),
        ..good.clone()
    });
    assert!(
        e.contains(&other.client_key.display().to_string()) && e.contains("does not match"),
        "{e}"
    );

    let e = err(PdTls {
        key_file: None,
        ..good.clone()
    });
    assert!(e.contains("without a key file"), "{e}");
}

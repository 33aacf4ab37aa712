//! End to end: the exporter binary's observation API against the fake PD — `/api/v1/stores`
//! and `/api/v1/cluster` (from the published snapshot, never a PD call), `/api/v1/hot-regions`
//! (from PD's `/hotspot/regions/*` on request, one PD request per type per poll however many
//! calls, strict shapes, bounded bodies) and the landing page's stores table.

mod support;

use serde_json::{Value, json};
use support::exporter::Exporter;
use support::fake_pd::hotspot::{Kind, peer};
use support::fake_pd::{FakePd, StoreSpec, cluster};
use support::http::Response;
use support::wait::PATIENCE;

/// The exporter on `pd` polling once an hour (so one poll is all a test sees) with `yaml` added.
fn start(pd: &FakePd, dir: &tempfile::TempDir, yaml: &str) -> Exporter {
    Exporter::start_with_config(dir, &config(pd, yaml))
}

/// `yaml` goes under `pd:`.
fn config(pd: &FakePd, yaml: &str) -> String {
    format!(
        "pd:\n  endpoints: [{}]\n  timeout: 2s\n{yaml}poll_interval: 1h\n",
        pd.url()
    )
}

/// Stores 1–3 and TiFlash 20; region 100 written on 1 (leader), 2 and 3, region 101 on 1,
/// region 102 read on 2.
fn hot_pd() -> FakePd {
    let mut specs = cluster(3);
    specs.push(StoreSpec::tiflash(20));
    let pd = FakePd::with_live_stores(&specs);
    pd.set_leader_count(1, 10);
    pd.set_leader_count(2, 20);
    pd.set_leader_count(3, 30);
    pd.edit_hotspot(|h| {
        h.peers = vec![
            peer(Kind::Write, 100, 1, true, 1_048_576.0),
            peer(Kind::Write, 100, 2, false, 1_048_576.0),
            peer(Kind::Write, 100, 3, false, 1_048_576.0),
            peer(Kind::Write, 101, 1, true, 4_194_304.0),
            peer(Kind::Read, 102, 2, true, 2048.0),
        ]
    });
    pd
}

fn get_json(e: &Exporter, path: &str) -> (u16, Value) {
    let (code, ctype, body) = e.get(path);
    assert_eq!(ctype, "application/json", "{path}: {body}");
    (code, serde_json::from_str(&body).unwrap())
}

#[test]
fn stores_and_cluster_are_served_from_the_snapshot_with_units_and_reasons() {
    let pd = hot_pd();
    let dir = tempfile::tempdir().unwrap();
    let e = start(&pd, &dir, "");
    pd.clear_requests();
    let (code, v) = get_json(&e, "/api/v1/stores");
    assert_eq!(code, 200);
    assert_eq!(v["pd_unavailable"], json!(null));
    let stores = v["stores"].as_array().unwrap();
    let ids: Vec<&str> = stores.iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["1", "2", "3", "20"]);
    let s1 = &stores[0];
    assert_eq!(s1["state"], "Up");
    assert_eq!(s1["engine"], "tikv");
    assert_eq!(s1["leaders"], 10);
    assert_eq!(
        s1["hot_write"],
        json!({"regions": 2.0, "bytes_per_second": 5_242_880.0, "keys_per_second": 5120.0})
    );
    assert_eq!(
        s1["hot_read"],
        json!({"regions": 0.0, "bytes_per_second": 0.0, "keys_per_second": 0.0})
    );
    assert_eq!(s1["hot_unavailable"], json!(null));
    assert_eq!(stores[1]["hot_read"]["bytes_per_second"], 2048.0);
    for k in [
        "capacity_bytes",
        "available_bytes",
        "regions",
        "slow_score",
        "version",
    ] {
        assert!(!s1[k].is_null(), "{k} in {s1}");
    }
    let names: Vec<&str> = s1["invariants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"store_down"), "{names:?}");

    let (code, c) = get_json(&e, "/api/v1/cluster");
    assert_eq!(code, 200);
    assert_eq!(c["stores"]["total"], 4);
    assert_eq!(c["stores"]["by_state"]["Up"], 4);
    assert_eq!(c["stores"]["by_state"]["Down"], 0);
    // Up TiKV stores: 10, 20, 30 leaders.
    assert_eq!(
        c["leaders"],
        json!({"stores": 3, "min": 10, "max": 30, "mean": 20.0,
               "stddev": (200.0f64 / 3.0).sqrt(), "max_min_ratio": 3.0})
    );
    assert_eq!(c["pd"]["leader"], pd.member_name());
    assert_eq!(c["region_health"]["down-peer-region-count"], 0.0);
    let gc_age = c["gc_safepoint"]["age_seconds"].as_f64().unwrap();
    assert!((540.0..700.0).contains(&gc_age), "{c}");
    assert!(c["min_resolved_ts"]["age_seconds"].as_f64().unwrap() < 120.0);
    assert_eq!(c["sources_down"], json!({}));
    // Neither endpoint asked PD anything.
    assert_eq!(pd.request_count(), 0, "{:?}", pd.paths());

    // The landing page: the same stores, escaped, with links to the API.
    let (code, _, page) = e.get("/");
    assert_eq!(code, 200);
    assert!(page.contains("<h2>Stores</h2>"), "{page}");
    assert!(
        page.contains("<td>1</td><td>tikv-1:20160</td><td>Up</td><td>10</td>"),
        "{page}"
    );
    assert!(page.contains("5.0 MiB/s in 2 regions"), "{page}");
    for link in [
        "/api/v1/stores",
        "/api/v1/cluster",
        "/api/v1/hot-regions?type=write",
    ] {
        assert!(page.contains(&format!("href=\"{link}\"")), "{link}");
    }
}

#[test]
fn hot_regions_are_fetched_once_per_type_and_poll_and_strictly_parsed() {
    let pd = hot_pd();
    let dir = tempfile::tempdir().unwrap();
    let e = start(&pd, &dir, "");
    let write = "/pd/api/v1/hotspot/regions/write";
    let read = "/pd/api/v1/hotspot/regions/read";
    assert_eq!(pd.requests_to(write), 0, "never polled");
    let (code, v) = get_json(&e, "/api/v1/hot-regions?type=write&limit=1");
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["type"], "write");
    assert_eq!(v["limit"], 1);
    let s1 = &v["stores"][0];
    assert_eq!(s1["store"], "1");
    assert_eq!(s1["hot_regions"], 2);
    assert_eq!(s1["total_flow_bytes_per_second"], 5_242_880.0);
    // The hottest only: region 101, with its id in the JSON (never in a label).
    assert_eq!(
        s1["regions"],
        json!([{"region_id": 101, "flow_bytes_per_second": 4_194_304.0,
                "flow_keys_per_second": 4096.0, "is_leader": true, "hot_degree": 15,
                "stores": [1]}])
    );
    assert_eq!(v["stores"][2]["regions"][0]["region_id"], 100);
    // Many calls, one PD request for this poll; calls made while the fetch is under way wait
    // for it (PD answers in 300 ms).
    pd.delay(std::time::Duration::from_millis(300));
    std::thread::scope(|s| {
        for path in [
            "type=write",
            "type=read",
            "type=read",
            "type=read",
            "type=read",
        ] {
            let e = &e;
            s.spawn(move || {
                let (code, v) = get_json(e, &format!("/api/v1/hot-regions?{path}"));
                assert_eq!((code, v["limit"].as_u64()), (200, Some(10)), "{v}");
            });
        }
    });
    assert_eq!((pd.requests_to(write), pd.requests_to(read)), (1, 1));
    let (_, v) = get_json(&e, "/api/v1/hot-regions?type=read");
    assert_eq!(v["stores"][1]["regions"][0]["region_id"], 102);
    assert!(!e.metrics().contains("region_id"));

    // Bad queries: 400 saying what is accepted, and no PD request.
    for (query, why) in [
        ("", "type is required"),
        ("?type=hot", "type must be write or read"),
        (
            "?type=write&limit=500",
            "limit must be an integer from 1 to 100",
        ),
    ] {
        let (code, v) = get_json(&e, &format!("/api/v1/hot-regions{query}"));
        assert_eq!(code, 400, "{query}");
        assert!(v["error"].as_str().unwrap().contains(why), "{query}: {v}");
    }
    assert_eq!(pd.requests_to(write) + pd.requests_to(read), 2);
}

#[test]
fn a_hot_regions_reply_above_the_body_limit_is_a_502_that_says_so() {
    let pd = FakePd::with_live_stores(&cluster(1));
    pd.edit_hotspot(|h| {
        h.peers = (0..400)
            .map(|r| peer(Kind::Write, r, 1, true, 1024.0 + r as f64))
            .collect()
    });
    let dir = tempfile::tempdir().unwrap();
    let e = start(&pd, &dir, "  max_response_bytes: 65536\n");
    let (code, v) = get_json(&e, "/api/v1/hot-regions?type=write");
    assert_eq!(code, 502, "{v}");
    let why = v["error"].as_str().unwrap();
    assert!(why.contains("response larger than 65536 bytes"), "{why}");
    // A reply of the wrong shape: 502 with the reason (never an empty list), kept for the
    // poll too.
    let read = "/pd/api/v1/hotspot/regions/read";
    pd.respond_with(read, Response::json("{}"));
    for _ in 0..2 {
        let (code, v) = get_json(&e, "/api/v1/hot-regions?type=read");
        assert_eq!(code, 502);
        let why = v["error"].as_str().unwrap();
        assert!(why.contains("`as_peer` is null or missing"), "{why}");
    }
    assert_eq!(pd.requests_to(read), 1);
    // The rest of the exporter is unaffected (the stores list is small).
    let (code, v) = get_json(&e, "/api/v1/stores");
    assert_eq!((code, v["stores"][0]["id"].as_str()), (200, Some("1")));
}

#[test]
fn after_a_reload_hot_regions_are_asked_of_the_new_pd() {
    let (a, b) = (hot_pd(), hot_pd());
    let dir = tempfile::tempdir().unwrap();
    let e = start(&a, &dir, "");
    let write = "/pd/api/v1/hotspot/regions/write";
    assert_eq!(get_json(&e, "/api/v1/hot-regions?type=write").0, 200);
    let (_, before) = get_json(&e, "/api/v1/stores");
    std::fs::write(dir.path().join("config.yml"), config(&b, "")).unwrap();
    let (code, _, body) = e.request("POST", "/-/reload");
    assert_eq!((code, body.as_str()), (200, "configuration reloaded\n"));
    // A reload is polled at once: the next snapshot is B's.
    let deadline = std::time::Instant::now() + PATIENCE;
    while get_json(&e, "/api/v1/stores").1["taken_at_seconds"] == before["taken_at_seconds"] {
        assert!(
            std::time::Instant::now() < deadline,
            "no poll after the reload"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(get_json(&e, "/api/v1/hot-regions?type=write").0, 200);
    assert_eq!((a.requests_to(write), b.requests_to(write)), (1, 1));
}

//! Leadership classification: every event kind from real and template lines, with region,
//! stores and term; the old prototype's keywords; and the look-alike lines that are not events.

use tikv_health_exporter::logs::events::{Classifier, EventKind, LeadershipEvent};
use tikv_health_exporter::logs::parse::parse_line;

const FIXTURE: &str = include_str!("data/tikv-pd-real-lines.log");

fn classify(line: &str) -> Option<LeadershipEvent> {
    let l = parse_line(line.as_bytes()).unwrap_or_else(|e| panic!("{e}: {line}"));
    Classifier::new().classify(&l)
}

fn ev(
    kind: EventKind,
    region_id: Option<u64>,
    from_store: Option<u64>,
    to_store: Option<u64>,
    term: Option<u64>,
) -> Option<LeadershipEvent> {
    Some(LeadershipEvent {
        kind,
        region_id,
        from_store,
        to_store,
        term,
    })
}

use EventKind::*;

#[test]
fn every_event_in_the_real_fixture() {
    let got: Vec<(usize, LeadershipEvent)> = FIXTURE
        .lines()
        .enumerate()
        .filter_map(|(i, l)| {
            let parsed = parse_line(l.as_bytes()).ok()?;
            Classifier::new().classify(&parsed).map(|e| (i + 1, e))
        })
        .collect();
    let e = |kind, region, from, to, term| LeadershipEvent {
        kind,
        region_id: region,
        from_store: from,
        to_store: to,
        term,
    };
    let expected = vec![
        (9, e(BecameFollower, Some(44), None, None, Some(5))),
        (13, e(ElectionStarted, Some(44), None, None, Some(5))),
        (19, e(BecameLeader, Some(44), None, None, Some(6))),
        (21, e(ElectionStarted, Some(32832), None, None, Some(7))),
        (25, e(BecameLeader, Some(32832), None, None, Some(8))),
        (27, e(ElectionStarted, Some(319305), None, None, Some(8))),
        (30, e(ElectionStarted, Some(319305), None, None, Some(8))),
        (74, e(PdLeaderChanged, None, None, None, None)),
        (76, e(PdLeaderChanged, None, None, None, None)),
        (77, e(PdLeaderChanged, None, None, None, None)),
        (78, e(PdLeaderChanged, None, None, None, None)),
        (87, e(PdLeaderChanged, None, None, None, None)),
        (88, e(PdLeaderChanged, None, None, None, None)),
        (89, e(PdLeaderChanged, None, None, None, None)),
        (93, e(LeaderChanged, Some(1232323), Some(1), Some(2), None)),
        (
            100,
            e(TransferLeader, Some(2641161), Some(1), Some(5), None),
        ),
        (101, e(LeaderChanged, Some(2641161), Some(1), Some(5), None)),
    ];
    assert_eq!(got, expected);
}

#[test]
fn raft_rs_templates() {
    assert_eq!(
        classify(
            r#"[2024/07/12 09:26:10.005 +00:00] [INFO] [raft.rs:874] ["became leader at term 6"] [term=6] [raft_id=45] [region_id=44]"#
        ),
        ev(BecameLeader, Some(44), None, None, Some(6))
    );
    // Term read from the message when there is no `term` field.
    assert_eq!(
        classify(
            r#"[2024/07/12 09:26:10.005 +00:00] [INFO] [raft.rs:783] ["became follower at term 17"] [region_id=9]"#
        ),
        ev(BecameFollower, Some(9), None, None, Some(17))
    );
    // Older raft-rs tags the message with the region; the id comes from the tag.
    assert_eq!(
        classify(
            r#"[2019/10/09 06:44:47.545 +08:00] [INFO] [raft.rs:732] ["[region 76] 77 became follower at term 7"]"#
        ),
        ev(BecameFollower, Some(76), None, None, Some(7))
    );
    assert_eq!(
        classify(
            r#"[2019/10/09 06:44:47.545 +08:00] [INFO] [raft.rs:900] ["[region 76] 77 is starting a new election at term 7"]"#
        ),
        ev(ElectionStarted, Some(76), None, None, None)
    );
    assert_eq!(
        classify(
            r#"[2024/07/12 09:26:10.005 +00:00] [INFO] [raft.rs:1080] ["stepped down to follower since quorum is not active"] [raft_id=5] [region_id=4]"#
        ),
        ev(StepDown, Some(4), None, None, None)
    );
    assert_eq!(
        classify(
            r#"[2024/07/12 09:26:10.005 +00:00] [INFO] [raft.rs:1502] ["[term 9] starts to transfer leadership to 12"] [lead_transferee=12] [term=9] [raft_id=10] [region_id=8]"#
        ),
        ev(TransferLeader, Some(8), None, None, Some(9))
    );
}

#[test]
fn escaped_messages_are_classified_on_their_decoded_text() {
    assert_eq!(
        classify(
            r#"[2024/07/12 09:26:10.005 +00:00] [INFO] [raft.rs:874] ["became \u006ceader at term 5"] [region_id=3]"#
        ),
        ev(BecameLeader, Some(3), None, None, Some(5))
    );
}

/// One transfer of region 32832 from store A (peer 32833) to store B (peer 32835) with PD
/// retrying its command twice, as both TiKVs log it (cluster-signals.md §11.1: B's lines are
/// real, from pingcap/tiflow#4762; A's are built from the raft-rs and TiKV v8.5 templates; the
/// `ack transfer leader` line is the real v7.5.6 shape from tikv/tikv#18476).
const ONE_TRANSFER: &[&str] = &[
    // Store A, the old leader: raftstore logs each PD retry, raft-rs starts the transfer once.
    r#"[2022/03/01 19:09:54.600 +08:00] [INFO] [peer.rs:4521] ["transfer leader"] [peer="id: 32835 store_id: 4"] [peer_id=32833] [region_id=32832]"#,
    r#"[2022/03/01 19:09:54.610 +08:00] [INFO] [raft.rs:1502] ["[term 7] starts to transfer leadership to 32835"] [lead_transferee=32835] [term=7] [raft_id=32833] [region_id=32832]"#,
    r#"[2022/03/01 19:09:54.610 +08:00] [INFO] [raft.rs:1540] ["sends MsgTimeoutNow to 32835 immediately as 32835 already has up-to-date log"] [lead_transferee=32835] [raft_id=32833] [region_id=32832]"#,
    r#"[2022/03/01 19:09:54.612 +08:00] [INFO] [peer.rs:4521] ["transfer leader"] [peer="id: 32835 store_id: 4"] [peer_id=32833] [region_id=32832]"#,
    r#"[2022/03/01 19:09:54.612 +08:00] [INFO] [raft.rs:1495] ["[term 7] transfer leadership to 32835 is in progress, ignores request to same node 32835"] [raft_id=32833] [region_id=32832]"#,
    r#"[2022/03/01 19:09:54.620 +08:00] [INFO] [raft.rs:1330] ["received a message with higher term from 32835"] ["msg type"=MsgRequestVote] [message_term=8] [term=7] [from=32835] [raft_id=32833] [region_id=32832]"#,
    r#"[2022/03/01 19:09:54.620 +08:00] [INFO] [raft.rs:1126] ["became follower at term 8"] [term=8] [raft_id=32833] [region_id=32832]"#,
    // Store B, the new leader.
    r#"[2024/07/12 09:26:10.000 +00:00] [INFO] [peer.rs:3412] ["ack transfer leader"] [applied_index=266314] [committed_index=266314] [persist_index=266314] [last_index=266314] [reply_cmd=false] [to_peer=32833] [from_peer=32835] [region_id=32832] [thread_id=211]"#,
    r#"[2024/07/12 09:26:10.001 +00:00] [INFO] [peer.rs:3412] ["ack transfer leader"] [applied_index=266314] [committed_index=266314] [persist_index=266314] [last_index=266314] [reply_cmd=false] [to_peer=32833] [from_peer=32835] [region_id=32832] [thread_id=211]"#,
    r#"[2022/03/01 19:09:54.620 +08:00] [INFO] [raft.rs:2300] ["[term 7] received MsgTimeoutNow from 32833 and starts an election to get leadership."] [from=32833] [term=7] [raft_id=32835] [region_id=32832]"#,
    r#"[2022/03/01 19:09:54.620 +08:00] [INFO] [raft.rs:1513] ["starting a new election"] [term=7] [raft_id=32835] [region_id=32832]"#,
    r#"[2022/03/01 19:09:54.620 +08:00] [INFO] [raft.rs:1112] ["became candidate at term 8"] [term=8] [raft_id=32835] [region_id=32832]"#,
    r#"[2022/03/01 19:09:54.629 +08:00] [INFO] [raft.rs:1196] ["became leader at term 8"] [term=8] [raft_id=32835] [region_id=32832]"#,
];

#[test]
fn one_leader_transfer_counts_once_whatever_pd_retries() {
    let mut counts = std::collections::BTreeMap::new();
    for l in ONE_TRANSFER {
        if let Some(e) = classify(l) {
            *counts.entry(e.kind.as_str()).or_insert(0) += 1;
        }
    }
    assert_eq!(
        counts,
        [
            ("became_follower", 1),
            ("became_leader", 1),
            ("election_started", 1),
            ("transfer_leader", 1),
        ]
        .into()
    );
    assert_eq!(
        classify(ONE_TRANSFER[1]),
        ev(TransferLeader, Some(32832), None, None, Some(7))
    );
    // TiKV's own `transfer leader` repeats on every PD retry: not counted.
    assert_eq!(classify(ONE_TRANSFER[0]), None);
}

#[test]
fn pd_region_leader_lines() {
    assert_eq!(
        classify(
            r#"[2021/08/09 14:18:44.429 +00:00] [INFO] [region.go:762] ["leader changed"] [region-id=77] [from=4] [to=5]"#
        ),
        ev(LeaderChanged, Some(77), Some(4), Some(5), None)
    );
    assert_eq!(
        classify(
            r#"[2022/06/28 14:30:55.329 +00:00] [INFO] [operator_controller.go:620] ["send schedule command"] [region-id=12] [step="transfer leader from store 7 to store 9"] [source=create]"#
        ),
        ev(TransferLeader, Some(12), Some(7), Some(9), None)
    );
}

#[test]
fn pd_own_leadership_messages() {
    for msg in [
        "start to campaign PD leader",
        "start to campaign pd leader",
        "campaign PD leader ok",
        "pd leader has changed, try to re-campaign a pd leader",
        "the pd leader has not changed, delete and campaign again",
        "current leadership is deleted",
        "try to resign etcd leader to next pd-server",
    ] {
        let line = format!(r#"[2024/05/29 19:11:44.072 +08:00] [INFO] [server.go:1] ["{msg}"]"#);
        assert_eq!(
            classify(&line),
            ev(PdLeaderChanged, None, None, None, None),
            "{msg}"
        );
    }
    // PD with log.format = "json" (real line).
    assert_eq!(
        classify(
            r#"{"level":"INFO","time":"2025/09/10 21:12:15.014 +00:00","caller":"server.go:1732","message":"campaign PD leader ok","campaign-leader-name":"pd-0"}"#
        ),
        ev(PdLeaderChanged, None, None, None, None)
    );
}

#[test]
fn old_prototype_keywords_are_all_covered() {
    // "transfer leader", "leader changed", "became leader", "step down", "leader election".
    let kinds: Vec<_> = [
        r#"[2024/07/12 09:26:10.005 +00:00] [INFO] [raft.rs:1] ["[term 2] starts to transfer leadership to 3"] [region_id=1]"#,
        r#"[2024/07/12 09:26:10.005 +00:00] [INFO] [cluster.go:1] ["leader changed"] [region-id=1] [from=1] [to=2]"#,
        r#"[2024/07/12 09:26:10.005 +00:00] [INFO] [raft.rs:1] ["became leader at term 3"] [region_id=1]"#,
        r#"[2024/07/12 09:26:10.005 +00:00] [INFO] [raft.rs:1] ["leader step down"] [region_id=1]"#,
        r#"[2024/05/29 19:11:43.071 +08:00] [INFO] [leadership.go:374] ["current leadership is deleted"] [revision=836215] [leader-key=/pd/7369932708090718560/leader] [purpose="leader election"]"#,
    ]
    .iter()
    .map(|l| classify(l).map(|e| e.kind))
    .collect();
    assert_eq!(
        kinds,
        vec![
            Some(TransferLeader),
            Some(LeaderChanged),
            Some(BecameLeader),
            Some(StepDown),
            Some(PdLeaderChanged)
        ]
    );
}

#[test]
fn look_alikes_are_not_events() {
    for line in [
        // "peer is not leader" inside a field, message is error-response.
        r#"[2022/06/28 14:31:12.585 +00:00] [WARN] [endpoint.rs:537] [error-response] [err="Region error (will back off and retry) message: \"peer is not leader for region 2641161\""]"#,
        // PD follower polling every 200 ms.
        r#"[2024/05/29 19:11:43.076 +08:00] [INFO] [server.go:1692] ["skip campaigning of pd leader and check later"] [server-name=tc-pd-2]"#,
        // Candidate states are part of an election already counted by election_started.
        r#"[2024/07/12 09:26:10.005 +00:00] [INFO] [raft.rs:807] ["became candidate at term 6"] [term=6] [region_id=44]"#,
        r#"[2024/07/12 09:26:10.005 +00:00] [INFO] [raft.rs:833] ["became pre-candidate at term 5"] [term=5] [region_id=44]"#,
        // Followed by "starting a new election", counted there.
        r#"[2022/03/01 19:09:54.620 +08:00] [INFO] [raft.rs:2300] ["[term 7] received MsgTimeoutNow from 32833 and starts an election to get leadership."] [from=32833] [term=7] [region_id=32832]"#,
        // PD operator lifecycle: the step line counts the transfer once.
        r#"[2022/06/28 14:30:55.329 +00:00] [INFO] [operator_controller.go:424] ["add operator"] [region-id=2641161] [operator="\"transfer-hot-read-leader {transfer leader: store 1 to 5}\""] ["additional info"=]"#,
        r#"[2022/06/28 14:30:55.329 +00:00] [INFO] [operator_controller.go:732] ["send schedule command"] [region-id=5] [step="add learner peer 7 on store 166543141"] [source=create]"#,
        r#"[2024/01/15 02:55:44.604 +00:00] [INFO] [lease.go:66] ["lease granted"] [lease-id=6177967866903092454] [purpose="leader election"]"#,
        r#"[2023/06/23 17:04:54.631 +00:00] [INFO] [server.go:1578] ["API service leader is ready to serve"] [leader-name=serverless-cluster-pd-1]"#,
        r#"[2024/07/12 09:26:10.005 +00:00] [INFO] [peer.rs:1] ["reject to transfer leader"] [region_id=1]"#,
    ] {
        assert_eq!(classify(line), None, "{line}");
    }
}

#[test]
fn names_and_indexes_are_a_dense_closed_set() {
    let names: Vec<_> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
    assert_eq!(
        names,
        [
            "became_leader",
            "became_follower",
            "election_started",
            "leader_changed",
            "transfer_leader",
            "step_down",
            "pd_leader_changed"
        ]
    );
    for (i, k) in EventKind::ALL.iter().enumerate() {
        assert_eq!(k.index(), i);
    }
}

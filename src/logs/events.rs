//! Classifies parsed log lines into the closed set of leadership events.
//!
//! | event | lines (message, exact phrase) |
//! |---|---|
//! | `became_leader` | raft-rs `became leader at term N` |
//! | `became_follower` | raft-rs `became follower at term N` |
//! | `election_started` | raft-rs `starting a new election` |
//! | `leader_changed` | PD `leader changed` (`region-id`, `from`, `to` store ids) |
//! | `transfer_leader` | PD `send schedule command` whose `step` is `transfer leader from store X to store Y` (PD's log); raft-rs `[term N] starts to transfer leadership to P` (the old leader's TiKV log) |
//! | `step_down` | `stepped down to follower ...`, `step down` |
//! | `pd_leader_changed` | PD's own leader messages: `start to campaign PD leader`, `campaign PD leader ok`, `pd leader has changed, try to re-campaign ...`, `... delete and campaign again`, `current leadership is deleted` (PD's `purpose="leader election"`), `... resign ... leader ...`. Not `skip campaigning of pd leader and check later`, which repeats every 200 ms on followers. |
//!
//! Each real transfer is counted once per log: in TiKV's log by raft-rs's `starts to transfer
//! leadership`, printed once by the old leader when raft starts the transfer (a repeated request
//! while it is in progress logs `... is in progress, ignores request ...` instead), and in PD's
//! log by the schedule step. TiKV's own `transfer leader` (raftstore `peer.rs`) and `ack
//! transfer leader` lines are not counted: both repeat on every retry PD sends for the same
//! transfer (cluster-signals.md §11). The new leader's `became leader at term N` counts as
//! `became_leader`, once per term.
//!
//! Lines that only mention leaders in passing (`peer is not leader`, PD `add operator` /
//! `operator finish` describing a transfer that its `send schedule command` step already counts,
//! `became candidate`, `MsgTimeoutNow ... starts an election` which is followed by
//! `starting a new election`) are not events.

use std::borrow::Cow;

use memchr::memmem;

use super::parse::{LogLine, parse_u64};

/// One kind of leadership event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventKind {
    /// A raft peer became leader of its region.
    BecameLeader,
    /// A raft peer became follower of its region.
    BecameFollower,
    /// A raft peer started an election.
    ElectionStarted,
    /// PD saw a region's leader move between stores.
    LeaderChanged,
    /// A leader transfer was scheduled or started.
    TransferLeader,
    /// A leader stepped down.
    StepDown,
    /// PD's own leadership was campaigned for, lost or resigned.
    PdLeaderChanged,
}

impl EventKind {
    /// Every kind, in the order of [`EventKind::index`].
    pub const ALL: [EventKind; 7] = [
        EventKind::BecameLeader,
        EventKind::BecameFollower,
        EventKind::ElectionStarted,
        EventKind::LeaderChanged,
        EventKind::TransferLeader,
        EventKind::StepDown,
        EventKind::PdLeaderChanged,
    ];

    /// The label value / JSON name (`became_leader`).
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::BecameLeader => "became_leader",
            EventKind::BecameFollower => "became_follower",
            EventKind::ElectionStarted => "election_started",
            EventKind::LeaderChanged => "leader_changed",
            EventKind::TransferLeader => "transfer_leader",
            EventKind::StepDown => "step_down",
            EventKind::PdLeaderChanged => "pd_leader_changed",
        }
    }

    /// Dense index in `0..EventKind::ALL.len()`, for per-event counter arrays.
    pub fn index(self) -> usize {
        self as usize
    }
}

impl serde::Serialize for EventKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// A classified leadership event with the identifiers found on its line; serializes as
/// `"event", "region_id", "from_store", "to_store", "term"` (nulls where unknown).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct LeadershipEvent {
    /// What happened.
    #[serde(rename = "event")]
    pub kind: EventKind,
    /// Region id from `region_id` / `region-id` (or a legacy `[region N]` message tag).
    pub region_id: Option<u64>,
    /// Store the leadership moved from, where the line says.
    pub from_store: Option<u64>,
    /// Store the leadership moved to, where the line says.
    pub to_store: Option<u64>,
    /// Raft term, where the line says.
    pub term: Option<u64>,
}

/// Words one of which every leadership message contains; anything else is rejected by a
/// single pass of a prebuilt searcher per keyword.
struct Prefilter {
    lead: memmem::Finder<'static>,
    elect: memmem::Finder<'static>,
    follow: memmem::Finder<'static>,
    step: memmem::Finder<'static>,
}

impl Prefilter {
    fn new() -> Self {
        Prefilter {
            lead: memmem::Finder::new("lead"),
            elect: memmem::Finder::new("elect"),
            follow: memmem::Finder::new("follow"),
            step: memmem::Finder::new("step"),
        }
    }

    fn may_match(&self, msg: &[u8]) -> bool {
        self.lead.find(msg).is_some()
            || self.elect.find(msg).is_some()
            || self.follow.find(msg).is_some()
            || self.step.find(msg).is_some()
    }
}

/// Stateless classifier; build once and reuse (it holds prebuilt substring searchers).
pub struct Classifier {
    prefilter: Prefilter,
}

impl Default for Classifier {
    fn default() -> Self {
        Self::new()
    }
}

impl Classifier {
    /// Builds the classifier.
    pub fn new() -> Self {
        Classifier {
            prefilter: Prefilter::new(),
        }
    }

    /// Classifies one parsed line; `None` when it is not a leadership event.
    pub fn classify(&self, line: &LogLine<'_>) -> Option<LeadershipEvent> {
        let msg_tok = line.message?;
        // Escapes are rare in messages; decode those before looking for keywords.
        let msg: Cow<'_, [u8]> = msg_tok.bytes();
        // PD's schedule step is the only event whose message does not name it.
        if *msg == *b"send schedule command" {
            return self.schedule_step(line);
        }
        if !self.prefilter.may_match(&msg) {
            return None;
        }
        let kind = message_kind(&msg)?;
        let mut ev = LeadershipEvent {
            kind,
            region_id: None,
            from_store: None,
            to_store: None,
            term: None,
        };
        for f in line.fields() {
            let key = f.key.raw();
            match key {
                b"region_id" | b"region-id" if ev.region_id.is_none() => {
                    ev.region_id = f.value.to_u64()
                }
                b"term" if ev.term.is_none() => ev.term = f.value.to_u64(),
                b"from" if kind == EventKind::LeaderChanged => ev.from_store = f.value.to_u64(),
                b"to" if kind == EventKind::LeaderChanged => ev.to_store = f.value.to_u64(),
                _ => {}
            }
        }
        if ev.region_id.is_none() {
            ev.region_id = number_after(&msg, b"[region ");
        }
        if ev.term.is_none() && matches!(kind, EventKind::BecameLeader | EventKind::BecameFollower)
        {
            ev.term = number_after(&msg, b"at term ");
        }
        Some(ev)
    }

    fn schedule_step(&self, line: &LogLine<'_>) -> Option<LeadershipEvent> {
        let mut region_id = None;
        let mut step = None;
        for f in line.fields() {
            match f.key.raw() {
                b"region-id" | b"region_id" => region_id = f.value.to_u64(),
                b"step" => step = Some(f.value.bytes()),
                _ => {}
            }
        }
        let step = step?;
        let rest = step.strip_prefix(b"transfer leader from store ")?;
        Some(LeadershipEvent {
            kind: EventKind::TransferLeader,
            region_id,
            from_store: number_after(rest, b""),
            to_store: number_after(rest, b" to store "),
            term: None,
        })
    }
}

/// The event named by a (decoded) message, if any.
fn message_kind(msg: &[u8]) -> Option<EventKind> {
    let has = |needle: &str| memmem::find(msg, needle.as_bytes()).is_some();
    if has("became leader at term") {
        return Some(EventKind::BecameLeader);
    }
    if has("became follower at term") {
        return Some(EventKind::BecameFollower);
    }
    if has("starting a new election") {
        return Some(EventKind::ElectionStarted);
    }
    if msg == b"leader changed" {
        return Some(EventKind::LeaderChanged);
    }
    if has("starts to transfer leadership") {
        return Some(EventKind::TransferLeader);
    }
    if has("stepped down to follower") || has("step down") {
        return Some(EventKind::StepDown);
    }
    let lower = msg.to_ascii_lowercase();
    let lhas = |needle: &str| memmem::find(&lower, needle.as_bytes()).is_some();
    if lhas("leader")
        && !lhas("skip campaigning")
        && (lhas("campaign") || lhas("resign") || lhas("leadership is deleted"))
    {
        return Some(EventKind::PdLeaderChanged);
    }
    None
}

/// The decimal number right after the first occurrence of `prefix` in `s`.
fn number_after(s: &[u8], prefix: &[u8]) -> Option<u64> {
    let at = memmem::find(s, prefix)? + prefix.len();
    let digits = s[at..].iter().take_while(|c| c.is_ascii_digit()).count();
    parse_u64(&s[at..at + digits])
}

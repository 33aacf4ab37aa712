//! PD's own members, their health, and the parts of PD's schedule configuration the invariants
//! follow.

use std::time::Duration;

/// PD members as listed by `GET /pd/api/v1/members`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Members {
    /// All members.
    pub members: Vec<Member>,
    /// The PD (TSO) leader, if any.
    pub leader: Option<Member>,
    /// The etcd leader, if any (normally the same member as `leader`).
    pub etcd_leader: Option<Member>,
}

/// One PD member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// Member name, e.g. `pd-10.0.2.64-2379`.
    pub name: String,
    /// etcd member id (may exceed `i64::MAX`).
    pub member_id: u64,
    /// Client URLs the member advertises.
    pub client_urls: Vec<String>,
}

/// One PD member's health as listed by `GET /pd/api/v1/health`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberHealth {
    /// Member name.
    pub name: String,
    /// etcd member id.
    pub member_id: u64,
    /// Whether PD could reach the member.
    pub health: bool,
}

/// PD's own health, from every configured member's `/members` (asked with the follower-handle
/// header, so each answers from its own state) and one member's `/health`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PdHealth {
    /// The PD leader most answering members report.
    pub leader: Option<Member>,
    /// The etcd leader most answering members report.
    pub etcd_leader: Option<Member>,
    /// Other PD leaders some members report (members disagree, e.g. during an election).
    pub other_leaders: Vec<String>,
    /// Number of PD members in the member list.
    pub members: usize,
    /// Configured endpoints that answered `/members`.
    pub answered: usize,
    /// Configured endpoints asked.
    pub asked: usize,
    /// Names of members `/health` reports unhealthy; `None` when `/health` could not be read.
    pub unhealthy: Option<Vec<String>>,
}

/// What the invariants read from PD's `GET /pd/api/v1/config/schedule`; each `None` when absent
/// or not usable.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ScheduleConfig {
    /// `max-store-down-time`: how long a Disconnected store stays before PD marks it Down.
    pub max_store_down_time: Option<Duration>,
    /// `high-space-ratio` (default 0.7): above this used fraction PD avoids the store.
    pub high_space_ratio: Option<f64>,
    /// `low-space-ratio` (default 0.8): above this used fraction the store is low on space.
    pub low_space_ratio: Option<f64>,
}

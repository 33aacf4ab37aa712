//! PD's own members and their health.

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

/// PD's own health as seen by `/members` and `/health`.
#[derive(Clone, Debug, PartialEq)]
pub struct PdHealth {
    /// Name of the PD leader, if there is one.
    pub leader: Option<String>,
    /// Names of members that `/health` reports unhealthy.
    pub unhealthy: Vec<String>,
    /// Number of members.
    pub members: usize,
}

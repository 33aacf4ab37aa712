//! PD stores: what `GET /pd/api/v1/stores` says about one TiKV or TiFlash store.

use std::fmt;

/// A store's state as PD names it in `state_name` (open-ended: new names become `Other`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreState {
    /// Serving and heartbeating.
    Up,
    /// Being removed (scale-in in progress).
    Offline,
    /// Removed.
    Tombstone,
    /// No heartbeat for more than 20 s (but not yet `Down`).
    Disconnected,
    /// No heartbeat for longer than `max-store-down-time` (30 min by default).
    Down,
    /// A state name this client does not know, kept verbatim.
    Other(String),
}

impl StoreState {
    /// Maps a PD `state_name` (case-insensitive for the known names) to a state.
    pub fn from_name(name: &str) -> StoreState {
        let known = [
            ("Up", StoreState::Up),
            ("Offline", StoreState::Offline),
            ("Tombstone", StoreState::Tombstone),
            ("Disconnected", StoreState::Disconnected),
            ("Down", StoreState::Down),
        ];
        for (n, s) in known {
            if name.eq_ignore_ascii_case(n) {
                return s;
            }
        }
        StoreState::Other(name.to_owned())
    }

    /// `"Up"`, `"Offline"`, `"Tombstone"`, `"Disconnected"`, `"Down"` or the raw unknown name.
    pub fn as_str(&self) -> &str {
        match self {
            StoreState::Up => "Up",
            StoreState::Offline => "Offline",
            StoreState::Tombstone => "Tombstone",
            StoreState::Disconnected => "Disconnected",
            StoreState::Down => "Down",
            StoreState::Other(s) => s,
        }
    }
}

impl fmt::Display for StoreState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One store (TiKV or TiFlash) as listed by `GET /pd/api/v1/stores`.
#[derive(Clone, Debug, PartialEq)]
pub struct Store {
    /// Store id.
    pub id: u64,
    /// Address TiKV serves gRPC on.
    pub address: String,
    /// Address of TiKV's status/metrics HTTP server (empty when PD does not report it).
    pub status_address: String,
    /// Version as reported (TiFlash has a `v` prefix, TiKV not).
    pub version: String,
    /// PD's derived state (`state_name`).
    pub state: StoreState,
    /// PD gave no `state_name`: `state` comes from the metapb `state` int, which never says
    /// Disconnected or Down (only the heartbeat can tell).
    pub state_inferred: bool,
    /// Store labels in PD's order.
    pub labels: Vec<(String, String)>,
    /// Last heartbeat, unix nanoseconds (from `last_heartbeat`, else from `last_heartbeat_ts`).
    pub last_heartbeat_ns: Option<u64>,
    /// Process start, unix seconds (from `start_timestamp`, else from `start_ts`).
    pub start_timestamp: Option<u64>,
    /// Capacity in bytes (lossy: PD prints 4 significant digits).
    pub capacity_bytes: Option<u64>,
    /// Available bytes (lossy like `capacity_bytes`).
    pub available_bytes: Option<u64>,
    /// Used bytes (lossy like `capacity_bytes`).
    pub used_bytes: Option<u64>,
    /// Number of region leaders on the store.
    pub leader_count: Option<u64>,
    /// Number of region peers on the store.
    pub region_count: Option<u64>,
    /// PD's slow score (1 = healthy, >= 80 = slow); absent on old PD.
    pub slow_score: Option<f64>,
}

impl Store {
    /// A store with only an id and a state (every other field empty or unknown).
    pub fn new(id: u64, state: StoreState) -> Store {
        Store {
            id,
            address: String::new(),
            status_address: String::new(),
            version: String::new(),
            state,
            state_inferred: false,
            labels: Vec::new(),
            last_heartbeat_ns: None,
            start_timestamp: None,
            capacity_bytes: None,
            available_bytes: None,
            used_bytes: None,
            leader_count: None,
            region_count: None,
            slow_score: None,
        }
    }

    /// An Up store with these addresses (tests).
    #[cfg(test)]
    pub(crate) fn at(id: u64, address: &str, status_address: &str) -> Store {
        Store {
            address: address.into(),
            status_address: status_address.into(),
            ..Store::new(id, StoreState::Up)
        }
    }

    /// The `engine` label's value (e.g. `"tiflash"`), or `"tikv"` when the store has none.
    pub fn engine(&self) -> &str {
        self.labels
            .iter()
            .find(|(k, _)| k == "engine")
            .map(|(_, v)| v.as_str())
            .unwrap_or("tikv")
    }

    /// Whether this is a TiFlash store (engine `tiflash`, also `tiflash_compute`).
    pub fn is_tiflash(&self) -> bool {
        self.engine()
            .get(..7)
            .is_some_and(|p| p.eq_ignore_ascii_case("tiflash"))
    }
}

/// The host part of a PD address: `tikv-1:20160` → `tikv-1`, `http://[::1]:20180` → `::1`.
pub fn host_of(addr: &str) -> &str {
    let a = addr.split_once("://").map_or(addr, |(_, rest)| rest);
    let a = a.split('/').next().unwrap_or(a);
    if let Some(rest) = a.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match a.rsplit_once(':') {
        Some((h, port)) if !h.contains(':') && port.bytes().all(|c| c.is_ascii_digit()) => h,
        _ => a,
    }
}

//! `basic_auth_users`: user names and bcrypt hashes (`$2a$`, `$2b$`, `$2y$`, as `htpasswd -nBC`
//! writes them), checked as the toolkit's `web/handler.go` does, with two differences that
//! keep its intent:
//!
//! - Only *verified* credentials are cached (a digest of user, hash and password; at most
//!   [`CACHE_SIZE`]), so a scrape with the right password costs one bcrypt (~70 ms at cost 10)
//!   once, and a stream of wrong passwords cannot evict them; every failed check runs bcrypt.
//! - An unknown user is checked against a hash of the configured users' highest cost (the
//!   toolkit uses a fixed cost-10 hash), so a failed check is not faster for unknown users.
//!
//! One bcrypt runs at a time (it is CPU-bound; the toolkit serialises it too), on a blocking
//! thread so the server keeps answering.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::str::FromStr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use base64::Engine as _;
use hyper::header::HeaderValue;

use crate::config::{ConfigError, Secret};

/// bcrypt's cost range (Go's `bcrypt.MinCost`/`MaxCost`; verifying outside it fails).
const MIN_COST: u32 = 4;
const MAX_COST: u32 = 31;

/// How many verified credentials are kept (the toolkit's cache size).
pub(crate) const CACHE_SIZE: usize = 100;

/// `basic_auth_users`, validated.
#[derive(Debug)]
pub(crate) struct Users {
    /// Hash by user name.
    hashes: HashMap<String, String>,
    /// A hash no password matches, at the highest cost among `hashes`.
    dummy: String,
}

impl Users {
    /// The users of the file; `None` when there are none (no authentication, as in the toolkit).
    pub(crate) fn new(users: &BTreeMap<String, Secret>) -> Result<Option<Users>, ConfigError> {
        if users.is_empty() {
            return Ok(None);
        }
        let mut hashes = HashMap::new();
        let mut max_cost = MIN_COST;
        for (name, hash) in users {
            let key = format!("basic_auth_users.{name}");
            if name.contains(':') {
                return Err(ConfigError::new(
                    key,
                    "a user name cannot contain ':' (basic auth splits user and password at the \
                     first one)",
                ));
            }
            let hash = hash.expose().trim();
            let parts = bcrypt::HashParts::from_str(hash).map_err(|e| {
                ConfigError::new(
                    &key,
                    format!(
                        "not a bcrypt hash ($2a$, $2b$ or $2y$; e.g. from \
                         `htpasswd -nBC 10 \"\" | tr -d ':\\n'`): {e}"
                    ),
                )
            })?;
            let cost = parts.get_cost();
            if !(MIN_COST..=MAX_COST).contains(&cost) {
                return Err(ConfigError::new(
                    key,
                    format!("bcrypt cost {cost} is outside {}..={}", MIN_COST, MAX_COST),
                ));
            }
            max_cost = max_cost.max(cost);
            hashes.insert(name.clone(), hash.to_owned());
        }
        Ok(Some(Users {
            hashes,
            dummy: dummy_hash(max_cost),
        }))
    }

    /// How many users.
    pub(crate) fn len(&self) -> usize {
        self.hashes.len()
    }
}

/// A well-formed bcrypt hash at `cost` that no password matches (an all-zero digest).
fn dummy_hash(cost: u32) -> String {
    format!("$2b${cost:02}${}", ".".repeat(53))
}

/// The user and password of an `Authorization: Basic` header (Go's `Request.BasicAuth`).
fn credentials(header: &HeaderValue) -> Option<(Vec<u8>, Vec<u8>)> {
    let v = header.as_bytes();
    const PREFIX: &[u8] = b"Basic ";
    if v.len() < PREFIX.len() || !v[..PREFIX.len()].eq_ignore_ascii_case(PREFIX) {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(&v[PREFIX.len()..])
        .ok()?;
    let colon = decoded.iter().position(|&b| b == b':')?;
    Some((decoded[..colon].to_vec(), decoded[colon + 1..].to_vec()))
}

/// The cache key of (user, hash, password): a SHA-256 digest, so no password is kept.
fn cache_key(user: &[u8], hash: &str, password: &[u8]) -> [u8; 32] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for part in [user, hash.as_bytes()] {
        ctx.update(&(part.len() as u64).to_be_bytes());
        ctx.update(part);
    }
    ctx.update(password);
    let mut key = [0u8; 32];
    key.copy_from_slice(ctx.finish().as_ref());
    key
}

/// Checks basic auth credentials: the cache of verified ones, and one bcrypt at a time.
#[derive(Debug)]
pub(crate) struct Verifier {
    verified: Mutex<HashSet<[u8; 32]>>,
    bcrypt: tokio::sync::Semaphore,
    /// How many bcrypt verifications ran (for tests and the curious).
    runs: AtomicU64,
    /// The cost of the last one.
    last_cost: AtomicU32,
}

impl Verifier {
    /// An empty cache.
    pub(crate) fn new() -> Verifier {
        Verifier {
            verified: Mutex::new(HashSet::new()),
            bcrypt: tokio::sync::Semaphore::new(1),
            runs: AtomicU64::new(0),
            last_cost: AtomicU32::new(0),
        }
    }

    fn is_verified(&self, key: &[u8; 32]) -> bool {
        self.verified
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(key)
    }

    fn remember(&self, key: [u8; 32]) {
        let mut set = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        if set.len() >= CACHE_SIZE {
            // A HashSet's iteration order is randomised per process: an arbitrary entry.
            if let Some(old) = set.iter().next().copied() {
                set.remove(&old);
            }
        }
        set.insert(key);
    }

    /// Whether `authorization` (the request's header) names a user of `users` with its
    /// password.
    pub(crate) async fn check(&self, users: &Users, authorization: Option<HeaderValue>) -> bool {
        let Some((user, password)) = authorization.as_ref().and_then(credentials) else {
            return false;
        };
        let known = std::str::from_utf8(&user)
            .ok()
            .and_then(|u| users.hashes.get(u));
        let hash = known.unwrap_or(&users.dummy).clone();
        let key = cache_key(&user, &hash, &password);
        if self.is_verified(&key) {
            return true;
        }
        let Ok(_permit) = self.bcrypt.acquire().await else {
            return false;
        };
        // Verified by another request while this one waited.
        if self.is_verified(&key) {
            return true;
        }
        self.runs.fetch_add(1, Ordering::Relaxed);
        if let Ok(parts) = bcrypt::HashParts::from_str(&hash) {
            self.last_cost.store(parts.get_cost(), Ordering::Relaxed);
        }
        let matched =
            tokio::task::spawn_blocking(move || bcrypt::verify(&password, &hash).unwrap_or(false))
                .await
                .unwrap_or(false);
        let ok = matched && known.is_some();
        if ok {
            self.remember(key);
        }
        ok
    }

    /// How many bcrypt verifications ran, and the cost of the last one.
    #[cfg(test)]
    pub(crate) fn runs(&self) -> (u64, u32) {
        (
            self.runs.load(Ordering::Relaxed),
            self.last_cost.load(Ordering::Relaxed),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn users(list: &[(&str, &str)]) -> Result<Option<Users>, ConfigError> {
        Users::new(
            &list
                .iter()
                .map(|(u, h)| (u.to_string(), Secret::from(*h)))
                .collect(),
        )
    }

    fn basic(user: &str, password: &str) -> Option<HeaderValue> {
        let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        Some(HeaderValue::from_str(&format!("Basic {b64}")).unwrap())
    }

    #[test]
    fn hashes_of_every_bcrypt_prefix_are_accepted_and_others_named() {
        let h = bcrypt::hash_with_salt("pw", 4, [7; 16]).unwrap();
        for v in [
            bcrypt::Version::TwoA,
            bcrypt::Version::TwoB,
            bcrypt::Version::TwoY,
        ] {
            let u = users(&[("alice", &h.format_for_version(v))])
                .unwrap()
                .unwrap();
            assert_eq!(u.len(), 1);
        }
        let e = users(&[("bob", "plaintext")]).unwrap_err();
        assert_eq!(e.key, "basic_auth_users.bob");
        assert!(e.message.contains("not a bcrypt hash"), "{e}");
        assert!(
            !e.message.contains("plaintext"),
            "the value is not shown: {e}"
        );
        let e = users(&[("a:b", &h.to_string())]).unwrap_err();
        assert_eq!(e.key, "basic_auth_users.a:b");
        let high = h.to_string().replacen("$04$", "$32$", 1);
        let e = users(&[("carol", &high)]).unwrap_err();
        assert!(e.message.contains("cost 32"), "{e}");
        assert!(users(&[]).unwrap().is_none(), "no users: no authentication");
    }

    #[test]
    fn the_dummy_hash_is_well_formed_and_matches_nothing() {
        let d = dummy_hash(5);
        assert_eq!(bcrypt::HashParts::from_str(&d).unwrap().get_cost(), 5);
        assert!(!bcrypt::verify("", &d).unwrap());
        assert!(!bcrypt::verify("fakepassword", &d).unwrap());
    }

    #[test]
    fn credentials_follow_go_basic_auth() {
        let (u, p) = credentials(&basic("al:ice", "x").unwrap()).unwrap();
        assert_eq!((u.as_slice(), p.as_slice()), (&b"al"[..], &b"ice:x"[..]));
        let lower = HeaderValue::from_static("basic dTpw");
        assert_eq!(credentials(&lower).unwrap(), (b"u".to_vec(), b"p".to_vec()));
        for bad in ["Bearer dTpw", "Basic", "Basic !!!", "Basic dXNlcg=="] {
            assert!(
                credentials(&HeaderValue::from_static(bad)).is_none(),
                "{bad}"
            );
        }
    }

    /// The right password costs one bcrypt, then none; a wrong one and an unknown user each
    /// cost one at the users' cost, every time; a changed hash is verified again.
    #[tokio::test]
    async fn verified_credentials_are_cached_and_failures_always_pay() {
        let h = bcrypt::hash_with_salt("right", 6, [1; 16])
            .unwrap()
            .to_string();
        let u = users(&[("alice", &h)]).unwrap().unwrap();
        let v = Verifier::new();
        assert!(!v.check(&u, None).await, "no header");
        assert_eq!(v.runs(), (0, 0), "no header: no bcrypt");
        assert!(v.check(&u, basic("alice", "right")).await);
        assert!(v.check(&u, basic("alice", "right")).await);
        assert_eq!(v.runs(), (1, 6), "verified once, then cached");
        assert!(!v.check(&u, basic("alice", "wrong")).await);
        assert!(!v.check(&u, basic("alice", "wrong")).await);
        assert_eq!(v.runs(), (3, 6), "a failure is never cached");
        assert!(!v.check(&u, basic("mallory", "right")).await);
        assert_eq!(
            v.runs(),
            (4, 6),
            "unknown user: a bcrypt at the users' cost"
        );
        let h2 = bcrypt::hash_with_salt("new", 6, [2; 16])
            .unwrap()
            .to_string();
        let u2 = users(&[("alice", &h2)]).unwrap().unwrap();
        assert!(!v.check(&u2, basic("alice", "right")).await, "old password");
        assert!(v.check(&u2, basic("alice", "new")).await);
        assert_eq!(v.runs().0, 6);
    }

    /// Timing: a check for an unknown user takes as long as a wrong password for a known one
    /// (same bcrypt cost), far longer than a cached success. Minimums of interleaved samples,
    /// with a factor of 2 of margin for a loaded machine.
    #[tokio::test]
    async fn unknown_users_fail_no_faster_than_wrong_passwords() {
        let h = bcrypt::hash_with_salt("right", 8, [3; 16])
            .unwrap()
            .to_string();
        let u = users(&[("alice", &h)]).unwrap().unwrap();
        let v = Verifier::new();
        let (mut unknown, mut wrong) = (Duration::MAX, Duration::MAX);
        for _ in 0..3 {
            let t = Instant::now();
            assert!(!v.check(&u, basic("mallory", "x")).await);
            unknown = unknown.min(t.elapsed());
            let t = Instant::now();
            assert!(!v.check(&u, basic("alice", "x")).await);
            wrong = wrong.min(t.elapsed());
        }
        assert!(v.check(&u, basic("alice", "right")).await);
        let mut cached = Duration::MAX;
        for _ in 0..3 {
            let t = Instant::now();
            assert!(v.check(&u, basic("alice", "right")).await);
            cached = cached.min(t.elapsed());
        }
        assert!(
            unknown * 2 >= wrong,
            "unknown {unknown:?} vs wrong {wrong:?}"
        );
        assert!(cached * 10 < wrong, "cached {cached:?} vs bcrypt {wrong:?}");
    }
}

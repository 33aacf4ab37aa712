//! Bounded waits on a condition, sized for a loaded 2-core machine.
//!
//! Tests never sleep for a fixed time and then assert: they wait (bounded) for the condition
//! itself, or for a positive marker that can only appear after the thing under test has
//! happened. A bound is only reached when something is broken, so bounds are generous: a
//! process, Prometheus or a container can take many seconds to start while another build
//! keeps both cores busy.

use std::time::{Duration, Instant};

/// The bound for one wait on a process start, a server becoming ready, a scrape, a rule
/// evaluation or a state change. Only a broken test or product reaches it.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// Polls `check` until it returns `Ok`, at most `timeout`; then panics with `what` and the
/// last `Err` (what was seen instead). The first check runs at once; later ones back off from
/// 10 ms to 250 ms.
pub fn until<T>(what: &str, timeout: Duration, check: impl FnMut() -> Result<T, String>) -> T {
    until_or(what, timeout, check, String::new)
}

/// [`until`], adding `diag()` (logs, say: only read when the wait fails) to the panic message.
pub fn until_or<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Result<T, String>,
    diag: impl FnOnce() -> String,
) -> T {
    let start = Instant::now();
    let mut pause = Duration::from_millis(10);
    loop {
        let last = match check() {
            Ok(v) => return v,
            Err(seen) => seen,
        };
        if start.elapsed() >= timeout {
            panic!(
                "timed out after {timeout:?} waiting for {what}; last seen:\n{last}\n{}",
                diag()
            );
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(250));
    }
}

/// [`until`] for a condition without a value: `check` returns whether it holds, `seen`
/// describes the state for the timeout message.
pub fn until_true(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> bool,
    seen: impl Fn() -> String,
) {
    until(what, timeout, || if check() { Ok(()) } else { Err(seen()) })
}

/// Now as Unix seconds (the clock the exporter's timestamps use).
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

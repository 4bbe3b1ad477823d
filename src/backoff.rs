//! Retry delays: exponential backoff with jitter, one formula for every retry in the loader
//! (REST requests, archive downloads, WebSocket reconnects), each with its own base and cap.

use std::time::Duration;

use rand::Rng;

/// The wait before retry number `failures`: `base` doubled per failure (at most 2^7 times) up
/// to `cap`, then a random point in its upper half, so clients that failed together do not
/// retry together.
pub fn jittered(base: Duration, cap: Duration, failures: u32) -> Duration {
    let base_ms = base.as_millis() as u64;
    let ceiling = base_ms
        .saturating_mul(1 << failures.min(7))
        .min(cap.as_millis() as u64);
    Duration::from_millis(rand::rng().random_range(ceiling / 2..=ceiling))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_and_caps() {
        let (base, cap) = (Duration::from_millis(100), Duration::from_secs(10));
        assert!(jittered(base, cap, 1) <= Duration::from_millis(200));
        assert!(jittered(base, cap, 20) <= cap);
        assert!(jittered(base, cap, 20) >= cap / 2);
    }
}

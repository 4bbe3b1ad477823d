//! What a venue's REST client spends, in the terms every venue shares: requests, the venue's
//! request weight (one a request where the venue counts requests, not weight), the answers that
//! slow it down or ban it, and the budget it paces itself by. The job's report, telemetry and
//! metrics read these without naming the venue.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Counters a job reports (telemetry, metrics, the final summary).
#[derive(Debug, Default)]
pub struct RestStats {
    pub requests: AtomicU64,
    pub weight: AtomicU64,
    /// "Too many requests": the venue asked to slow down (Binance 429; Bybit 429 or retCode
    /// 10006).
    pub responses_429: AtomicU64,
    /// The venue banned the address for a while (Binance 418, Bybit 403).
    pub responses_418: AtomicU64,
    pub responses_5xx: AtomicU64,
    pub transport_errors: AtomicU64,
    pub retries: AtomicU64,
}

impl RestStats {
    pub fn bump(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }

    /// Counts a request that failed in transport and says how, for the retry's log line.
    pub fn transport_failure(&self, e: &reqwest::Error) -> String {
        Self::bump(&self.transport_errors);
        let kind = if e.is_timeout() {
            "timed out"
        } else if e.is_connect() {
            "connection failed"
        } else {
            "connection dropped"
        };
        format!("{kind}: {e}")
    }

    /// Counts retry number `failures` of `path` and waits before it: 100 ms doubling to 10 s,
    /// with jitter.
    pub async fn back_off(&self, path: &str, failures: u32, last_error: &str) {
        Self::bump(&self.retries);
        let delay = crate::backoff::jittered(
            Duration::from_millis(100),
            Duration::from_secs(10),
            failures,
        );
        tracing::warn!(path, attempt = failures, delay_ms = delay.as_millis() as u64, error = %last_error, "retrying request");
        tokio::time::sleep(delay).await;
    }
}

/// The request budget a venue's client paces itself by: what it may spend in a window (its
/// share of the venue's limit) and what it spent in the current one.
pub trait RequestBudget: Send + Sync {
    fn used(&self) -> u32;
    fn budget(&self) -> u32;
    fn window(&self) -> Duration;
}

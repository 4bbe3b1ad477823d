//! What a venue's REST client spends, in the terms every venue shares: requests, the venue's
//! request weight (one a request where the venue counts requests, not weight), the answers that
//! slow it down or ban it, and the budget it paces itself by. The job's report, telemetry and
//! metrics read these without naming the venue.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

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

/// At most `budget` requests in any `window` (sliding) as the venue receives them, whichever
/// way it counts its window (Bybit's IP limit, OKX's limit of each endpoint). A request arrives somewhere between being sent and its answer,
/// so it holds its place from being sent until `window` after its answer: counting send times
/// alone let a slow answer's request and one sent a window later arrive within one window
/// (the benchmark's busiest 5 s once held 305 of a budget of 300, and at the whole budget Bybit
/// answered 403). A venue's pause (Bybit's `retCode` 10006) holds every request back.
pub struct RequestWindow {
    budget: u32,
    window: Duration,
    sent: Mutex<Sent>,
    /// Wakes a request waiting while every place is taken by requests not yet answered.
    answered: tokio::sync::Notify,
}

struct Sent {
    /// Requests sent and not answered yet.
    in_flight: u32,
    /// When the answers of the last window came (completion order is time order).
    answered: VecDeque<Instant>,
    /// No request before this (after `retCode` 10006).
    paused_until: Option<Instant>,
}

/// A request's place in the window, from sending it until it is dropped (its answer read, or
/// the request abandoned): its place is then kept for a window more.
pub struct Place<'a>(&'a RequestWindow);

impl Drop for Place<'_> {
    fn drop(&mut self) {
        {
            let mut sent = self.0.lock();
            sent.in_flight -= 1;
            sent.answered.push_back(Instant::now());
        }
        self.0.answered.notify_waiters();
    }
}

impl RequestWindow {
    /// A share of `limit` requests in any `window`.
    pub fn new(limit: u32, window: Duration, share: f64) -> Self {
        let budget = ((f64::from(limit) * share).floor() as u32).max(1);
        RequestWindow {
            budget,
            window,
            sent: Mutex::new(Sent {
                in_flight: 0,
                answered: VecDeque::with_capacity(budget as usize),
                paused_until: None,
            }),
            answered: tokio::sync::Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Sent> {
        self.sent.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until a request may go out; it holds its place while the [`Place`] lives.
    pub async fn acquire(&self) -> Place<'_> {
        loop {
            let notified = self.answered.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let wait_until = {
                let mut sent = self.lock();
                let now = Instant::now();
                while sent
                    .answered
                    .front()
                    .is_some_and(|t| now.duration_since(*t) >= self.window)
                {
                    sent.answered.pop_front();
                }
                let taken = sent.in_flight as usize + sent.answered.len();
                match sent.paused_until.filter(|t| *t > now) {
                    Some(t) => Some(t),
                    None if taken < self.budget as usize => {
                        sent.in_flight += 1;
                        return Place(self);
                    }
                    // Every place is taken by requests not answered yet: the next answer frees
                    // one a window later.
                    None => sent.answered.front().map(|t| *t + self.window),
                }
            };
            match wait_until {
                Some(t) => tokio::time::sleep_until(t).await,
                None => notified.await,
            }
        }
    }

    /// No request for `d`.
    pub fn pause(&self, d: Duration) {
        let mut sent = self.lock();
        let until = Instant::now() + d;
        sent.paused_until = Some(sent.paused_until.map_or(until, |t| t.max(until)));
    }
}

impl RequestBudget for RequestWindow {
    fn used(&self) -> u32 {
        let sent = self.lock();
        let now = Instant::now();
        let recent = sent
            .answered
            .iter()
            .filter(|t| now.duration_since(**t) < self.window)
            .count() as u32;
        sent.in_flight + recent
    }

    fn budget(&self) -> u32 {
        self.budget
    }

    fn window(&self) -> Duration {
        self.window
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: Duration = Duration::from_secs(5);

    #[tokio::test(start_paused = true)]
    async fn no_window_holds_more_than_the_share() {
        let w = RequestWindow::new(600, WINDOW, 0.01); // 6 requests in 5 s
        let start = Instant::now();
        let mut sent = Vec::new();
        for _ in 0..20 {
            w.acquire().await;
            sent.push(Instant::now().duration_since(start));
        }
        for (i, t) in sent.iter().enumerate() {
            let in_window = sent[i..].iter().filter(|u| **u - *t < WINDOW).count();
            assert!(in_window <= 6, "{in_window} requests within 5 s of {t:?}");
        }
        assert_eq!(w.budget(), 6);
        // Requests not answered yet hold their places: the seventh waits for an answer, and
        // then for a window after it.
        tokio::time::sleep(Duration::from_secs(10)).await;
        let held: Vec<Place<'_>> = futures::future::join_all((0..6).map(|_| w.acquire())).await;
        assert_eq!(w.used(), 6);
        let answered_at = Instant::now() + Duration::from_secs(20);
        let answer = async {
            tokio::time::sleep_until(answered_at).await;
            drop(held);
        };
        let ((), ()) = tokio::join!(answer, async {
            w.acquire().await;
        });
        assert!(Instant::now() >= answered_at + WINDOW);
        w.pause(Duration::from_secs(30));
        let before = Instant::now();
        w.acquire().await;
        assert!(Instant::now().duration_since(before) >= Duration::from_secs(30));
    }
}

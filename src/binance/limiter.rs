//! The request-weight limiter: keeps this job under its share of Binance's per-IP weight budget.
//!
//! Binance counts request weight in fixed windows (one calendar minute in production) and reports
//! the count in `X-MBX-USED-WEIGHT-*` headers. The limiter reserves each request's weight before it
//! is sent, waits for the next window when the budget is spent, folds in the server's count (other
//! processes may share the IP) and stops everyone while a 429/418 `Retry-After` is running.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::Utc;

/// Weight budget state for one exchange endpoint group (one IP).
#[derive(Debug)]
pub struct WeightLimiter {
    budget: u32,
    window_ms: i64,
    /// Server clock minus local clock, in ms.
    clock_offset_ms: i64,
    /// Requests sent this close to a window's end may land in the next window at the server;
    /// they are counted in both.
    straddle_ms: i64,
    state: Mutex<State>,
    waited_ms: AtomicU64,
}

#[derive(Debug)]
struct State {
    window: i64,
    used: u32,
    next_window_carry: u32,
    paused_until: Option<Instant>,
}

/// A granted reservation: which window it was counted in.
#[derive(Debug, Clone, Copy)]
pub struct Grant {
    pub window: i64,
}

impl WeightLimiter {
    /// `limit` and `window` come from the exchange's `rateLimits`; `share` is RATE_LIMIT_SHARE.
    pub fn new(
        limit: u32,
        window: Duration,
        share: f64,
        clock_offset_ms: i64,
        rtt: Duration,
    ) -> Self {
        let budget = ((limit as f64) * share).floor().max(1.0) as u32;
        let window_ms = (window.as_millis() as i64).max(1);
        // One round trip of uncertainty on each side, at least 20 ms, never more than a tenth of the window.
        let straddle_ms = ((rtt.as_millis() as i64) + 20).min(window_ms / 10);
        WeightLimiter {
            budget,
            window_ms,
            clock_offset_ms,
            straddle_ms,
            state: Mutex::new(State {
                window: i64::MIN,
                used: 0,
                next_window_carry: 0,
                paused_until: None,
            }),
            waited_ms: AtomicU64::new(0),
        }
    }

    pub fn budget(&self) -> u32 {
        self.budget
    }

    pub fn window(&self) -> Duration {
        Duration::from_millis(self.window_ms as u64)
    }

    /// Total time requests spent waiting for budget or Retry-After.
    pub fn waited(&self) -> Duration {
        Duration::from_millis(self.waited_ms.load(Ordering::Relaxed))
    }

    fn server_now_ms(&self) -> i64 {
        Utc::now().timestamp_millis() + self.clock_offset_ms
    }

    /// Weight used in the current window as far as this process knows.
    pub fn used(&self) -> u32 {
        let now = self.server_now_ms();
        let st = self.state.lock().unwrap();
        if st.window == now - now.rem_euclid(self.window_ms) {
            st.used
        } else {
            0
        }
    }

    /// Waits until `weight` fits in the budget, then reserves it.
    pub async fn acquire(&self, weight: u32) -> Grant {
        let weight = weight.min(self.budget);
        let started = Instant::now();
        loop {
            let wait = {
                let mut st = self.state.lock().unwrap();
                let now_instant = Instant::now();
                match st.paused_until {
                    Some(until) if until > now_instant => until - now_instant,
                    _ => {
                        st.paused_until = None;
                        let now = self.server_now_ms();
                        let window = now - now.rem_euclid(self.window_ms);
                        if window != st.window {
                            let carry = if window == st.window + self.window_ms {
                                st.next_window_carry
                            } else {
                                0
                            };
                            st.window = window;
                            st.used = carry;
                            st.next_window_carry = 0;
                        }
                        let window_end = window + self.window_ms;
                        if st.used + weight <= self.budget {
                            st.used += weight;
                            if window_end - now <= self.straddle_ms {
                                st.next_window_carry += weight;
                            }
                            let waited = started.elapsed().as_millis() as u64;
                            if waited > 0 {
                                self.waited_ms.fetch_add(waited, Ordering::Relaxed);
                            }
                            return Grant { window };
                        }
                        // Start the next window a little late so the server has surely rolled over too.
                        Duration::from_millis((window_end - now + self.straddle_ms).max(1) as u64)
                    }
                }
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// Folds in the server's own count for the window the request was reserved in.
    pub fn observe_used(&self, grant: Grant, server_used: u32) {
        let mut st = self.state.lock().unwrap();
        if st.window == grant.window && server_used > st.used {
            st.used = server_used;
        }
    }

    /// Stops every request until `retry_after` has passed (429/418).
    pub fn pause(&self, retry_after: Duration) {
        let until = Instant::now() + retry_after;
        let mut st = self.state.lock().unwrap();
        if st.paused_until.is_none_or(|u| u < until) {
            st.paused_until = Some(until);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn never_grants_more_than_the_budget_per_window() {
        let lim = WeightLimiter::new(100, Duration::from_millis(200), 0.5, 0, Duration::ZERO);
        assert_eq!(lim.budget(), 50);
        let mut per_window = std::collections::BTreeMap::<i64, u32>::new();
        for _ in 0..40 {
            let g = lim.acquire(5).await;
            *per_window.entry(g.window).or_default() += 5;
        }
        assert!(per_window.len() >= 4, "{per_window:?}");
        assert!(per_window.values().all(|&w| w <= 50), "{per_window:?}");
    }

    #[tokio::test]
    async fn server_count_and_pause_are_honoured() {
        let lim = WeightLimiter::new(100, Duration::from_secs(3600), 1.0, 0, Duration::ZERO);
        let g = lim.acquire(10).await;
        lim.observe_used(g, 95);
        assert_eq!(lim.used(), 95);
        let lim2 = WeightLimiter::new(100, Duration::from_secs(3600), 1.0, 0, Duration::ZERO);
        lim2.pause(Duration::from_millis(150));
        let t = Instant::now();
        lim2.acquire(1).await;
        assert!(t.elapsed() >= Duration::from_millis(140));
    }
}

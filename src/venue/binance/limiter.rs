//! The request-weight limiter: keeps this job under its share of Binance's per-IP weight budget.
//!
//! Binance counts request weight in fixed windows (one calendar minute in production) and reports
//! the count in `X-MBX-USED-WEIGHT-*` headers. The limiter reserves each request's weight before it
//! is sent, waits for the next window when the budget is spent, folds in the server's count (other
//! processes may share the IP) and stops everyone while a 429/418 `Retry-After` is running.

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
}

#[derive(Debug)]
struct State {
    window: i64,
    /// Weight this window as far as this process knows: everything it reserved, raised to the
    /// server's count (plus what is still in flight) when a response says more was spent.
    used: u32,
    /// Requests of this window whose responses have not come back, by grant order: the
    /// server's count in a response cannot include the ones sent after that request.
    in_flight: Vec<(u64, u32)>,
    next_seq: u64,
    next_window_carry: u32,
    paused_until: Option<Instant>,
}

/// A granted reservation: which window it was counted in, how much it weighs, and its place in
/// the grant order.
#[derive(Debug, Clone, Copy)]
pub struct Grant {
    pub window: i64,
    pub weight: u32,
    seq: u64,
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
                in_flight: Vec::new(),
                next_seq: 0,
                next_window_carry: 0,
                paused_until: None,
            }),
        }
    }

    pub fn budget(&self) -> u32 {
        self.budget
    }

    pub fn clock_offset_ms(&self) -> i64 {
        self.clock_offset_ms
    }

    pub fn window(&self) -> Duration {
        Duration::from_millis(self.window_ms as u64)
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
                            st.in_flight.clear();
                            st.next_window_carry = 0;
                        }
                        let window_end = window + self.window_ms;
                        if st.used + weight <= self.budget {
                            st.used += weight;
                            let seq = st.next_seq;
                            st.next_seq += 1;
                            st.in_flight.push((seq, weight));
                            if window_end - now <= self.straddle_ms {
                                st.next_window_carry += weight;
                            }
                            return Grant {
                                window,
                                weight,
                                seq,
                            };
                        }
                        // Start the next window a little late so the server has surely rolled over too.
                        Duration::from_millis((window_end - now + self.straddle_ms).max(1) as u64)
                    }
                }
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// A reserved request is over. `server_used` is the server's count for the window from its
    /// response (`X-MBX-USED-WEIGHT-*`), absent when no response came. That count includes this
    /// request (and what other processes on the IP spent) but not the requests sent after it
    /// that are still in flight, so their weight is added on top: a reservation is never
    /// forgotten, and the ones the server has surely seen are not counted twice.
    pub fn complete(&self, grant: Grant, server_used: Option<u32>) {
        let mut st = self.state.lock().unwrap();
        if st.window != grant.window {
            return;
        }
        st.in_flight.retain(|(seq, _)| *seq != grant.seq);
        if let Some(server) = server_used {
            let unseen: u32 = st
                .in_flight
                .iter()
                .filter(|(seq, _)| *seq > grant.seq)
                .map(|(_, w)| w)
                .sum();
            st.used = st.used.max(server.saturating_add(unseen));
        }
    }

    /// Counts weight spent outside this limiter in the current window (the session set-up's
    /// requests, made before the exchange's own rule was known).
    pub fn carry(&self, weight: u32) {
        if weight == 0 {
            return;
        }
        let now = self.server_now_ms();
        let window = now - now.rem_euclid(self.window_ms);
        let mut st = self.state.lock().unwrap();
        if st.window != window {
            st.window = window;
            st.used = 0;
            st.in_flight.clear();
            st.next_window_carry = 0;
        }
        st.used = st.used.saturating_add(weight);
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

impl crate::venue::requests::RequestBudget for WeightLimiter {
    fn used(&self) -> u32 {
        WeightLimiter::used(self)
    }

    fn budget(&self) -> u32 {
        WeightLimiter::budget(self)
    }

    fn window(&self) -> Duration {
        WeightLimiter::window(self)
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
        let in_flight = lim.acquire(20).await;
        // The server saw 95 (other processes share the IP) including the first request; the
        // second is still in flight and must not be forgotten.
        lim.complete(g, Some(95));
        assert_eq!(lim.used(), 115);
        lim.complete(in_flight, Some(100));
        assert_eq!(lim.used(), 115);
        // A request sent earlier and still in flight is in the server's count already: it is
        // not counted twice (that would leave budget unused).
        let lim3 = WeightLimiter::new(100, Duration::from_secs(3600), 1.0, 0, Duration::ZERO);
        let (first, second) = (lim3.acquire(10).await, lim3.acquire(20).await);
        lim3.complete(second, Some(30));
        assert_eq!(lim3.used(), 30);
        lim3.complete(first, Some(30));
        assert_eq!(lim3.used(), 30);
        let lim2 = WeightLimiter::new(100, Duration::from_secs(3600), 1.0, 0, Duration::ZERO);
        lim2.pause(Duration::from_millis(150));
        let t = Instant::now();
        lim2.acquire(1).await;
        assert!(t.elapsed() >= Duration::from_millis(140));
    }
}

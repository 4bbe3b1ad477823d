//! The request-weight limiter: a fixed window aligned to the Unix epoch (like Binance's
//! per-minute counter), 429 once the budget is exceeded, strikes for requests sent after a 429,
//! and a 418 ban once the strikes run out.

use std::time::Duration;

/// How a limit window is described to clients: `intervalNum` and `interval` in `exchangeInfo`,
/// and the suffix of the `x-mbx-used-weight-<num><letter>` header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct WindowDesc {
    pub ms: i64,
    pub num: u64,
    pub unit: &'static str,
    pub letter: char,
}

impl WindowDesc {
    /// Describes `window`, rounded up to whole seconds (at least one), in the largest unit that
    /// divides it evenly.
    pub fn new(window: Duration) -> WindowDesc {
        let secs = window.as_millis().div_ceil(1000).max(1) as u64;
        let (unit, letter, unit_secs) = [
            ("DAY", 'd', 86_400),
            ("HOUR", 'h', 3_600),
            ("MINUTE", 'm', 60),
            ("SECOND", 's', 1),
        ]
        .into_iter()
        .find(|&(_, _, u)| secs % u == 0)
        .unwrap_or(("SECOND", 's', 1));
        WindowDesc {
            ms: secs as i64 * 1000,
            num: secs / unit_secs,
            unit,
            letter,
        }
    }

    /// `x-mbx-used-weight-1m` and the like.
    pub fn header_name(&self) -> String {
        format!("x-mbx-used-weight-{}{}", self.num, self.letter)
    }
}

/// What the limiter decided about one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Within budget: serve it.
    Accept,
    /// Over budget: HTTP 429, retry after this many seconds.
    TooMany { retry_after_secs: u64 },
    /// Banned (now or already): HTTP 418 until `until_ms`.
    Banned {
        until_ms: i64,
        retry_after_secs: u64,
    },
}

/// The outcome of [`Limiter::check`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Checked {
    pub verdict: Verdict,
    /// Weight counted in the current window, this request included.
    pub used: u64,
    /// Weight this request added to the budget.
    pub charged: u32,
}

#[derive(Debug)]
pub(crate) struct Limiter {
    limit: u64,
    window_ms: i64,
    strikes_before_ban: u32,
    ban_ms: i64,
    window: i64,
    used: u64,
    accepted: u64,
    max_accepted: u64,
    rejected_in_window: bool,
    strikes: u32,
    banned_until: i64,
}

fn ceil_secs(ms: i64) -> u64 {
    (ms.max(0) as u64).div_ceil(1000).max(1)
}

impl Limiter {
    pub fn new(limit: u32, window: &WindowDesc, strikes_before_ban: u32, ban: Duration) -> Self {
        Limiter {
            limit: u64::from(limit),
            window_ms: window.ms,
            strikes_before_ban,
            ban_ms: ban.as_millis().min(i64::MAX as u128 / 4) as i64,
            window: i64::MIN,
            used: 0,
            accepted: 0,
            max_accepted: 0,
            rejected_in_window: false,
            strikes: 0,
            banned_until: i64::MIN,
        }
    }

    /// Moves to the window of `now`. Windows only move forward: a request timed just before a
    /// concurrent one that already opened the next window counts in that newer window.
    fn roll(&mut self, now: i64) {
        let w = now.div_euclid(self.window_ms);
        if w > self.window {
            self.window = w;
            self.used = 0;
            self.accepted = 0;
            self.rejected_in_window = false;
            self.strikes = 0;
        }
    }

    /// Weight counted in the current window, without charging anything.
    pub fn used(&mut self, now: i64) -> u64 {
        self.roll(now);
        self.used
    }

    /// The highest accepted weight of any window so far.
    pub fn max_window_weight(&self) -> u64 {
        self.max_accepted
    }

    /// The ban in force at `now`, if any, as a verdict (nothing is charged).
    pub fn banned(&mut self, now: i64) -> Option<Verdict> {
        self.roll(now);
        (now < self.banned_until).then(|| Verdict::Banned {
            until_ms: self.banned_until,
            retry_after_secs: ceil_secs(self.banned_until - now),
        })
    }

    /// Charges `weight` at time `now` and decides whether the request may be served.
    pub fn check(&mut self, now: i64, weight: u32) -> Checked {
        self.roll(now);
        if now < self.banned_until {
            return Checked {
                verdict: Verdict::Banned {
                    until_ms: self.banned_until,
                    retry_after_secs: ceil_secs(self.banned_until - now),
                },
                used: self.used,
                charged: 0,
            };
        }
        self.used += u64::from(weight);
        let verdict = if self.used > self.limit {
            if self.rejected_in_window {
                self.strikes += 1;
            }
            self.rejected_in_window = true;
            if self.strikes > self.strikes_before_ban {
                self.banned_until = now.saturating_add(self.ban_ms);
                // After the ban, a client still over budget gets a 429 before a new ban.
                self.strikes = 0;
                self.rejected_in_window = false;
                Verdict::Banned {
                    until_ms: self.banned_until,
                    retry_after_secs: ceil_secs(self.ban_ms),
                }
            } else {
                let window_end = (self.window + 1) * self.window_ms;
                Verdict::TooMany {
                    retry_after_secs: ceil_secs(window_end - now),
                }
            }
        } else {
            self.accepted += u64::from(weight);
            self.max_accepted = self.max_accepted.max(self.accepted);
            Verdict::Accept
        };
        Checked {
            verdict,
            used: self.used,
            charged: weight,
        }
    }
}

/// A request-count limit without weights, strikes or bans: a fixed window aligned to the Unix
/// epoch and a number of requests it admits (Binance's 500 `fundingRate` and 1,000
/// `/futures/data/*` requests per 5 minutes per IP).
#[derive(Debug)]
pub(crate) struct CountLimiter {
    limit: u64,
    window_ms: i64,
    window: i64,
    count: u64,
}

impl CountLimiter {
    pub fn new(limit: u32, window: Duration) -> Self {
        CountLimiter {
            limit: u64::from(limit),
            window_ms: window.as_millis().clamp(1, i64::MAX as u128 / 4) as i64,
            window: i64::MIN,
            count: 0,
        }
    }

    /// Counts a request at `now`; `Err` with the seconds to the window's end when the window
    /// already admitted `limit` requests.
    pub fn check(&mut self, now: i64) -> Result<(), u64> {
        let w = now.div_euclid(self.window_ms);
        if w > self.window {
            self.window = w;
            self.count = 0;
        }
        self.count += 1;
        if self.count > self.limit {
            return Err(ceil_secs((self.window + 1) * self.window_ms - now));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(limit: u32, strikes: u32) -> Limiter {
        Limiter::new(
            limit,
            &WindowDesc::new(Duration::from_secs(1)),
            strikes,
            Duration::from_secs(3),
        )
    }

    #[test]
    fn window_descriptions() {
        let d = WindowDesc::new(Duration::from_secs(60));
        assert_eq!(
            (d.num, d.unit, d.header_name().as_str()),
            (1, "MINUTE", "x-mbx-used-weight-1m")
        );
        let d = WindowDesc::new(Duration::from_secs(2));
        assert_eq!(
            (d.num, d.unit, d.header_name().as_str()),
            (2, "SECOND", "x-mbx-used-weight-2s")
        );
        let d = WindowDesc::new(Duration::from_secs(90));
        assert_eq!((d.num, d.unit), (90, "SECOND"));
        let d = WindowDesc::new(Duration::from_secs(7200));
        assert_eq!((d.num, d.unit), (2, "HOUR"));
        let d = WindowDesc::new(Duration::from_millis(1500));
        assert_eq!((d.ms, d.num, d.unit), (2000, 2, "SECOND"));
        let d = WindowDesc::new(Duration::ZERO);
        assert_eq!((d.ms, d.num), (1000, 1));
    }

    #[test]
    fn over_budget_then_strikes_then_ban() {
        let mut l = limiter(10, 2);
        let t0 = 5_000_000;
        for i in 0..5 {
            let c = l.check(t0 + i, 2);
            assert_eq!(c.verdict, Verdict::Accept);
            assert_eq!(c.used, 2 * (i as u64 + 1));
        }
        let c = l.check(t0 + 100, 1);
        assert_eq!(
            c.verdict,
            Verdict::TooMany {
                retry_after_secs: 1
            }
        );
        assert_eq!(c.used, 11);
        // Two strikes are allowed, the third request after the 429 is banned.
        for _ in 0..2 {
            assert!(matches!(
                l.check(t0 + 200, 1).verdict,
                Verdict::TooMany { .. }
            ));
        }
        let c = l.check(t0 + 300, 1);
        assert_eq!(
            c.verdict,
            Verdict::Banned {
                until_ms: t0 + 3300,
                retry_after_secs: 3
            }
        );
        // Still banned in later windows, without charging weight.
        let c = l.check(t0 + 1500, 1);
        assert_eq!(
            c.verdict,
            Verdict::Banned {
                until_ms: t0 + 3300,
                retry_after_secs: 2
            }
        );
        assert_eq!((c.used, c.charged), (0, 0));
        assert_eq!(l.check(t0 + 3300, 1).verdict, Verdict::Accept);
        assert_eq!(l.max_window_weight(), 10);
    }

    #[test]
    fn windows_reset_the_budget() {
        let mut l = limiter(3, 5);
        let t0 = 7_000_000;
        assert_eq!(l.check(t0 + 10, 3).verdict, Verdict::Accept);
        assert_eq!(
            l.check(t0 + 10, 1).verdict,
            Verdict::TooMany {
                retry_after_secs: 1
            }
        );
        assert_eq!(l.check(t0 + 1000, 3).verdict, Verdict::Accept);
        assert_eq!(l.used(t0 + 1999), 3);
        assert_eq!(l.used(t0 + 2000), 0);
    }

    #[test]
    fn windows_never_move_back() {
        let mut l = limiter(10, 5);
        let t0 = 11_000_000;
        assert_eq!(l.check(t0 + 1000, 4).used, 4);
        // A request stamped a moment earlier, locked later, stays in the newer window.
        assert_eq!(l.check(t0 + 999, 4).used, 8);
        assert_eq!(l.used(t0 + 1001), 8);
    }

    #[test]
    fn count_limits_reset_with_the_window() {
        let mut c = CountLimiter::new(2, Duration::from_secs(10));
        let t0 = 1_000_000;
        assert_eq!(c.check(t0), Ok(()));
        assert_eq!(c.check(t0 + 1), Ok(()));
        assert_eq!(c.check(t0 + 2_500), Err(8));
        assert_eq!(c.check(t0 + 10_000), Ok(()));
    }

    #[test]
    fn zero_strikes_ban_on_the_first_request_after_a_429() {
        let mut l = limiter(1, 0);
        let t0 = 9_000_000;
        assert_eq!(l.check(t0, 1).verdict, Verdict::Accept);
        assert!(matches!(l.check(t0, 1).verdict, Verdict::TooMany { .. }));
        assert!(matches!(l.check(t0, 1).verdict, Verdict::Banned { .. }));
    }
}

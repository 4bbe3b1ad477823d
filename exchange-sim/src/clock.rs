//! The simulator's clock: what "now" is for REST (server time, klines up to now, retention
//! windows, weight windows and bans), streams (event times, candle closes, the liquidation
//! schedule, the per-connection message rate and the connection-attempt window) and archives
//! (which files are published yet).
//!
//! It runs at the speed of the wall clock, shifted by an amount the test controls: a test can
//! put "now" at any instant ([`SimClock::set_now_ms`]) and jump forward
//! ([`SimClock::advance`]) instead of sleeping until a window, a ban or a minute passes. A
//! client that takes its time from the server (`/api/v3/time`, as the loader does) follows.
//! Time only moves forward from a client's point of view as long as the test only advances it.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A shared handle: clones move together.
#[derive(Debug, Clone, Default)]
pub struct SimClock {
    /// Simulated minus wall-clock time, in ms.
    ahead_ms: Arc<AtomicI64>,
}

fn wall_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl SimClock {
    /// The simulated time in epoch ms.
    pub fn now_ms(&self) -> i64 {
        wall_ms() + self.ahead_ms.load(Ordering::Relaxed)
    }

    /// Jumps forward by `d`: what was due within `d` is due at once (a window resets, a ban
    /// ends, a stream's events of that span are sent at its next tick).
    pub fn advance(&self, d: Duration) {
        let ms = d.as_millis().min(i64::MAX as u128) as i64;
        self.ahead_ms.fetch_add(ms, Ordering::Relaxed);
    }

    /// Puts "now" at `ms` (epoch ms); time runs on from there at the wall clock's speed.
    pub fn set_now_ms(&self, ms: i64) {
        self.ahead_ms.store(ms - wall_ms(), Ordering::Relaxed);
    }

    /// Simulated minus wall-clock time, in ms.
    pub fn ahead_ms(&self) -> i64 {
        self.ahead_ms.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_and_advance_move_every_clone() {
        let clock = SimClock::default();
        let other = clock.clone();
        let at = 1_700_000_000_000;
        clock.set_now_ms(at);
        let t = other.now_ms();
        assert!((at..at + 1_000).contains(&t), "{t}");
        other.advance(Duration::from_secs(3_600));
        let t = clock.now_ms();
        assert!((at + 3_600_000..at + 3_601_000).contains(&t), "{t}");
    }
}

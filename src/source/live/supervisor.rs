//! `Supervisor`: the WebSocket connections of one live source. It keeps one active connection,
//! at most one replacement and at most one connection being retired: a connection is replaced
//! before the venue's own cut (Binance's 24 hours; or on a shutdown notice) by opening the new one first; when the
//! new one delivers it becomes active and the old one is retired, kept open until the live
//! source has taken what it still held (see `handover`) or it closes; a lost connection is replaced at once the first time and with growing backoff after
//! that; a replacement that fails is retried with backoff too. Every attempt goes through the
//! venue's allowance (Binance: 300 attempts per 5 minutes), so no failure pattern can spend it
//! in a burst.
//!
//! It does no I/O itself: a [`Connector`] opens connections, which report to the live source, and
//! the live source tells the supervisor what happened. Times are tokio's, so the policy is unit
//! tested on paused time.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::venue::live::ConnectionAllowance;

/// Opens connections: the real one spawns `stream::run_connection`; tests record the calls.
pub trait Connector: Send {
    /// Opens connection `id` after `delay`.
    fn open(&mut self, id: u64, delay: Duration) -> JoinHandle<()>;
}

struct Conn {
    id: u64,
    opened: Instant,
    task: JoinHandle<()>,
    delivered: bool,
}

pub struct Supervisor<C: Connector> {
    connector: C,
    attempts: ConnectionAttempts,
    rotate_after: Duration,
    active: Conn,
    pending: Option<Conn>,
    /// The connection the active one replaced, still delivering what it held.
    retiring: Option<Conn>,
    next_id: u64,
    /// Consecutive failures of the active connection.
    failures: u32,
    /// Consecutive failures of replacements, and when the next may be opened.
    replacement_failures: u32,
    replacement_not_before: Option<Instant>,
    /// Connections lost and replaced.
    pub reconnects: u64,
}

impl<C: Connector> Supervisor<C> {
    /// Opens the first connection.
    pub fn start(mut connector: C, allowance: ConnectionAllowance, rotate_after: Duration) -> Self {
        let mut attempts = ConnectionAttempts::new(allowance.attempts, allowance.window);
        let delay = attempts.reserve();
        let task = connector.open(1, delay);
        Supervisor {
            connector,
            attempts,
            rotate_after,
            active: Conn {
                id: 1,
                opened: Instant::now() + delay,
                task,
                delivered: false,
            },
            pending: None,
            retiring: None,
            next_id: 1,
            failures: 0,
            replacement_failures: 0,
            replacement_not_before: None,
            reconnects: 0,
        }
    }

    fn open(&mut self, delay: Duration) -> Conn {
        self.next_id += 1;
        let id = self.next_id;
        let delay = delay.max(self.attempts.reserve());
        Conn {
            id,
            opened: Instant::now() + delay,
            task: self.connector.open(id, delay),
            delivered: false,
        }
    }

    pub fn active_id(&self) -> u64 {
        self.active.id
    }

    /// The connection being retired, if any.
    pub fn retiring_id(&self) -> Option<u64> {
        self.retiring.as_ref().map(|r| r.id)
    }

    #[cfg(test)]
    pub fn pending_id(&self) -> Option<u64> {
        self.pending.as_ref().map(|p| p.id)
    }

    /// An event arrived on `conn`. A replacement that delivers takes over; the connection it
    /// replaces is retired (an older one still retiring is closed).
    pub fn on_event(&mut self, conn: u64) {
        if self.pending.as_ref().is_some_and(|p| p.id == conn) {
            let new = self.pending.take().expect("pending");
            if let Some(older) = self.retiring.take() {
                older.task.abort();
            }
            tracing::info!(
                old = self.active.id,
                new = new.id,
                "switching to the new connection once the old one delivered what it still holds"
            );
            self.retiring = Some(std::mem::replace(&mut self.active, new));
            self.replacement_failures = 0;
        }
        if conn == self.active.id {
            self.active.delivered = true;
            self.failures = 0;
        }
    }

    /// The venue announced it will close `conn`: open its replacement now.
    pub fn on_shutdown_notice(&mut self, conn: u64) {
        if conn == self.active.id && self.pending.is_none() {
            tracing::warn!(
                conn,
                "the venue announced a server shutdown: opening a replacement connection"
            );
            self.pending = Some(self.open(Duration::ZERO));
        }
    }

    /// The feed needs the active connection replaced (a fresh subscription): opens its
    /// replacement now, which takes over with a hand-over like a rotation.
    pub fn replace_active(&mut self, why: &str) {
        if self.pending.is_none() {
            tracing::warn!(conn = self.active.id, why, "replacing the connection");
            self.pending = Some(self.open(Duration::ZERO));
        }
    }

    /// The retired connection delivered everything the active one lacked: close it.
    pub fn retired(&mut self) {
        if let Some(old) = self.retiring.take() {
            old.task.abort();
            tracing::info!(
                old = old.id,
                new = self.active.id,
                "switched to the new connection"
            );
        }
    }

    /// The retiring connection is too far behind to wait for: keep it active, close its
    /// replacement, and try another one after a backoff.
    pub fn abandon_replacement(&mut self) {
        let Some(old) = self.retiring.take() else {
            return;
        };
        let new = std::mem::replace(&mut self.active, old);
        new.task.abort();
        self.replacement_failures += 1;
        let delay = backoff(self.replacement_failures);
        tracing::warn!(
            old = self.active.id,
            new = new.id,
            retry_in_ms = delay.as_millis() as u64,
            "the connection being replaced is too far behind its replacement: keeping it, and \
             trying another replacement later"
        );
        self.replacement_not_before = Some(Instant::now() + delay);
    }

    /// `conn` closed (or never connected).
    pub fn on_closed(&mut self, conn: u64, reason: &str) {
        if self.retiring.as_ref().is_some_and(|r| r.id == conn) {
            self.retiring = None;
            tracing::info!(conn, %reason, "the replaced connection closed");
            return;
        }
        if conn == self.active.id {
            self.reconnects += 1;
            tracing::warn!(conn, %reason, "live connection lost");
            if let Some(p) = self.pending.take() {
                self.active = p;
                return;
            }
            // The connection it replaced still runs and has everything: it is active again.
            if let Some(old) = self.retiring.take() {
                self.active = old;
                return;
            }
            self.failures += 1;
            // A connection that delivered and then dropped is replaced at once; one that keeps
            // failing waits longer each time.
            let delay = if self.active.delivered && self.failures == 1 {
                Duration::ZERO
            } else {
                backoff(self.failures)
            };
            self.active = self.open(delay);
        } else if self.pending.as_ref().is_some_and(|p| p.id == conn) {
            self.pending = None;
            self.replacement_failures += 1;
            let delay = backoff(self.replacement_failures);
            tracing::warn!(conn, %reason, retry_in_ms = delay.as_millis() as u64, "replacement connection failed");
            self.replacement_not_before = Some(Instant::now() + delay);
        }
    }

    /// Called periodically: rotates a connection that is getting old.
    pub fn on_tick(&mut self) {
        let now = Instant::now();
        if self.pending.is_some() || self.replacement_not_before.is_some_and(|t| now < t) {
            return;
        }
        if now.saturating_duration_since(self.active.opened) >= self.rotate_after {
            tracing::info!(
                conn = self.active.id,
                "rotating the connection before the venue's own cut"
            );
            self.pending = Some(self.open(Duration::ZERO));
        }
    }

    /// Closes every connection.
    pub fn shutdown(&mut self) {
        self.active.task.abort();
        for c in [self.pending.take(), self.retiring.take()]
            .into_iter()
            .flatten()
        {
            c.task.abort();
        }
    }
}

impl<C: Connector> Drop for Supervisor<C> {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// A venue's allowance of connection attempts (per IP and window); this keeps us under it.
#[derive(Debug)]
pub struct ConnectionAttempts {
    limit: usize,
    window: Duration,
    recent: VecDeque<Instant>,
}

impl ConnectionAttempts {
    pub fn new(limit: usize, window: Duration) -> Self {
        ConnectionAttempts {
            limit,
            window,
            recent: VecDeque::new(),
        }
    }

    /// How long to wait before the next attempt is allowed; records the attempt.
    pub fn reserve(&mut self) -> Duration {
        let now = Instant::now();
        while self
            .recent
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.window)
        {
            self.recent.pop_front();
        }
        let wait = if self.recent.len() >= self.limit {
            self.window
                .saturating_sub(now.duration_since(self.recent[self.recent.len() - self.limit]))
        } else {
            Duration::ZERO
        };
        self.recent.push_back(now + wait);
        wait
    }
}

/// Reconnect backoff: 250 ms doubling to 30 s, with jitter.
fn backoff(failures: u32) -> Duration {
    crate::backoff::jittered(
        Duration::from_millis(250),
        Duration::from_secs(30),
        failures,
    )
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// An allowance as Binance's: 300 attempts per 5 minutes.
    const ALLOWANCE: ConnectionAllowance = ConnectionAllowance {
        attempts: 300,
        window: Duration::from_secs(300),
    };
    const ATTEMPTS_PER_WINDOW: usize = ALLOWANCE.attempts;
    const ATTEMPT_WINDOW: Duration = ALLOWANCE.window;

    /// Records when each connection would really open.
    #[derive(Clone, Default)]
    struct Recorder(Arc<Mutex<Vec<(u64, Instant)>>>);

    impl Connector for Recorder {
        fn open(&mut self, id: u64, delay: Duration) -> JoinHandle<()> {
            self.0.lock().unwrap().push((id, Instant::now() + delay));
            tokio::spawn(async {})
        }
    }

    impl Recorder {
        fn opened(&self) -> Vec<(u64, Instant)> {
            self.0.lock().unwrap().clone()
        }
    }

    /// Attempts in the busiest window of `len` among `times`.
    fn busiest(times: &[Instant], len: Duration) -> usize {
        times
            .iter()
            .map(|t| times.iter().filter(|u| **u >= *t && **u < *t + len).count())
            .max()
            .unwrap_or(0)
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_that_keeps_failing_backs_off_within_the_allowance() {
        let rec = Recorder::default();
        let mut sup = Supervisor::start(rec.clone(), ALLOWANCE, Duration::from_secs(84_600));
        // An hour of an unreachable server: every connection fails as soon as it opens.
        let end = Instant::now() + Duration::from_secs(3600);
        while Instant::now() < end {
            let (id, at) = *rec.opened().last().unwrap();
            tokio::time::sleep_until(at).await;
            sup.on_closed(id, "connection refused");
        }
        let times: Vec<Instant> = rec.opened().iter().map(|(_, t)| *t).collect();
        // Backoff caps at 30 s: about 120 attempts an hour, never a burst.
        assert!(times.len() < 200, "{} attempts in an hour", times.len());
        assert!(busiest(&times, ATTEMPT_WINDOW) <= ATTEMPTS_PER_WINDOW);
        let gaps: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(
            gaps[8..].iter().all(|g| *g >= Duration::from_secs(15)),
            "{gaps:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_that_delivered_is_replaced_at_once_then_with_backoff() {
        let rec = Recorder::default();
        let mut sup = Supervisor::start(rec.clone(), ALLOWANCE, Duration::from_secs(84_600));
        sup.on_event(1);
        sup.on_closed(1, "dropped");
        let opened = rec.opened();
        assert_eq!(
            opened[1].1,
            Instant::now(),
            "no wait after a working connection drops"
        );
        sup.on_closed(2, "refused");
        assert!(rec.opened()[2].1 > Instant::now(), "the next failure waits");
        assert_eq!(sup.reconnects, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn rotation_overlaps_and_a_failing_replacement_backs_off() {
        let rec = Recorder::default();
        let rotate = Duration::from_secs(60);
        let mut sup = Supervisor::start(rec.clone(), ALLOWANCE, rotate);
        sup.on_event(1);
        tokio::time::advance(rotate).await;
        sup.on_tick();
        assert_eq!(
            sup.pending_id(),
            Some(2),
            "the replacement opens before the old one closes"
        );
        // The replacement keeps failing: ticks every 250 ms must not open one each time.
        for _ in 0..40 {
            if let Some(p) = sup.pending_id() {
                sup.on_closed(p, "refused");
            }
            tokio::time::advance(Duration::from_millis(250)).await;
            sup.on_tick();
        }
        let attempts = rec.opened().len() - 1;
        assert!(attempts <= 6, "{attempts} replacement attempts in 10 s");
        assert_eq!(
            sup.active_id(),
            1,
            "the old connection keeps delivering meanwhile"
        );
        // One finally delivers and takes over.
        tokio::time::advance(Duration::from_secs(60)).await;
        sup.on_tick();
        let p = sup.pending_id().expect("a replacement");
        sup.on_event(p);
        assert_eq!((sup.active_id(), sup.pending_id()), (p, None));
        assert_eq!(sup.retiring_id(), Some(1), "the old one hands over first");
        sup.retired();
        assert_eq!(sup.retiring_id(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_retiring_connection_closes_quietly_or_takes_over_again() {
        let rec = Recorder::default();
        let mut sup = Supervisor::start(rec.clone(), ALLOWANCE, Duration::from_secs(84_600));
        sup.on_event(1);
        sup.on_shutdown_notice(1);
        sup.on_event(2);
        assert_eq!((sup.active_id(), sup.retiring_id()), (2, Some(1)));
        // The old one closes as announced: no reconnect, nothing opened.
        sup.on_closed(1, "closed by the server");
        assert_eq!(
            (sup.active_id(), sup.retiring_id(), sup.reconnects),
            (2, None, 0)
        );
        // The new one is replaced in turn, and drops during the hand-over: the old one is
        // active again instead of a fresh connection that would miss what it holds.
        sup.on_shutdown_notice(2);
        sup.on_event(3);
        sup.on_closed(3, "dropped");
        assert_eq!((sup.active_id(), sup.retiring_id()), (2, None));
        assert_eq!(rec.opened().len(), 3, "no extra connection");
        // A replacement given up on: the old one stays, the next replacement waits.
        sup.on_shutdown_notice(2);
        sup.on_event(4);
        sup.abandon_replacement();
        assert_eq!((sup.active_id(), sup.retiring_id()), (2, None));
        assert_eq!(sup.replacement_failures, 1);
        assert!(sup.replacement_not_before.is_some(), "rotation backs off");
    }

    #[tokio::test(start_paused = true)]
    async fn a_shutdown_notice_opens_the_replacement_first() {
        let rec = Recorder::default();
        let mut sup = Supervisor::start(rec.clone(), ALLOWANCE, Duration::from_secs(84_600));
        sup.on_event(1);
        sup.on_shutdown_notice(1);
        assert_eq!(sup.pending_id(), Some(2));
        // The old one closes before the new one delivered: the new one becomes active.
        sup.on_closed(1, "closed by the server");
        assert_eq!((sup.active_id(), sup.pending_id()), (2, None));
        assert_eq!(rec.opened().len(), 2, "no extra connection");
    }

    #[test]
    fn connection_attempts_are_limited_per_window() {
        let mut a = ConnectionAttempts::new(3, Duration::from_secs(300));
        assert_eq!(a.reserve(), Duration::ZERO);
        assert_eq!(a.reserve(), Duration::ZERO);
        assert_eq!(a.reserve(), Duration::ZERO);
        let w = a.reserve();
        assert!(
            w > Duration::from_secs(290) && w <= Duration::from_secs(300),
            "{w:?}"
        );
    }
}

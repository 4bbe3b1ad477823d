//! `JobStatus`: what a running job has done so far, shared by the job and its sources (which
//! update it) and the telemetry ticker, the metrics endpoint and the progress bar (which read
//! it).

use std::sync::atomic::{AtomicI64, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use crate::archive::ArchiveStats;
use crate::registry::Origin;
use crate::sink::DeliveryContext;
use crate::time_range::TimeRange;
use crate::venue::history::Progress;
use crate::venue::requests::{RequestBudget, RestStats};

/// Where the job is in its life; reported in telemetry and as a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    Starting = 0,
    Loading = 1,
    Finished = 2,
    Interrupted = 3,
    Error = 4,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Starting => "starting",
            Phase::Loading => "loading",
            Phase::Finished => "finished",
            Phase::Interrupted => "interrupted",
            Phase::Error => "error",
        }
    }

    pub const ALL: [Phase; 5] = [
        Phase::Starting,
        Phase::Loading,
        Phase::Finished,
        Phase::Interrupted,
        Phase::Error,
    ];
}

pub struct JobStatus {
    pub started: Instant,
    phase: AtomicU8,
    /// Records handed to the sink (fetched and serialised).
    pub records_fetched: AtomicU64,
    pub delivery: OnceLock<Arc<DeliveryContext>>,
    pub rest: OnceLock<Arc<RestStats>>,
    pub limiter: OnceLock<Arc<dyn RequestBudget>>,
    range: Option<TimeRange>,
    /// Newest event time seen (live types), for lag.
    pub last_event_ms: AtomicI64,
    /// Per symbol: the newest timestamp handed to the sink.
    covered: Vec<(Arc<str>, AtomicI64)>,
    /// Records handed to the sink by origin.
    pub from_archive: AtomicU64,
    pub from_rest: AtomicU64,
    pub from_stream: AtomicU64,
    /// Archive files that could not be used and were loaded over REST instead.
    pub archive_fallbacks: AtomicU64,
    /// Holes in archive files published as they are (REST could not fill them).
    pub archive_holes: AtomicU64,
    pub archive: OnceLock<Arc<ArchiveStats>>,
    /// Set when an earlier attempt's records were found: (symbol, time resumed after), and how
    /// many messages the topic held at the start.
    pub resumed_from: OnceLock<Vec<(String, i64)>>,
    pub records_in_topic: AtomicU64,
    /// Why the job was asked to stop, and when (the first request wins).
    pub stop_reason: OnceLock<(StopReason, Instant)>,
}

/// Who asked the job to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// A `stop` command on the control topic: the platform wants it stopped (exit 0).
    StopCommand,
    /// A signal: the pod is going away (drain, eviction, preemption); the load is not done.
    Signal(crate::error::Signal),
}

impl StopReason {
    /// As `interrupted` events name it.
    pub fn as_str(self) -> &'static str {
        match self {
            StopReason::StopCommand => "stop_command",
            StopReason::Signal(_) => "signal",
        }
    }
}

impl JobStatus {
    pub fn new(range: Option<TimeRange>, symbols: &[String]) -> Self {
        let start = range.map(|r| r.start_ms).unwrap_or(0);
        JobStatus {
            started: Instant::now(),
            phase: AtomicU8::new(Phase::Starting as u8),
            records_fetched: AtomicU64::new(0),
            delivery: OnceLock::new(),
            rest: OnceLock::new(),
            limiter: OnceLock::new(),
            range,
            last_event_ms: AtomicI64::new(0),
            covered: symbols
                .iter()
                .map(|s| (Arc::from(s.as_str()), AtomicI64::new(start)))
                .collect(),
            from_archive: AtomicU64::new(0),
            from_rest: AtomicU64::new(0),
            from_stream: AtomicU64::new(0),
            archive_fallbacks: AtomicU64::new(0),
            archive_holes: AtomicU64::new(0),
            archive: OnceLock::new(),
            resumed_from: OnceLock::new(),
            records_in_topic: AtomicU64::new(0),
            stop_reason: OnceLock::new(),
        }
    }

    /// Records what the resume lookup found; progress starts where each symbol resumes.
    pub fn note_resume(&self, r: &crate::resume::Resume) {
        self.records_in_topic
            .store(r.records_in_topic, Ordering::Relaxed);
        if r.is_resumed() {
            let from: Vec<(String, i64)> = r
                .points
                .iter()
                .map(|(s, p)| (s.clone(), p.timestamp))
                .collect();
            for (s, t) in &from {
                if let Some((_, covered)) = self.covered.iter().find(|(c, _)| &**c == s) {
                    covered.fetch_max(*t, Ordering::Relaxed);
                }
            }
            let _ = self.resumed_from.set(from);
        }
    }

    /// Counts records handed to the sink by where they came from.
    pub fn phase(&self) -> Phase {
        Phase::ALL[self.phase.load(Ordering::Relaxed) as usize]
    }

    pub fn set_phase(&self, p: Phase) {
        self.phase.store(p as u8, Ordering::Relaxed);
    }

    /// Records the broker has acknowledged.
    pub fn records_written(&self) -> u64 {
        self.delivery
            .get()
            .map(|d| d.acked.load(Ordering::Relaxed))
            .unwrap_or(0)
    }

    pub fn records_per_second(&self) -> f64 {
        self.records_written() as f64 / self.started.elapsed().as_secs_f64().max(1e-3)
    }

    /// Notes that `symbol`'s records up to `timestamp` were handed to the sink.
    pub fn advance(&self, symbol: &str, records: u64, timestamp: i64) {
        self.records_fetched.fetch_add(records, Ordering::Relaxed);
        if let Some((_, t)) = self.covered.iter().find(|(s, _)| &**s == symbol) {
            t.fetch_max(timestamp + 1, Ordering::Relaxed);
        }
    }

    /// Marks a symbol's range as done (its source finished).
    pub fn complete(&self, symbol: &str) {
        if let Some(r) = self.range {
            self.advance(symbol, 0, r.end_ms - 1);
        }
    }

    /// Share of the range covered, 0..=1, averaged over symbols.
    pub fn progress(&self) -> f64 {
        let Some(range) = self.range.filter(|_| !self.covered.is_empty()) else {
            return 0.0;
        };
        let len = range.len_ms().max(1) as f64;
        let sum: f64 = self
            .covered
            .iter()
            .map(|(_, t)| {
                ((t.load(Ordering::Relaxed) - range.start_ms) as f64 / len).clamp(0.0, 1.0)
            })
            .sum();
        sum / self.covered.len() as f64
    }

    /// Milliseconds between now and the newest event seen (live types).
    pub fn lag_ms(&self) -> Option<i64> {
        let t = self.last_event_ms.load(Ordering::Relaxed);
        (t > 0).then(|| (chrono::Utc::now().timestamp_millis() - t).max(0))
    }

    /// (weight used in the current window, budget, window seconds).
    pub fn weight(&self) -> Option<(u32, u32, f64)> {
        self.limiter
            .get()
            .map(|l| (l.used(), l.budget(), l.window().as_secs_f64()))
    }
}

impl Progress for JobStatus {
    fn note_origin(&self, origin: Origin, records: u64) {
        let c = match origin {
            Origin::Archive => &self.from_archive,
            Origin::Rest => &self.from_rest,
            Origin::WebSocket => &self.from_stream,
        };
        c.fetch_add(records, Ordering::Relaxed);
    }

    fn note_fallback(&self) {
        self.archive_fallbacks.fetch_add(1, Ordering::Relaxed);
    }

    fn note_event_time(&self, ms: i64) {
        self.last_event_ms.fetch_max(ms, Ordering::Relaxed);
    }

    fn note_archive_hole(&self) {
        self.archive_holes.fetch_add(1, Ordering::Relaxed);
    }
}

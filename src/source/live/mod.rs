//! `LiveSource`: live WebSocket data (`ws_*` types) of any venue for a set of symbols on one
//! connection, with nothing lost and nothing doubled across reconnects, rotations and server
//! shutdowns.
//!
//! The module is split by concern: `connection` runs one WebSocket connection (reading frames
//! through the venue's grammar), `supervisor` owns the connections (replacement, rotation,
//! backoff), `handover` orders the events of a connection and its replacement during a switch.
//! The venue's [`LiveFeed`] turns events into records and fetches over REST what the stream
//! did not deliver. This file runs the loop that ties them together: every connection's events
//! go through it, so de-duplication is a comparison with the last ordinal published per symbol
//! ([`Cursor`]).

mod connection;
mod handover;
mod supervisor;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::error::{LoaderError, Result};
use crate::record::RecordBatch;
use crate::registry::LiveType;
use crate::time_range::TimeRange;
use crate::venue::history::{Cursor, Emitter, SourceSummary};
use crate::venue::live::book::Book;
use crate::venue::live::wire::{FramePart, Grammar, StreamMessage, StreamPlan};
use crate::venue::live::{LiveFeed, SymbolState, Ties};
use handover::{FromNew, FromOld, Handover};
use supervisor::{Connector, Supervisor};

pub use crate::venue::live::LiveConfig;

/// After the range end, how long late events may still arrive before the range is closed over
/// REST (trades and candles are settled a second after they happen, as for history).
const END_GRACE_MS: i64 = 1_500;
/// Bursts of connection messages taken at once by the live source.
const INBOX: usize = 32;
/// Bursts waiting for the live source before a connection holds them itself (its outbox,
/// bounded in bytes): with full bursts, as many messages as a channel of 8,192.
const CHANNEL_BURSTS: usize = 8192 / connection::MAX_BURST;

/// Everything a live source needs: the venue's feed of the job's type, and the symbols of
/// one connection.
pub struct LiveSource {
    pub feed: Arc<dyn LiveFeed>,
    pub symbols: Vec<Arc<str>>,
    pub stop: CancellationToken,
    /// Per symbol, the last record an earlier attempt of this job published.
    pub resume: std::collections::BTreeMap<String, crate::resume::ResumePoint>,
}

/// Opens real connections.
struct WsConnector {
    plan: StreamPlan,
    grammar: Arc<dyn Grammar>,
    idle_timeout: Duration,
    tx: mpsc::Sender<connection::Burst>,
}

impl Connector for WsConnector {
    fn open(&mut self, id: u64, delay: Duration) -> JoinHandle<()> {
        let (plan, tx, idle) = (self.plan.clone(), self.tx.clone(), self.idle_timeout);
        let grammar = self.grammar.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            connection::run_connection(plan, grammar, id, idle, tx).await;
        })
    }
}

/// Why the loop ended.
enum Ending {
    RangeEnd,
    Stopped,
}

impl LiveSource {
    fn range(&self) -> Option<TimeRange> {
        self.feed.scope().range
    }

    fn live_type(&self) -> LiveType {
        self.feed.scope().live_type
    }

    fn whole_range(&self) -> TimeRange {
        self.range().unwrap_or(TimeRange {
            start_ms: i64::MIN,
            end_ms: i64::MAX,
        })
    }

    /// When the range can be closed: every event of it has happened and settled (for candles,
    /// the last candle opened before the end has closed).
    fn close_at(&self, r: TimeRange) -> i64 {
        match self.live_type() {
            LiveType::Candles(iv) => iv.align_up(r.end_ms) + END_GRACE_MS,
            _ => r.end_ms + END_GRACE_MS,
        }
    }

    pub async fn run(self, tx: mpsc::Sender<RecordBatch>) -> Result<Vec<SourceSummary>> {
        let range = self.whole_range();
        let scope = self.feed.scope();
        let (plan, streams) = self.feed.plan(&self.symbols);
        let mut states: Vec<SymbolState> = self
            .symbols
            .iter()
            .map(|s| SymbolState {
                symbol: s.clone(),
                out: Emitter::new(tx.clone(), s, scope.status.clone()),
                batch: RecordBatch::new(self.feed.venue(), self.feed.market(), s.clone(), 256),
                cursor: {
                    // Trades of a venue whose ids count nothing are ranked by time: no id gaps.
                    let sequence = scope.live_type.record_kind().sequence_at(self.feed.venue());
                    let mut c = Cursor::for_sequence(sequence, range);
                    c.last = self.resume.get(&**s).map(|p| p.ordinal);
                    c
                },
                done: false,
                received: 0,
                book: Book::new(),
                ties: Ties::default(),
                interrupted: true,
                wants_new_connection: false,
            })
            .collect();
        drop(tx);
        // A stream may be shared by several symbols (a venue that subscribes a channel for a
        // whole market, OKX's liquidations): its events go to each, which takes its own part.
        let mut by_stream: HashMap<&str, Vec<usize>, foldhash::fast::RandomState> =
            HashMap::default();
        for (i, s) in streams.iter().enumerate() {
            by_stream.entry(s.as_str()).or_default().push(i);
        }

        // Wait for the range to begin (connecting a moment early so its first events are seen).
        if let Some(r) = self.range() {
            let wait = r.start_ms - self.feed.now_ms() - 2_000;
            if wait > 0 {
                tracing::info!(
                    wait_s = wait / 1000,
                    "TIME_RANGE starts in the future: waiting"
                );
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(wait as u64)) => {}
                    _ = self.stop.cancelled() => return Ok(finish(states, 0, true)),
                }
            }
        }

        let (msg_tx, mut msg_rx) = mpsc::channel::<connection::Burst>(CHANNEL_BURSTS);
        let connector = WsConnector {
            plan,
            grammar: self.feed.grammar(),
            idle_timeout: scope.cfg.idle_timeout,
            tx: msg_tx,
        };
        let mut sup = Supervisor::start(connector, self.feed.allowance(), scope.cfg.rotate_after);
        let mut flush = tokio::time::interval(Duration::from_millis(100));
        let mut housekeeping = tokio::time::interval(Duration::from_millis(250));
        let mut book_tick = tokio::time::interval(scope.cfg.book_snapshot_interval);
        let is_book = scope.live_type == LiveType::OrderBook;
        let close_at = self.range().map(|r| self.close_at(r));

        // Whether the venue ever accepted the streams (a connection whose subscriptions were all
        // acknowledged): what tells a quiet stream from one that was never there.
        let mut subscribed = false;
        // A connection switch in progress.
        let mut handover: Option<Handover> = None;
        // Bursts are taken as many at a time as have arrived: one wake-up of this task for all
        // of them.
        let mut inbox = Vec::with_capacity(INBOX);
        let outcome: Result<Ending> = 'events: loop {
            tokio::select! {
                _ = self.stop.cancelled() => break Ok(Ending::Stopped),
                n = msg_rx.recv_many(&mut inbox, INBOX) => {
                    if n == 0 {
                        break Ok(Ending::Stopped);
                    }
                    for msg in inbox.drain(..).flatten() {
                        match msg {
                            StreamMessage::Connected { conn } => {
                                subscribed = true;
                                tracing::info!(conn, "live stream connected");
                            }
                            StreamMessage::Event { conn, stream, data } => {
                                sup.on_event(conn);
                                if let Err(e) = self.follow_switch(&sup, &mut handover, &mut states).await {
                                    break 'events Err(e);
                                }
                                let Some((&last, others)) = by_stream
                                    .get(stream.get())
                                    .and_then(|symbols| symbols.split_last())
                                else {
                                    tracing::debug!(stream = stream.get(), "event for an unknown stream");
                                    continue;
                                };
                                for &idx in others {
                                    let routed = self
                                        .route(&mut sup, &mut handover, &mut states, idx, conn, data.clone())
                                        .await;
                                    if let Err(e) = routed {
                                        break 'events Err(e);
                                    }
                                }
                                let routed = self
                                    .route(&mut sup, &mut handover, &mut states, last, conn, data)
                                    .await;
                                if let Err(e) = routed {
                                    break 'events Err(e);
                                }
                            }
                            StreamMessage::ServerShutdown { conn } => sup.on_shutdown_notice(conn),
                            StreamMessage::Closed { conn, reason } => {
                                let reconnects = sup.reconnects;
                                sup.on_closed(conn, &reason);
                                if sup.reconnects > reconnects {
                                    // What the stream sent while no connection was there may
                                    // be missing (the feed backfills where the venue allows).
                                    for st in states.iter_mut() {
                                        st.interrupted = true;
                                    }
                                }
                                if let Err(e) = self.follow_switch(&sup, &mut handover, &mut states).await {
                                    break 'events Err(e);
                                }
                            }
                        }
                    }
                }
                _ = flush.tick() => {
                    if let Err(e) = flush_all(&mut states).await {
                        break Err(e);
                    }
                }
                _ = book_tick.tick(), if is_book => {
                    if let Err(e) = self.publish_books(&mut states) {
                        break Err(e);
                    }
                }
                _ = housekeeping.tick() => {
                    sup.on_tick();
                    if close_at.is_some_and(|t| self.feed.now_ms() >= t) {
                        break Ok(Ending::RangeEnd);
                    }
                }
            }
        };
        sup.shutdown();
        let reconnects = sup.reconnects;
        // A backfill cut short by the stop is a stop too.
        let outcome = match outcome {
            Err(LoaderError::Cancelled) => Ok(Ending::Stopped),
            o => o,
        };
        // Whatever was received is published, also on stop: the replacement's held events
        // too, now that no connection is left to deliver anything before them.
        let published = match &outcome {
            Err(_) => Ok(()),
            Ok(_) => {
                let released = match handover.take() {
                    Some(h) => match self.release(h, &mut states).await {
                        Err(LoaderError::Cancelled) => Ok(()),
                        r => r,
                    },
                    None => Ok(()),
                };
                let books = if let Err(e) = released {
                    Err(e)
                } else if is_book {
                    self.publish_books(&mut states)
                } else {
                    Ok(())
                };
                match books {
                    Ok(()) => flush_all(&mut states).await,
                    e => e,
                }
            }
        };
        let ending = outcome?;
        published?;
        match ending {
            Ending::Stopped => Ok(finish(states, reconnects, true)),
            Ending::RangeEnd => {
                let range = self.range().expect("a range end needs a range");
                for st in states.iter_mut() {
                    match self.feed.close_range(st, range).await {
                        Ok(()) => {}
                        Err(LoaderError::Cancelled) => return Ok(finish(states, reconnects, true)),
                        Err(e) => return Err(e),
                    }
                }
                self.check_stream_delivered(&states, &streams, subscribed)?;
                Ok(finish(states, reconnects, false))
            }
        }
    }

    /// A stream event, counted and turned into records.
    async fn deliver(&self, st: &mut SymbolState, data: &str) -> Result<()> {
        st.received += 1;
        if st.done || self.feed.on_event_now(st, data)? {
            return Ok(());
        }
        self.feed.on_event(st, data).await
    }

    /// An event of stream `idx` from `conn`, through the hand-over if a switch is in progress.
    async fn route<C: Connector>(
        &self,
        sup: &mut Supervisor<C>,
        handover: &mut Option<Handover>,
        states: &mut [SymbolState],
        idx: usize,
        conn: u64,
        data: FramePart,
    ) -> Result<()> {
        let Some(h) = handover.as_mut() else {
            self.deliver(&mut states[idx], data.get()).await?;
            if std::mem::take(&mut states[idx].wants_new_connection) {
                sup.replace_active("the feed needs a fresh subscription");
            }
            return Ok(());
        };
        let ordinal = self.feed.ordinal(data.get());
        let events = if conn == h.old {
            match h.on_old_event(idx, ordinal) {
                FromOld::Ignore => Vec::new(),
                FromOld::Take(held) => std::iter::once(data).chain(held).collect(),
            }
        } else {
            match h.on_new_event(idx, ordinal, data) {
                FromNew::Hold => Vec::new(),
                FromNew::Take(events) => events,
            }
        };
        for d in &events {
            self.deliver(&mut states[idx], d.get()).await?;
        }
        if h.complete() {
            sup.retired();
            *handover = None;
        } else if h.over_limit() {
            sup.abandon_replacement();
            self.follow_switch(sup, handover, states).await?;
        }
        Ok(())
    }

    /// Keeps the hand-over in step with the supervisor: one starts when a replacement takes
    /// over; when the old connection goes, the replacement's held events follow, unless the
    /// old one is active again (its replacement is gone), which has all of them itself.
    async fn follow_switch<C: Connector>(
        &self,
        sup: &Supervisor<C>,
        handover: &mut Option<Handover>,
        states: &mut [SymbolState],
    ) -> Result<()> {
        let retiring = sup.retiring_id();
        if handover.as_ref().map(|h| h.old) == retiring {
            return Ok(());
        }
        if let Some(h) = handover.take() {
            if sup.active_id() != h.old {
                self.release(h, states).await?;
            }
        }
        *handover = retiring.map(|old| Handover::new(old, states.len()));
        Ok(())
    }

    /// Publishes every event a hand-over still holds.
    async fn release(&self, h: Handover, states: &mut [SymbolState]) -> Result<()> {
        for (idx, data) in h.release_all() {
            self.deliver(&mut states[idx], data.get()).await?;
        }
        Ok(())
    }

    fn publish_books(&self, states: &mut [SymbolState]) -> Result<()> {
        let start = self.range().map_or(i64::MIN, |r| r.start_ms);
        for st in states.iter_mut() {
            // A venue's book may be built from events before the range: published from its start.
            if st.book.last_event_ms >= start {
                st.book
                    .publish(&st.symbol, self.feed.scope().cfg.book_depth, &mut st.batch)?;
            }
        }
        Ok(())
    }

    /// A stream that delivered nothing for a whole range, while the exchange had records in it,
    /// is misconfigured (for example a stream URL path the venue does not serve): the range was
    /// completed over REST, but the job must not look healthy. A stream that pushes only when
    /// something happens (liquidations) may be quiet for a whole range: once the venue accepted
    /// it, silence is the answer.
    fn check_stream_delivered(
        &self,
        states: &[SymbolState],
        streams: &[String],
        subscribed: bool,
    ) -> Result<()> {
        if states.iter().any(|s| s.received > 0) {
            return Ok(());
        }
        if self.live_type().may_stay_silent() && subscribed {
            tracing::info!(
                symbols = states.len(),
                stream = streams.first().map_or("", String::as_str),
                "no event during the whole TIME_RANGE: this stream pushes only when something happens, \
                 and nothing did"
            );
            return Ok(());
        }
        let fetched: u64 = states.iter().map(|s| s.out.summary.backfilled).sum();
        let has_rest = self.feed.has_rest();
        if has_rest && fetched == 0 {
            return Ok(()); // a quiet market: nothing happened in the range
        }
        let (var, example) = self.feed.ws_var();
        Err(LoaderError::Exchange(format!(
            "the WebSocket stream delivered nothing during the whole TIME_RANGE{}; check {var} {} \
             (expected the stream base, e.g. {example})",
            if has_rest {
                format!(
                    " although {} has {fetched} records in it (published over REST)",
                    self.feed.venue().title()
                )
            } else {
                String::new()
            },
            self.feed.ws_url()
        )))
    }
}

/// Every symbol's records to the sink. The batches are taken first and sent back to back, so
/// that the sink takes them in one wake-up instead of one each.
async fn flush_all(states: &mut [SymbolState]) -> Result<()> {
    let batches: Vec<(usize, RecordBatch)> = states
        .iter_mut()
        .enumerate()
        .filter_map(|(i, st)| st.take_batch().map(|b| (i, b)))
        .collect();
    for (i, batch) in batches {
        states[i].send_batch(batch).await?;
    }
    Ok(())
}

fn finish(states: Vec<SymbolState>, reconnects: u64, stopped: bool) -> Vec<SourceSummary> {
    let mut out: Vec<SourceSummary> = states
        .into_iter()
        .map(|mut s| {
            s.out.summary.gaps = std::mem::take(&mut s.cursor.gaps);
            s.out.summary.resyncs = s.book.resyncs;
            s.out.summary.stopped = stopped;
            s.out.summary
        })
        .collect();
    if let Some(first) = out.first_mut() {
        first.reconnects = reconnects;
    }
    out
}

//! The live seam: what a venue's WebSocket feed is to the generic live source
//! (`crate::source::live`). A venue's tree implements [`LiveFeed`] for the live types it
//! streams: the connection's plan and its frame grammar ([`wire`]), the ordinal that orders
//! one stream's events (for the hand-over between connections), and the turning of an event
//! into records, with the backfill over REST that its rules allow. The live source owns the
//! connections, the hand-over, the batching and the range's end, and never names a venue.
//!
//! What every venue's events share lives here too: the job's live settings ([`LiveConfig`]),
//! what a feed knows of the job ([`LiveScope`]: the range gate), one symbol's progress
//! ([`SymbolState`]) and a local order book ([`book::Book`]).

pub mod book;
pub mod wire;

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use crate::error::{LoaderError, Result};
use crate::market::{Market, Venue};
use crate::record::{tag, Candle, LiquidationRecord, RecordBatch};
use crate::registry::{time_rank, LiveType, Origin};
use crate::source_mode::SourceMode;
use crate::time_range::TimeRange;
use crate::venue::history::{Cursor, Emitter, History, HistoryContext, Progress, VenueClock};
use book::Book;
use wire::{Grammar, StreamPlan};

/// Live (WebSocket) settings.
#[derive(Debug, Clone)]
pub struct LiveConfig {
    /// Publish every candle update, not only closed candles.
    pub all_kline_updates: bool,
    /// Cadence of order-book snapshots.
    pub book_snapshot_interval: Duration,
    /// Levels per side in order-book snapshots.
    pub book_depth: usize,
    /// A connection with no data and no ping for this long is dead.
    pub idle_timeout: Duration,
    /// Connections are replaced (overlapping) after this long, before the venue's own cut.
    pub rotate_after: Duration,
    /// Streams per connection (the venue's limit bounds it).
    pub streams_per_connection: usize,
}

/// What a feed knows of the job: the type, the range, the settings, and where to report the
/// latest event's time.
#[derive(Clone)]
pub struct LiveScope {
    pub live_type: LiveType,
    pub range: Option<TimeRange>,
    pub cfg: LiveConfig,
    /// Rows per page of id-paged backfills (`PAGE_LIMIT`).
    pub page_limit: u32,
    /// Candles per klines request of a backfill.
    pub kline_page_limit: u32,
    /// REST requests in flight during a backfill.
    pub concurrency: usize,
    pub status: Arc<dyn Progress>,
    /// The job's stop: a backfill gives up when it fires.
    pub stop: CancellationToken,
}

/// Where a time lies relative to the range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangePos {
    Before,
    In,
    After,
}

impl LiveScope {
    pub fn position(&self, t: i64) -> RangePos {
        match self.range {
            Some(r) if t < r.start_ms => RangePos::Before,
            Some(r) if t >= r.end_ms => RangePos::After,
            _ => RangePos::In,
        }
    }

    /// Whether an event at `t` belongs to the range; one past its end finishes the symbol.
    pub fn gate(&self, st: &mut SymbolState, t: i64) -> bool {
        match self.position(t) {
            RangePos::In => true,
            RangePos::Before => false,
            RangePos::After => {
                st.done = true;
                false
            }
        }
    }

    /// The venue's time of the latest event seen (the job's status shows how far behind it is).
    pub fn note_event(&self, t: i64) {
        self.status.note_event_time(t);
    }

    /// The end of the range, or forever.
    pub fn end_ms(&self) -> i64 {
        self.range.map_or(i64::MAX, |r| r.end_ms)
    }

    /// A record of a kind ordered by time alone at this venue (trades whose ids order nothing,
    /// liquidations): inside the range, ranked among its millisecond's records by `id`
    /// ([`Ties`]: whatever tells two of them apart), and admitted by the cursor.
    /// `Some(ordinal)` ([`time_rank`]) when it is to be published; a record offered twice is
    /// counted as a duplicate dropped.
    pub fn rank_record(&self, st: &mut SymbolState, time: i64, id: &str) -> Result<Option<i64>> {
        if !self.gate(st, time) {
            return Ok(None);
        }
        let Some(rank) = st.ties.offer(time, id) else {
            st.out.summary.duplicates_dropped += 1;
            return Ok(None);
        };
        let ordinal = time_rank::ordinal(time, rank).ok_or_else(|| {
            LoaderError::Exchange(format!(
                "a record at {time} (ms) cannot be keyed: more than {} at one millisecond",
                time_rank::PER_MS
            ))
        })?;
        Ok(st.cursor.admit(time, ordinal).then_some(ordinal))
    }

    /// A liquidation of a venue whose liquidations are ranked by time
    /// ([`Venue::one_liquidation_a_second`] false): told apart from the millisecond's others by
    /// side, size and price (two connections during a hand-over deliver the same ones), and
    /// published when the range and the cursor admit it.
    pub fn ranked_liquidation(
        &self,
        st: &mut SymbolState,
        (venue, market): (Venue, Market),
        l: &Liquidation<'_>,
    ) -> Result<()> {
        let id = format!("{}|{}|{}", l.side, l.quantity, l.price);
        let Some(ordinal) = self.rank_record(st, l.time, &id)? else {
            return Ok(());
        };
        let key = st.batch.key(tag::LIQUIDATION, ordinal);
        st.batch.push_record(
            l.time,
            &key,
            &LiquidationRecord {
                _key: &key,
                exchange: venue.record_field(),
                market: venue.market_name(market),
                symbol: &st.symbol,
                timestamp: l.time,
                event_time: l.event_time,
                side: l.side,
                quantity: l.quantity,
                price: l.price,
                order_type: None,
                time_in_force: None,
                average_price: None,
                status: None,
                last_filled_quantity: None,
                filled_quantity: None,
            },
        )
    }

    /// A candle from a stream: an update of the open one (published only with
    /// `WS_ALL_KLINE_UPDATES`, never after the candle was published closed), or a closed one,
    /// published after what the stream missed before it, fetched through `history`.
    pub async fn candle(
        &self,
        st: &mut SymbolState,
        closed: bool,
        candle: &Candle<'_>,
        history: &dyn History,
        clock: VenueClock,
    ) -> Result<()> {
        let Some(iv) = self.live_type.candle_interval() else {
            return Ok(());
        };
        let open = candle.open_time;
        if !closed {
            // Updates of the open candle share its _key.
            if self.cfg.all_kline_updates
                && self.position(open) == RangePos::In
                && st.cursor.last.is_none_or(|l| open > l)
            {
                st.batch.push_candle(iv.as_str(), candle)?;
            }
            return Ok(());
        }
        if !self.gate(st, open) {
            return Ok(());
        }
        let from = match st.cursor.last {
            Some(last) => Some(iv.next_open(last)),
            None => self.range.map(|r| iv.align_up(r.start_ms)),
        };
        if let Some(from) = from.filter(|&f| f < open) {
            // Boxed: an event's future stays small, and only a gap pays for the backfill's.
            Box::pin(self.backfill(st, history, clock, from, open)).await?;
        }
        if st.cursor.admit(open, open) {
            st.batch.push_candle(iv.as_str(), candle)?;
        }
        Ok(())
    }

    /// What the stream did not deliver of `[from, to)`, loaded through the venue's `history`
    /// over REST once the venue has settled all of it, after the stream's records received so
    /// far.
    pub async fn backfill(
        &self,
        st: &mut SymbolState,
        history: &dyn History,
        clock: VenueClock,
        from: i64,
        to: i64,
    ) -> Result<()> {
        if from >= to {
            return Ok(());
        }
        // A venue answers a record over REST some time after the stream had it (OKX's
        // candles a minute after they close): the span is asked for once all of it is
        // settled, never cut short, so nothing after it is published past a hole.
        loop {
            let settled = history.settled_end(clock.now_ms());
            if settled >= to {
                break;
            }
            // Settling moves in steps (a candle's close), so it is looked at again each second.
            let wait = (to - settled).clamp(1, 1_000) as u64;
            tracing::debug!(symbol = %st.symbol, wait_ms = wait, "waiting until the venue answers what the stream did not deliver");
            tokio::select! {
                _ = tokio::time::sleep(std::time::Duration::from_millis(wait)) => {}
                _ = self.stop.cancelled() => return Err(LoaderError::Cancelled),
            }
        }
        let span = TimeRange {
            start_ms: from,
            end_ms: to,
        };
        st.flush().await?;
        tracing::info!(symbol = %st.symbol, from, to, "fetching what the stream did not deliver");
        let ctx = HistoryContext {
            clock,
            archive: None,
            mode: SourceMode::Rest,
            venue: st.batch.venue,
            market: st.batch.market,
            symbol: st.symbol.clone(),
            range: span,
            page_limit: self.page_limit,
            kline_page_limit: self.kline_page_limit,
            concurrency: self.concurrency,
            status: self.status.clone(),
            stop: self.stop.clone(),
            resume: None,
        };
        let before = st.out.summary.records;
        history
            .load_rest(&ctx, span, &mut st.cursor, &mut st.out)
            .await?;
        st.out.summary.backfilled += st.out.summary.records - before;
        Ok(())
    }

    /// At the range's end, for candles: the closed candles the stream did not deliver.
    pub async fn close_candles(
        &self,
        st: &mut SymbolState,
        range: TimeRange,
        history: &dyn History,
        clock: VenueClock,
    ) -> Result<()> {
        let Some(iv) = self.live_type.candle_interval() else {
            return Ok(());
        };
        let from = match st.cursor.last {
            Some(last) => iv.next_open(last),
            None => iv.align_up(range.start_ms),
        };
        self.backfill(st, history, clock, from, range.end_ms).await
    }
}

/// A liquidation as a venue reports it: the liquidation order's side (`BUY` or `SELL`), its
/// size and price (the bankruptcy price, where the venue gives that), and when the venue sent
/// it, if it says.
pub struct Liquidation<'a> {
    pub time: i64,
    pub side: &'static str,
    pub quantity: &'a str,
    pub price: &'a str,
    pub event_time: Option<i64>,
}

/// One symbol's progress on a live source.
pub struct SymbolState {
    pub symbol: Arc<str>,
    pub out: Emitter,
    /// Stream records not handed to the sink yet (flushed every 100 ms, and before a backfill).
    pub batch: RecordBatch,
    /// The range and the last ordinal published.
    pub cursor: Cursor,
    /// An event at or after the range end arrived.
    pub done: bool,
    /// Events the stream delivered for this symbol.
    pub received: u64,
    pub book: Book,
    /// Records of the latest millisecond, for venues whose records are told apart by time
    /// and id alone.
    pub ties: Ties,
    /// The stream may have missed events since the last one: none was received yet, or a
    /// connection was lost and replaced since. A venue whose events carry no sequence
    /// (Bybit's trades) backfills on the next event; one whose ids chain finds gaps itself.
    pub interrupted: bool,
    /// The feed needs a fresh subscription (a venue that resyncs a book only by subscribing
    /// again): the live source replaces the connection, with a hand-over.
    pub wants_new_connection: bool,
}

impl SymbolState {
    /// Hands the stream records received so far to the sink.
    pub async fn flush(&mut self) -> Result<()> {
        match self.take_batch() {
            Some(batch) => self.out.send(batch, Origin::WebSocket).await,
            None => Ok(()),
        }
    }

    /// The stream records received so far, if any, for [`send_batch`](Self::send_batch); the
    /// symbol starts a fresh batch.
    pub fn take_batch(&mut self) -> Option<RecordBatch> {
        if self.batch.is_empty() {
            return None;
        }
        // Sized by what the last tick brought (a steady stream fits it without growing): a
        // quiet symbol's batch does not reserve a busy one's room.
        let last = self.batch.len();
        let fresh = RecordBatch::new(
            self.batch.venue,
            self.batch.market,
            self.symbol.clone(),
            (last + last / 4).clamp(16, 256),
        );
        Some(std::mem::replace(&mut self.batch, fresh))
    }

    /// Hands a batch [`take_batch`](Self::take_batch) took to the sink.
    pub async fn send_batch(&mut self, batch: RecordBatch) -> Result<()> {
        self.out.send(batch, Origin::WebSocket).await
    }
}

/// The records of a stream's latest millisecond, by id: for a venue whose records are ordered
/// by time alone (Bybit's trades), a record's place among that millisecond's is its rank, and
/// one offered twice (two connections during a hand-over, a backfill that overlaps the stream)
/// is recognised by its id.
#[derive(Debug, Default)]
pub struct Ties {
    time: Option<i64>,
    /// The ids of the latest millisecond are the first `len`; the strings are reused from one
    /// millisecond to the next, so a steady stream allocates none.
    ids: Vec<String>,
    len: usize,
}

impl Ties {
    /// The rank of the record `id` at `time` among that millisecond's, in the order offered;
    /// `None` when it was offered already, or when `time` is before the latest millisecond
    /// (the stream passed it: everything of it was offered).
    pub fn offer(&mut self, time: i64, id: &str) -> Option<u32> {
        match self.time {
            Some(t) if time < t => return None,
            Some(t) if time == t => {
                if self.ids[..self.len].iter().any(|i| i == id) {
                    return None;
                }
            }
            _ => {
                self.time = Some(time);
                self.len = 0;
            }
        }
        match self.ids.get_mut(self.len) {
            Some(slot) => {
                slot.clear();
                slot.push_str(id);
            }
            None => self.ids.push(id.to_string()),
        }
        self.len += 1;
        Some(self.len as u32 - 1)
    }

    /// Forgets everything offered: the next record starts its millisecond at rank 0.
    pub fn reset(&mut self) {
        self.time = None;
        self.len = 0;
    }
}

/// How many connection attempts a venue allows in a window (per IP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionAllowance {
    pub attempts: usize,
    pub window: Duration,
}

/// A venue's live feed of one type for one job: everything the generic live source needs of
/// the venue. Made by the venue's session ([`crate::venue::Session::live`]).
pub trait LiveFeed: Send + Sync + 'static {
    /// The job's scope the feed was made for.
    fn scope(&self) -> &LiveScope;

    fn venue(&self) -> Venue;

    /// The market the feed's streams are of.
    fn market(&self) -> Market;

    /// The stream base the job set (for errors that name it).
    fn ws_url(&self) -> &str;

    /// How a connection reads the venue's frames.
    fn grammar(&self) -> Arc<dyn Grammar>;

    /// The connection for `symbols`, and each symbol's stream name as the grammar reports it
    /// (in `symbols`' order).
    fn plan(&self, symbols: &[Arc<str>]) -> (StreamPlan, Vec<String>);

    /// The venue's limit on opening connections.
    fn allowance(&self) -> ConnectionAllowance;

    /// The most streams one connection may carry.
    fn max_streams_per_connection(&self) -> usize;

    /// The venue's present (ms).
    fn now_ms(&self) -> i64;

    /// The variable of the stream URL, and an example of it, for errors that name it.
    fn ws_var(&self) -> (&'static str, &'static str);

    /// The ordinal that orders one stream's events (and that [`on_event`](Self::on_event)
    /// de-duplicates by); for a message of several records, its first one's. `None` when the
    /// event cannot be read.
    fn ordinal(&self, data: &str) -> Option<i64>;

    /// One stream event of `st`'s symbol: its records into `st.batch` (what a gap before it
    /// lost fetched first, where the venue serves it). The future is boxed for every event:
    /// a feed boxes its rare backfills inside it, so that it stays small.
    fn on_event<'a>(&'a self, st: &'a mut SymbolState, data: &'a str) -> BoxFuture<'a, Result<()>>;

    /// [`on_event`](Self::on_event) done at once, where the event needs nothing awaited (the
    /// next record of a busy stream: nearly every event), sparing it the boxed future: `true`
    /// when it was taken, `false` when it needs `on_event` (a gap to fetch first; nothing was
    /// changed). A feed without such a path takes every event through `on_event`.
    fn on_event_now(&self, _st: &mut SymbolState, _data: &str) -> Result<bool> {
        Ok(false)
    }

    /// At the range's end: what the stream did not deliver, fetched where the venue serves
    /// it, so the range is complete.
    fn close_range<'a>(
        &'a self,
        st: &'a mut SymbolState,
        range: TimeRange,
    ) -> BoxFuture<'a, Result<()>>;

    /// Whether the venue serves this type's records over REST, so a stream that delivered
    /// nothing while REST had records is misconfigured rather than quiet.
    fn has_rest(&self) -> bool;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ties_rank_a_milliseconds_records_and_drop_repeats() {
        let mut t = Ties::default();
        assert_eq!(t.offer(5, "a"), Some(0));
        assert_eq!(t.offer(5, "b"), Some(1));
        assert_eq!(t.offer(5, "a"), None, "offered twice");
        assert_eq!(t.offer(6, "c"), Some(0), "a new millisecond");
        assert_eq!(t.offer(5, "d"), None, "before the latest millisecond");
        assert_eq!(t.offer(6, "c"), None);
        t.reset();
        assert_eq!(t.offer(5, "a"), Some(0));
    }
}
